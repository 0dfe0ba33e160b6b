"""The per-stream pipeline: source frames → one picture → one encoder per watched rendition.

All CPU work (colour conversion, OpenCV, scaling, encoding) runs in the stream's own
worker thread; the event loop only moves units. The pipeline orchestrates four parts:

- :class:`.liveness.Liveness` — when the source counts as lost, and arrival statistics;
- :class:`.frames.FrameProcessor` — one source frame → the picture (stamp read, overlay);
- :class:`.encoders.EncoderPool` — lazy encoders per watched rendition, keyframe wishes,
  frame-rate caps;
- :class:`.slate.Slate` — the "signal lost" picture, and "source" viewers of a source
  without H.264 packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av

from ..config import PASSTHROUGH, Config, Rendition
from ..media import Unit, now
from ..osthread import named_initializer
from ..overload import Governor
from ..registry import Entry, State
from ..stream import Reader, StreamClosed
from .encoder import TIME_BASE
from .encoders import EncoderPool
from .frames import FrameProcessor
from .liveness import Liveness
from .slate import Slate

__all__ = ["Pipeline"]

log = logging.getLogger("relay.pipeline")


class Pipeline:
    def __init__(self, entry: Entry, config: Config, governor: Governor | None = None) -> None:
        self.entry = entry
        self.config = config
        # Hears the stale frames this pipeline and the stream's viewers skip; says what to shed.
        self.governor = governor or Governor(())
        self.media = config.media
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"pipe-{entry.name}",
                                            initializer=named_initializer)
        self.pool = EncoderPool(config.media)
        tele = entry.telemetry
        # dict.copy() holds the GIL: a consistent state even while the loop merges an update.
        self.frames = FrameProcessor(entry.name, config.media,
                                     (lambda: (tele.state.copy(), tele.stale()))
                                     if config.telemetry.overlay else None)
        self.liveness = Liveness(entry, config.media)
        self.slate = Slate(entry, self.pool)
        self._t0 = now()
        self._task: asyncio.Task[None] | None = None
        self._reader: Reader | None = None
        self._stopping = False
        self.frames_processed = 0
        self.frames_shed = 0  # source frames no rendition took (frame-rate caps, shed)
        # The last live picture's arrival and capture (wall ms): the slate carries them, so a
        # viewer's age figure during a loss is the age of the last live picture, growing.
        self._last_live: tuple[int, int | None] = (0, None)
        entry.listeners.append(self._on_state)
        entry.source.on_stale_unit = self._skipped  # a frame skipped for age still arrived

    def _skipped(self, unit: Unit) -> None:
        frame = unit.payload
        self.entry.source_info.frame(frame.width, frame.height, unit.arrival)

    @property
    def slate_frames(self) -> int:
        return self.slate.frames

    def _on_state(self, entry: Entry) -> None:
        if entry.state is State.LIVE:
            self._close(self.slate.source_back())

    def want_key(self, rendition: str, reason: str) -> None:
        """A viewer of ``rendition`` asked for a keyframe (through the stream's rate limit)."""
        log.debug("keyframe requested", extra={"stream": self.entry.name, "rendition": rendition,
                                               "reason": reason})
        self.pool.want_key(rendition)

    def _close(self, encoder: Any) -> None:
        if encoder is not None:
            self._executor.submit(encoder.close)
            self.entry.encoders = dict(self.pool.encoders)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._reader = self.entry.source.subscribe("pipeline")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"pipeline-{self.entry.name}"
        )

    async def stop(self) -> None:
        self._stopping = True
        if self._reader is not None:
            self._reader.close()  # wakes a waiting read with StreamClosed
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):
                    await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, self.pool.close)
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ loop

    def _watched(self) -> list[Rendition]:
        transcoding = self.entry.mode != "passthrough"
        return self.pool.watched([(r, transcoding and bool(self.entry.renditions[r.name].readers))
                                  for r in self.config.renditions])

    def _expire(self) -> None:
        for enc in self.pool.idle():
            self._close(enc)

    async def _run(self) -> None:
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        reader = self._reader
        while not self._stopping:
            live = self.entry.state is State.LIVE
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # lands as the read completes, and stop() would wait for ever.
                async with asyncio.timeout(self.liveness.read_timeout()):
                    unit = await reader.get()
            except TimeoutError:
                if self.liveness.silent():
                    await self._emit_slate(loop)
                self._expire()
                continue
            except StreamClosed:
                return
            self.liveness.arrived(unit, live)
            renditions = self._watched()
            self.slate.serve_passthrough(renditions)
            keys = self.pool.take_keys(renditions)
            gov = self.governor
            if not renditions and gov.fps_divisor() > 1:
                self.frames_shed += 1  # short of CPU, and nobody watches: no picture made
                continue
            fps, tiles = gov.fps_divisor(), gov.tile_divisor()
            # (who watches is looked at only while the wall's own cut is on)
            divisors = {r.name: tiles if tiles != fps and self.entry.renditions[r.name].tiles_only
                        else fps for r in renditions}
            try:
                out = await loop.run_in_executor(self._executor, self._process, unit, renditions, keys,
                                                 divisors, gov.overlay())
            except Exception:
                log.exception("frame processing failed", extra={"stream": self.entry.name})
                continue
            self.frames_processed += 1
            if self.frames_processed % 30 == 0:
                self._expire()  # (an encoder nobody watched for a while closes while live too)
            if any(out.values()):  # (a frame no rendition took is not an encode's age)
                gov.encoded(now() - unit.timeline.get("arrival", now()))
            self._publish(out)

    def _publish(self, out: dict[str, list[Unit]]) -> None:
        for name, units in out.items():
            stream = self.entry.passthrough if name == PASSTHROUGH else self.entry.renditions[name]
            if stream is None:
                continue
            for u in units:
                stream.publish(u)
        self.entry.encoders = dict(self.pool.encoders)

    async def _emit_slate(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.entry.state is State.LIVE:
            return
        renditions = self._watched()
        self.slate.serve_passthrough(renditions, always=True)
        if not renditions:
            return
        keys = self.pool.take_keys(renditions)
        out = await loop.run_in_executor(self._executor, self._process_slate, renditions, keys)
        self.slate.frames += 1
        self._publish(out)

    # ------------------------------------------------------------------ worker thread

    def _pts(self) -> int:
        return int((now() - self._t0) * TIME_BASE.denominator)

    def _process(self, unit: Unit, renditions: list[Rendition], keys: set[str],
                 divisors: dict[str, int] | None = None, overlay: bool = True) -> dict[str, list[Unit]]:
        frame: av.VideoFrame = unit.payload
        # Capture spacing where the source gives it; otherwise network arrival (never the
        # processing time: a decoder thread that catches up would bunch frames together).
        media_t = unit.timeline["arrival"]
        if frame.pts is not None and frame.time_base:
            media_t = float(frame.pts * frame.time_base)
        due = self.pool.due(renditions, media_t, keys, divisors)
        if not due and renditions:
            self.frames_shed += 1  # no rendition takes this frame: no picture made
            return {}
        img, capture_ms = self.frames.prepare(frame, unit.arrival_wall_ms, overlay)
        if capture_ms is None:
            capture_ms = unit.capture_wall_ms  # known upstream (another relay forwarded it)
        self.entry.source_info.note_capture(unit.arrival_wall_ms, capture_ms)
        self._last_live = (unit.arrival_wall_ms, capture_ms)
        unit.timeline.setdefault("decoded", unit.timeline["arrival"])
        return self.pool.encode(img, self.frames.last_size, due, keys, self._pts(),
                                unit.timeline, unit.arrival_wall_ms, capture_ms)

    def _process_slate(self, renditions: list[Rendition], keys: set[str]) -> dict[str, list[Unit]]:
        img, size = self.slate.image(self.frames)
        arrival_ms, capture_ms = self._last_live
        # "slate": not a live picture (kept out of the latency figures; viewers told so)
        return self.pool.encode(img, size, renditions, keys, self._pts(), {"arrival": now(), "slate": 1.0},
                                arrival_ms or int(time.time() * 1000), capture_ms)

    async def snapshot(self, width: int = 320) -> bytes | None:
        """A small JPEG of the latest picture (for lists and walls), made in the worker."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.frames.snapshot_jpeg, width)
