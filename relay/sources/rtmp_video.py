"""One RTMP publisher's video: FLV tags → Annex-B (H.264; H.265 from Enhanced RTMP or FLV
codec id 12) → one decoder in a worker thread → frames into the stream; H.264 also to the
passthrough stream untouched. A codec the relay cannot take is said, never silent."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import av

from ..media import Unit, now
from ..osthread import named_initializer
from ..registry import Entry
from .decodable import Decodability
from .h264 import AvcToAnnexB, FrameAssembler, PassthroughClock
from .hevc import HvcToAnnexB, is_hevc

if TYPE_CHECKING:
    from .rtmp import _Conn

__all__ = ["MSG_AGGREGATE", "MSG_AMF3_COMMAND", "MSG_VIDEO", "RtmpPublisher", "aggregate_video"]

log = logging.getLogger("relay.rtmp")
FLV_TIME_BASE = fractions.Fraction(1, 1000)
MSG_VIDEO, MSG_AMF3_COMMAND, MSG_AGGREGATE = 9, 17, 22  # RTMP message type ids
FLV_TAG_HEADER = 11
DECODE_MAX_AGE_S = 0.5  # a frame that waited this long for the decoder: skip to the next keyframe
DECODE_MAX_PENDING = 30
KEYS_SHED_MAX_S = 2.5  # keyframes at least this often: decoding may be shed to keyframes only


def aggregate_video(payload: bytes, timestamp: int) -> list[tuple[bytes, int]]:
    """The video tags of an RTMP aggregate message (type 22: FLV tags, each with its header
    and back-pointer), as (tag body, timestamp in ms). Sub-message times are renormalised so
    the first one lands on the aggregate's own timestamp (RTMP 1.0, 7.1.6). A truncated or
    odd tag ends the list; what was read stands."""
    out: list[tuple[bytes, int]] = []
    offset: int | None = None
    i = 0
    while i + FLV_TAG_HEADER <= len(payload):
        kind = payload[i] & 0x1F
        size = int.from_bytes(payload[i + 1:i + 4], "big")
        ts = int.from_bytes(payload[i + 4:i + 7], "big") | (payload[i + 7] << 24)
        end = i + FLV_TAG_HEADER + size
        if end > len(payload):
            break
        offset = timestamp - ts if offset is None else offset
        if kind == MSG_VIDEO:
            out.append((payload[i + FLV_TAG_HEADER:end], (ts + offset) & 0xFFFFFFFF))
        i = end + 4  # the back-pointer
    return out


class RtmpPublisher:
    """One RTMP publisher's video: parse, decode once (a worker thread), into the stream."""

    def __init__(self, entry: Entry, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.entry = entry
        self.session_id = session_id
        self.loop = loop
        self.parser = AvcToAnnexB()
        self.frames = FrameAssembler(entry.name)
        self.clock = PassthroughClock(entry.name)
        self.decoder: Any = av.CodecContext.create("h264", "r")
        self.decoder.thread_type = "SLICE"
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"rtmp-{entry.name}",
                                           initializer=named_initializer)
        self.errors = 0
        self.unsupported = 0
        self.on_unsupported: Callable[[], None] | None = None  # counted for /metrics
        self.pending = 0
        self.skipping = False  # the decoder fell behind: frames dropped until the next keyframe
        self.skipped = 0
        self.shed = 0  # frames not decoded because the governor shed decoding to keyframes
        self._shedding = False  # (until the next keyframe after the shed ends, likewise)
        self._last_key: float | None = None
        self.key_interval_s: float | None = None  # between the drone's last two keyframes
        self._late = False  # the worker's: a frame waited too long, decoding resumes at a keyframe
        self.conn: _Conn | None = None
        self.hevc: HvcToAnnexB | None = None  # the publisher sends H.265
        self.decodable = Decodability()

    def video(self, body: bytes, timestamp: int) -> None:
        arrived = now()
        if self.hevc is None and is_hevc(body):
            self._to_hevc()
        if self.hevc is not None:
            got = self.hevc.feed(body)
            if got is not None:
                if self._decodable():
                    self.entry.touch()
                au, key, cts = got
                self._submit(au, arrived, timestamp, timestamp + cts, key)
            return
        parsed = self.parser.feed(body)
        if parsed is None:
            if self.parser.unsupported and not self.entry.source_info.problem:
                self._unsupported(self.parser.unsupported)
            return
        ok = self._decodable()
        if ok:
            self.entry.touch()
        for data, key, ts in self.frames.push(parsed[0], parsed[1], timestamp):
            self._frame(data, key, arrived, ts, ok)

    def _decodable(self) -> bool:
        """Whether this publisher's media makes a picture (:mod:`.decodable`)."""
        # (while decoding is shed to keyframes, a clean frame comes once per keyframe: media
        # is what there is to go by, as for a passthrough-only stream)
        return self.decodable.ok(self.entry.wants_frames() and not self._shedding)

    def _unsupported(self, codec: str) -> None:
        """Never silent: the stream says why there is no picture (API, wall, slate), once in
        the log, and in /metrics."""
        problem = f"the drone sends {codec}, which the relay does not take yet: send H.264"
        self.entry.source_info.set_problem(problem)
        self.unsupported += 1
        if self.on_unsupported is not None:
            self.on_unsupported()
        log.warning("RTMP publisher's video codec not supported",
                    extra={"stream": self.entry.name, "codec": codec})

    def _to_hevc(self) -> None:
        """H.265 (Enhanced RTMP hvc1, or FLV codec id 12): decoded once, transcoded to the
        H.264 ladder; its own packets are not forwarded (browsers here take H.264)."""
        self.hevc = HvcToAnnexB()
        self.decoder = av.CodecContext.create("hevc", "r")
        self.decoder.thread_type = "SLICE"
        self.entry.source_info.set_codec("hevc")
        log.info("RTMP publisher sends H.265: transcoded to H.264 for viewers",
                 extra={"stream": self.entry.name})

    def _frame(self, data: bytes, key: bool, arrived: float, ts: int = 0, ok: bool = True) -> None:
        if self.entry.passthrough is not None and ok:
            # The FLV timestamp paces the passthrough track (and the record) as the drone
            # captured it, not as the network delivered it.
            self.entry.passthrough.publish(
                self.clock.unit(data, key, ts / 1000, self.parser.sps_pps, arrived))
        if key:
            if self._last_key is not None:
                self.key_interval_s = arrived - self._last_key
            self._last_key = arrived
        if self.entry.wants_frames() and not self._shed(key):
            self._submit(data, arrived, ts, ts, key)

    def _shed(self, key: bool) -> bool:
        """Not decoded because the relay sheds decoding to keyframes (short of CPU), for a
        drone whose keyframes come at least every KEYS_SHED_MAX_S (an intra-refresh stream has
        none to resume at: never shed); after the shed, decoding resumes at a keyframe."""
        if key:
            self._shedding = False
            return False
        regular = self.key_interval_s is not None and self.key_interval_s <= KEYS_SHED_MAX_S
        if self._shedding or (regular and self.entry.keyframes_only()):
            self._shedding = True
            self.shed += 1
            return True
        return False

    def _submit(self, data: bytes, arrived: float, ts: int, pts: int, key: bool = True) -> None:
        if self.pending > DECODE_MAX_PENDING and not key:
            self.skipping = True  # far behind: no unbounded queue (decoding resumes at a keyframe)
        if self.skipping and not key:
            self._skip()
            return
        self.skipping = False
        self.pending += 1
        self.executor.submit(self._decode, data, arrived, ts, pts, key)

    def _skip(self) -> None:
        """A frame not decoded: the decoder is behind (its picture would be late) — the next
        keyframe restarts it on a fresh picture. Said to the stream (the overload governor)."""
        self.skipped += 1
        self.entry.source.note_stale(1)

    def _decode(self, data: bytes, arrived: float, ts: int, pts: int, key: bool = True) -> None:
        # (the worker's own flag: the loop's is for what it has not submitted yet)
        if not key and (self._late or now() - arrived > DECODE_MAX_AGE_S):
            self._late = True
            self.pending -= 1
            self.loop.call_soon_threadsafe(self._skip)
            return
        self._late = False
        # The FLV timestamp (ms) becomes the frame's pts (plus H.265's composition offset):
        # the rendition frame-rate cap then spaces frames by capture time, not by when the
        # decoder thread got to them.
        packet = av.Packet(data)
        packet.pts, packet.dts = pts, ts
        packet.time_base = FLV_TIME_BASE
        try:
            frames = self.decoder.decode(packet)
            self.decodable.decoded(len(frames), error=False)
        except av.FFmpegError:
            self.decodable.decoded(0, error=True)
            self.errors += 1
            if self.errors in (1, 10, 100):
                log.warning("corrupt RTMP video skipped",
                            extra={"stream": self.entry.name, "errors": self.errors})
            frames = []
        finally:
            self.pending -= 1
        for frame in frames:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.entry.source.publish,
                                               Unit.decoded(frame, arrived))

    def close(self) -> None:
        self.executor.shutdown(wait=False)
