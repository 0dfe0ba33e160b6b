"""Stream name → entry: one publisher, a raw source stream, one encoded stream per rendition."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from .config import PASSTHROUGH, Config
from .errors import RelayError
from .latency import LatencyBook
from .stream import Stream
from .telemetry import Telemetry

__all__ = ["Entry", "Registry", "State"]

log = logging.getLogger("relay.registry")


LIVE_AGAIN_S = 0.5  # media must flow this long before a lost stream shows live again
CONNECT_GRACE_S = 10.0  # a new publisher may take this long to send its first frame


class State(enum.Enum):
    WAITING = "waiting"  # no publisher yet
    LIVE = "live"
    LOST = "lost"  # had a publisher, frames stopped


class Entry:
    """Everything about one stream. Pure data + streams; no network, no codecs."""

    def __init__(self, name: str, config: Config, configured: bool) -> None:
        self.name = name
        self.configured = configured
        self.state = State.WAITING
        self.state_since = time.time()
        self.publisher: str | None = None
        self.publisher_kind = ""
        self.publisher_remote = ""
        self.publisher_since = 0.0  # monotonic time of the current claim
        self._evict: Callable[[str], None] | None = None  # ends the current publisher
        self.takeovers = 0
        self._signal_lost_after = config.media.signal_lost_after_s
        self._streak_start = 0.0  # hysteresis: when media started flowing again
        self.width = 0
        self.height = 0
        self.fps = 0.0
        self.source_codec = ""
        self.frames_in = 0
        self.last_frame_time = 0.0  # wall clock of the last source frame
        self.latency = LatencyBook()
        self.encoders: dict[str, object] = {}  # rendition -> live encoder (set by the pipeline)
        self.listeners: list[Callable[[Entry], None]] = []
        self.last_media = 0.0  # monotonic time of the last packet or frame from the source
        self.mode = config.mode(name)
        tc = config.telemetry
        self.telemetry = Telemetry(name, tc.stale_after_s, tc.track_minutes * 60.0)
        media = config.media
        self.source = Stream(f"{name}/source", gop=False, reader_maxlen=media.source_queue_frames)
        self.renditions: dict[str, Stream] = {
            r.name: Stream(
                f"{name}/{r.name}",
                gop=True,
                reader_maxlen=media.viewer_queue_packets,
                keyframe_min_interval=media.keyframe_min_interval_s,
                viewer_keyframe_interval=media.viewer_keyframe_interval_s,
            )
            for r in config.renditions
        }
        # Passthrough: the source's own H.264 packets, forwarded without decode/encode.
        self.passthrough: Stream | None = None
        self.passthrough_source = False  # the current publisher forwards packets (not WHIP)
        # Also for a recorded stream: the record keeps the source's H.264 as it came.
        if self.mode in ("passthrough", "both") or config.records(name):
            self.passthrough = Stream(
                f"{name}/{PASSTHROUGH}",
                gop=True,
                reader_maxlen=media.viewer_queue_packets,
                gop_cache=media.gop_cache,
                viewer_keyframe_interval=media.viewer_keyframe_interval_s,
            )

    def touch(self) -> None:
        """Media arrived from the source (called on the event loop).

        Hysteresis: a lost stream is live again only after media has flowed for
        ``LIVE_AGAIN_S`` without a gap, so a source that stutters (corrupt packets,
        a failing link) does not flap live/lost on every screen.
        """
        t = time.monotonic()
        if t - self.last_media > self._signal_lost_after / 2:
            self._streak_start = t
        self.last_media = t
        if self.state is State.LIVE:
            return
        if self.state is State.WAITING or t - self._streak_start >= LIVE_AGAIN_S:
            self.set_state(State.LIVE)

    @property
    def media_silent_threshold(self) -> float:
        return self._signal_lost_after

    def media_silent_for(self) -> float:
        return time.monotonic() - self.last_media

    def publisher_stale(self) -> bool:
        """The current publisher's media stopped (or never started within the connect grace)."""
        if self.publisher is None:
            return True
        t = time.monotonic()
        if self.last_media < self.publisher_since:  # nothing from this publisher yet
            return t - self.publisher_since > CONNECT_GRACE_S
        return t - self.last_media > self._signal_lost_after

    def wants_frames(self) -> bool:
        """Whether the source must decode: a transcoded rendition (or the pipeline) needs frames."""
        if self.mode != "passthrough":
            return True
        return any(s.readers for s in self.renditions.values())

    def rendition_stream(self, name: str) -> Stream | None:
        if name == PASSTHROUGH:
            # Also while a WHIP publisher is live: the pipeline then encodes it at source size.
            return self.passthrough if self.mode != "transcode" else None
        if self.mode == "passthrough":
            return None
        return self.renditions.get(name)

    def set_state(self, state: State) -> None:
        if state is self.state:
            return
        log.info(
            "stream state", extra={"stream": self.name, "from": self.state.value, "to": state.value}
        )
        self.state = state
        self.state_since = time.time()
        for cb in tuple(self.listeners):
            cb(self)

    def claim(self, session_id: str, kind: str, remote: str,
              evict: Callable[[str], None] | None = None) -> None:
        """Become the stream's publisher.

        Another publisher whose media flows keeps the stream (409). One whose media
        stopped — a drone whose LTE link died without a goodbye, reconnecting before
        its old socket times out — is evicted (``evict`` of the old claim is called) and
        the new one takes over; viewers keep their sessions.
        """
        if self.publisher is not None and self.publisher != session_id:
            if not self.publisher_stale():
                raise RelayError(409, f"stream {self.name!r} already has a live publisher")
            old, old_evict = self.publisher, self._evict
            log.warning("publisher taken over", extra={
                "stream": self.name, "old": self.publisher_kind, "new": kind,
                "silent_s": round(self.media_silent_for(), 1)})
            self.takeovers += 1
            self.publisher = None
            if old_evict is not None:
                old_evict(old)
        self.publisher = session_id
        self.publisher_kind = kind
        self.passthrough_source = kind != "whip"
        self.publisher_remote = remote
        self.publisher_since = time.monotonic()
        self._evict = evict

    def release(self, session_id: str) -> None:
        if self.publisher == session_id:
            self.publisher = None
            self._evict = None
            if self.state is State.LIVE:
                self.set_state(State.LOST)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "state_since": self.state_since,
            "publisher": {"kind": self.publisher_kind, "remote": self.publisher_remote}
            if self.publisher
            else None,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 2),
            "source_codec": self.source_codec,
            "frames_in": self.frames_in,
            "last_frame_age_s": round(time.time() - self.last_frame_time, 3)
            if self.last_frame_time
            else None,
            "encoders": len(self.encoders),
            "telemetry": self.telemetry.summary(),
        }


class Registry:
    """Holds the entries; creates one on first publish or from the config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.entries: dict[str, Entry] = {}
        self.on_created: list[Callable[[Entry], None]] = []
        self.on_removed: list[Callable[[Entry], None]] = []
        self.refused = 0  # streams not created because of limits.unconfigured_streams

    def start(self) -> None:
        for s in self.config.streams:
            self._create(s.name, configured=True)

    def get(self, name: str) -> Entry | None:
        return self.entries.get(name)

    def get_or_create(self, name: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            configured = self.config.stream(name) is not None
            if not configured and self.unconfigured_count() >= self.config.limits.unconfigured_streams:
                self.refused += 1
                raise RelayError(503, f"no room for stream {name!r}: "
                                      f"{self.config.limits.unconfigured_streams} unconfigured streams "
                                      "exist (limits.unconfigured_streams)")
            entry = self._create(name, configured=configured)
        return entry

    def unconfigured_count(self) -> int:
        return sum(1 for e in self.entries.values() if not e.configured)

    def _create(self, name: str, configured: bool) -> Entry:
        entry = Entry(name, self.config, configured)
        self.entries[name] = entry
        for cb in tuple(self.on_created):
            cb(entry)
        return entry

    def remove(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is None:
            return
        for cb in tuple(self.on_removed):
            cb(entry)
        entry.source.close()
        for s in entry.renditions.values():
            s.close()
        if entry.passthrough is not None:
            entry.passthrough.close()
