"""The segment writer: encoded H.264 in, fragmented MP4 files out, in a thread of its own.

The live path hands packets over through a bounded queue and never waits: when the queue
is full the packet is dropped (counted) and the writer resumes at the next keyframe, so the
file never holds a picture that references a missing frame. Fragments of ``fragment_s``
reach the disk as they are made (``empty_moov`` + ``flush_packets``): a relay killed
mid-segment leaves a playable file that lacks at most the fragment being written.
"""

from __future__ import annotations

import contextlib
import fractions
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from ..osthread import name_os_thread
from .layout import segment_path

__all__ = ["Sealed", "SegmentWriter", "file_sha256", "nal_units", "parameter_sets", "picture_size"]

log = logging.getLogger("relay.record")
TIME_BASE = fractions.Fraction(1, 90000)
JUMP_TICKS = 3 * 90000  # a timestamp jump larger than this starts a new segment


def nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B access unit (without start codes)."""
    starts: list[tuple[int, int]] = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        begin = i + 3
        starts.append((i - 1 if i > 0 and data[i - 1] == 0 else i, begin))
        i = data.find(b"\x00\x00\x01", begin)
    for n, (_, begin) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(data)
        if end > begin:
            yield data[begin:end]


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS of an access unit, Annex-B (b"" if it carries none)."""
    return b"".join(b"\x00\x00\x00\x01" + n for n in nal_units(data) if n[0] & 0x1F in (7, 8))


def picture_size(keyframe: bytes) -> tuple[int, int]:
    """The picture size of an H.264 keyframe, from decoding it (once per segment)."""
    ctx: Any = av.CodecContext.create("h264", "r")
    try:
        for frame in ctx.decode(av.Packet(keyframe)):
            return int(frame.width), int(frame.height)
        for frame in ctx.decode(None):
            return int(frame.width), int(frame.height)
    except av.FFmpegError:
        pass
    raise ValueError("the keyframe does not decode (no SPS/PPS in band?)")


def file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


@dataclass
class Sealed:
    """A finished segment: what the manifest records."""

    path: Path
    start_ms: int
    end_ms: int
    frames: int
    keyframes: int
    width: int
    height: int
    reason: str
    recovered: bool = False


@dataclass
class _Open:
    path: Path
    container: Any
    stream: Any
    start_ms: int
    first_pts: int
    last_pts: int
    frames: int = 0
    keyframes: int = 0
    config: bytes = b""
    width: int = 0
    height: int = 0


@dataclass
class WriterStats:
    written: int = 0
    dropped: int = 0
    bytes: int = 0
    segments: int = 0
    errors: int = 0
    last_error: str = ""
    open_path: str = ""
    open_start_ms: int = 0
    open_end_ms: int = 0
    waiting_keyframe: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class SegmentWriter:
    """One stream's recording thread. ``put`` is called from the event loop and never blocks."""

    def __init__(self, root: Path, stream: str, *, segment_s: float, fragment_s: float,
                 queue_frames: int, on_sealed: Callable[[Sealed], None]) -> None:
        self.root = root
        self.stream = stream
        self.segment_ms = int(segment_s * 1000)
        self.fragment_us = int(fragment_s * 1_000_000)
        self.on_sealed = on_sealed
        self.stats = WriterStats()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=queue_frames)
        self._resync = False  # the loop dropped a packet: skip to the next keyframe
        self._open: _Open | None = None
        self._thread = threading.Thread(target=self._run, name=f"record-{stream}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ event loop side

    def put(self, data: bytes, pts: int, keyframe: bool, wall_ms: int) -> bool:
        """Queue one access unit (Annex-B, 90 kHz pts); False if it was dropped."""
        if self._resync and not keyframe:
            self.stats.dropped += 1
            return False
        try:
            self._queue.put_nowait(("unit", data, pts, keyframe, wall_ms))
        except queue.Full:
            self.stats.dropped += 1
            self._resync = True
            if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
                log.warning("recording queue full, frames dropped (the disk is too slow)",
                            extra={"stream": self.stream, "dropped": self.stats.dropped})
            return False
        self._resync = False
        return True

    def cut(self, reason: str) -> None:
        """Seal the open segment (the publisher left, the stream paused); the next starts at a keyframe."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(("cut", reason))

    def close(self, timeout: float = 10.0) -> None:
        """Seal and stop (blocks: call from a thread or at shutdown)."""
        self._queue.put(("stop", "relay stopping"))
        self._thread.join(timeout)

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        name_os_thread()
        while True:
            item = self._queue.get()
            kind = item[0]
            try:
                if kind == "unit":
                    self._write(*item[1:])
                elif kind == "cut":
                    self._seal(item[1])
                else:
                    self._seal(item[1])
                    return
            except Exception as exc:  # a disk error must not kill the thread: log, start afresh
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                log.error("recording error", extra={"stream": self.stream, "error": str(exc)})
                self._abandon()

    def _write(self, data: bytes, pts: int, keyframe: bool, wall_ms: int) -> None:
        seg = self._open
        config = parameter_sets(data) if keyframe else b""
        if seg is not None:
            jump = pts <= seg.last_pts or pts - seg.last_pts > JUMP_TICKS
            if jump:
                self._seal("timestamps jumped")
                seg = None
            elif keyframe and wall_ms - seg.start_ms >= self.segment_ms:
                self._seal("segment length")
                seg = None
            elif config and config != seg.config:
                self._seal("stream parameters changed (SPS/PPS)")
                seg = None
        if seg is None:
            if not keyframe:
                self.stats.waiting_keyframe = True
                return
            seg = self._start(data, config, pts, wall_ms)
        packet: Any = av.Packet(data)
        packet.pts = packet.dts = pts - seg.first_pts
        packet.time_base = TIME_BASE
        packet.stream = seg.stream
        packet.is_keyframe = keyframe
        seg.container.mux(packet)
        seg.last_pts = pts
        seg.frames += 1
        seg.keyframes += int(keyframe)
        self.stats.written += 1
        self.stats.bytes += len(data)
        self.stats.open_end_ms = seg.start_ms + (pts - seg.first_pts) // 90

    def _start(self, data: bytes, config: bytes, pts: int, wall_ms: int) -> _Open:
        size = picture_size(data)
        path = segment_path(self.root, self.stream, wall_ms)
        path.parent.mkdir(parents=True, exist_ok=True)
        while path.exists():  # two segments in the same millisecond: never overwrite
            wall_ms += 1
            path = segment_path(self.root, self.stream, wall_ms)
        container: Any = av.open(str(path), "w", format="mp4", options={
            "movflags": "empty_moov+default_base_moof+frag_keyframe",
            "frag_duration": str(self.fragment_us),
            "flush_packets": "1",
        })
        st = container.add_stream("h264", rate=30)
        st.width, st.height = size
        st.time_base = TIME_BASE
        if config:
            st.codec_context.extradata = config
        self._open = _Open(path, container, st, wall_ms, pts, pts - 1, config=config,
                           width=size[0], height=size[1])
        self.stats.waiting_keyframe = False
        self.stats.open_path = str(path)
        self.stats.open_start_ms = wall_ms
        self.stats.open_end_ms = wall_ms
        return self._open

    def _seal(self, reason: str) -> None:
        seg, self._open = self._open, None
        self.stats.open_path = ""
        if seg is None:
            return
        seg.container.close()
        end_ms = seg.start_ms + (seg.last_pts - seg.first_pts) // 90 + 33
        self.stats.segments += 1
        sealed = Sealed(seg.path, seg.start_ms, end_ms, seg.frames, seg.keyframes, seg.width,
                        seg.height, reason)
        try:
            self.on_sealed(sealed)
        except Exception as exc:
            self.stats.errors += 1
            log.error("could not seal segment", extra={"stream": self.stream, "path": str(seg.path),
                                                       "error": str(exc)})

    def _abandon(self) -> None:
        seg, self._open = self._open, None
        self.stats.open_path = ""
        if seg is not None:
            with contextlib.suppress(Exception):
                seg.container.close()
            # Left unsealed on purpose: the next start-up seals it as recovered.


def now_ms() -> int:
    return int(time.time() * 1000)
