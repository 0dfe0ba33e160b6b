"""One stream's entry: its name, streams and three parts with one writer each
(:mod:`.parts`). Pure data and streams; no network, no codecs."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from ..config import PASSTHROUGH, Config
from ..latency import LatencyBook
from ..stream import Stream
from ..telemetry import Telemetry
from .parts import Liveness, PublisherSlot, SourceInfo, State

__all__ = ["Entry", "KeyframeRequests"]

# (stream, rendition, reason): who encodes a rendition hears its viewers' keyframe requests.
KeyframeRequests = Callable[[str, str, str], None]


class Entry:
    """Everything about one stream. Written only through its parts' methods: the
    publisher slot (sources), the source info (sources, the pipeline's arrivals), the
    liveness (every source, the registry's watchdog); ``encoders`` by the pipeline alone."""

    def __init__(self, name: str, config: Config, configured: bool,
                 keyframes: KeyframeRequests | None = None) -> None:
        self.name = name
        sc = config.stream(name)
        self.title = sc.title if sc is not None else ""  # as configured here
        self.configured = configured
        self.mode = config.mode(name)
        self.slot = PublisherSlot(name)
        # Asked before every claim (a cluster: 409 while another node owns the stream).
        self.guard: Callable[[Entry, str], None] | None = None
        self.source_info = SourceInfo()
        self.liveness = Liveness(name, config.media.signal_lost_after_s, self._changed)
        self.listeners: list[Callable[[Entry], None]] = []  # told of every change of state
        # The overload governor's word to a decoding source: decode only keyframes (shed).
        self.keyframes_only: Callable[[], bool] = lambda: False
        self.latency = LatencyBook()
        self.encoders: dict[str, object] = {}  # rendition -> live encoder (the pipeline's)
        tc = config.telemetry
        self.telemetry = Telemetry(name, tc.stale_after_s, tc.track_minutes * 60.0)
        media = config.media
        self.source = Stream(f"{name}/source", gop=False, reader_maxlen=media.source_queue_frames,
                             max_age=media.source_max_age_ms / 1000)
        # The keyframe callbacks are given here, once: nobody sets them later.
        self.renditions: dict[str, Stream] = {
            r.name: Stream(
                f"{name}/{r.name}",
                gop=True,
                reader_maxlen=media.viewer_queue_packets,
                keyframe_min_interval=media.keyframe_min_interval_s,
                viewer_keyframe_interval=media.viewer_keyframe_interval_s,
                max_age=media.max_age_ms / 1000,
                on_keyframe_request=functools.partial(keyframes, name, r.name) if keyframes else None,
            )
            for r in config.renditions
        }
        # Passthrough: the source's own H.264 packets, forwarded without decode/encode.
        # Also for a recorded stream: the record keeps the source's H.264 as it came.
        self.passthrough: Stream | None = None
        if self.mode in ("passthrough", "both") or config.records(name):
            self.passthrough = Stream(
                f"{name}/{PASSTHROUGH}",
                gop=True,
                reader_maxlen=media.viewer_queue_packets,
                gop_cache=media.gop_cache,
                max_age=media.max_age_ms / 1000,
                keyframe_min_interval=media.keyframe_min_interval_s,
                viewer_keyframe_interval=media.viewer_keyframe_interval_s,
                # (a WebRTC publisher is asked itself; for others the GOP cache serves)
                on_keyframe_request=functools.partial(keyframes, name, PASSTHROUGH) if keyframes else None,
            )

    def _changed(self) -> None:
        for cb in tuple(self.listeners):
            cb(self)

    # -------------------------------------------------------------- requests

    def touch(self) -> None:
        """Media arrived from the source."""
        self.liveness.touch()

    def claim(self, session_id: str, kind: str, remote: str,
              evict: Callable[[str], None] | None = None) -> None:
        """Become the stream's publisher (409 while another one's media flows)."""
        if self.guard is not None:
            self.guard(self, kind)
        self.slot.claim(session_id, kind, remote, self.liveness, evict)

    def end_publisher(self) -> bool:
        """End the current publisher, whoever it is (its session is told to close, as a
        takeover does); False if there is none."""
        holder, evict = self.slot.holder, self.slot.evictor
        if holder is None:
            return False
        self.release(holder)
        if evict is not None:
            evict(holder)
        return True

    def release(self, session_id: str) -> None:
        if self.slot.release(session_id):
            self.source_info.set_problem("")  # it was this publisher's
            self.source_info.set_route([], [], "")
            self.liveness.lose()

    # -------------------------------------------------------------- reading

    @property
    def state(self) -> State:
        return self.liveness.state

    @property
    def state_since(self) -> float:
        return self.liveness.since

    @property
    def publisher(self) -> str | None:
        return self.slot.holder

    @property
    def publisher_kind(self) -> str:
        return self.slot.kind

    @property
    def takeovers(self) -> int:
        return self.slot.takeovers

    @property
    def frames_in(self) -> int:
        return self.source_info.frames_in

    @property
    def fps(self) -> float:
        return self.source_info.fps

    @property
    def width(self) -> int:
        return self.source_info.width

    @property
    def height(self) -> int:
        return self.source_info.height

    def wants_frames(self) -> bool:
        """Whether the source must decode: a transcoded rendition (or the pipeline) needs frames."""
        if self.mode != "passthrough":
            return True
        return any(s.readers for s in self.renditions.values())

    def all_streams(self) -> list[Stream]:
        """The source's frames, every rendition's packets and the passthrough's."""
        out = [self.source, *self.renditions.values()]
        return [*out, self.passthrough] if self.passthrough is not None else out

    def rendition_stream(self, name: str) -> Stream | None:
        if name == PASSTHROUGH:
            # Also while a WHIP publisher is live: the pipeline then encodes it at source size.
            return self.passthrough if self.mode != "transcode" else None
        if self.mode == "passthrough":
            return None
        return self.renditions.get(name)

    def summary(self) -> dict[str, Any]:
        info, slot = self.source_info, self.slot
        return {
            "name": self.name,
            "state": self.state.value,
            "state_since": self.state_since,
            "publisher": {"kind": slot.kind, "remote": slot.remote} if slot.holder else None,
            "width": info.width,
            "height": info.height,
            "fps": round(info.fps, 2),
            "source_codec": info.codec,
            "problem": info.problem or None,
            "frames_in": info.frames_in,
            "last_frame_age_s": (round(time.time() - info.last_frame_time, 3)
                                 if info.last_frame_time else None),
            "last_frame_at": info.last_frame_time or None,  # wall clock: a loss counts from it
            "encoders": len(self.encoders),
            "telemetry": self.telemetry.summary(),
            "path": info.path or None,
            "hops": info.hops or None,
        }
