"""The per-stream pipeline: source frames → overlay → one encoder per watched rendition.

All CPU work (colour conversion, OpenCV, scaling, encoding) runs in the stream's own
worker thread; the event loop only moves units. A rendition is encoded only while it
has readers. When the source stops, viewers keep their sessions and receive a
"signal lost" slate (last frame dimmed) until the source returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import av
import cv2
import numpy as np

from ..config import PASSTHROUGH, Config, Rendition
from ..media import Unit, now
from ..registry import Entry, State
from ..stream import Reader, StreamClosed
from .encoder import TIME_BASE, RenditionEncoder, output_size
from .overlay import draw_overlay, draw_slate, planes
from .stamp import paint_relay_stamp, read_drone_stamp

__all__ = ["Pipeline"]

log = logging.getLogger("relay.pipeline")

ENCODER_IDLE_S = 5.0  # keep an unwatched encoder this long before closing it
WAITING_SIZE = (1280, 720)


@dataclass
class _Job:
    """What the worker thread needs for one frame."""

    image: np.ndarray[Any, Any] | None  # I420, already processed (slate) or None (take frame)
    frame: av.VideoFrame | None
    timeline: dict[str, float]
    wall_ms: int
    renditions: list[Rendition]
    keyframes: set[str] = field(default_factory=set)
    overlay: bool = True
    relay_stamp: bool = False
    capture_ms: int | None = None  # read from the drone's stamp in the worker


class Pipeline:
    def __init__(self, entry: Entry, config: Config) -> None:
        self.entry = entry
        self.config = config
        self.media = config.media
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"pipe-{entry.name}")
        self._encoders: dict[str, RenditionEncoder] = {}
        self._idle_since: dict[str, float] = {}
        self._want_key: set[str] = set()
        self._last_encoded: dict[str, float] = {}
        self._last_image: np.ndarray[Any, Any] | None = None
        self._last_size = WAITING_SIZE
        self._t0 = now()
        self._task: asyncio.Task[None] | None = None
        self._reader: Reader | None = None
        self._stopping = False
        self._arrivals: list[float] = []
        self.frames_processed = 0
        self.slate_frames = 0
        self._slated_passthrough = False
        # Slate for passthrough viewers: at the source's size (2160 = never scale down).
        self._slate_rendition = Rendition(PASSTHROUGH, 2160, 1500, "h264")
        entry.listeners.append(self._on_state)
        for name, stream in entry.renditions.items():
            stream.on_keyframe_request = self._keyframe_requester(name)

    def _on_state(self, entry: Entry) -> None:
        """Back from the slate: passthrough viewers resume at the source's next keyframe."""
        if entry.state is not State.LIVE:
            return
        if self._slated_passthrough and entry.passthrough is not None:
            self._slated_passthrough = False
            entry.passthrough.reset()
        slate = self._encoders.pop(PASSTHROUGH, None)  # the source is back: no slate encoder
        if slate is not None:
            self._executor.submit(slate.close)
            entry.encoders = dict(self._encoders)

    def _keyframe_requester(self, rendition: str) -> Any:
        def request(reason: str) -> None:
            log.debug("keyframe requested", extra={"stream": self.entry.name,
                                                   "rendition": rendition, "reason": reason})
            self._want_key.add(rendition)

        return request

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
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_encoders)
        self._executor.shutdown(wait=False)

    def _close_encoders(self) -> None:
        for enc in self._encoders.values():
            enc.close()
        self._encoders.clear()

    # ------------------------------------------------------------------ loop

    def _watched(self) -> list[Rendition]:
        t = now()
        out = []
        for r in self.config.renditions:
            if self.entry.mode != "passthrough" and self.entry.renditions[r.name].readers:
                self._idle_since.pop(r.name, None)
                out.append(r)
            else:
                self._idle_since.setdefault(r.name, t)
        return out

    async def _run(self) -> None:
        assert self._reader is not None
        loop = asyncio.get_running_loop()
        reader = self._reader
        while not self._stopping:
            live = self.entry.state is State.LIVE
            timeout = self.media.signal_lost_after_s if live else 1.0 / self.media.slate_fps
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # lands as the read completes, and stop() would wait for ever.
                async with asyncio.timeout(timeout):
                    unit = await reader.get()
            except TimeoutError:
                silent = now() - self.entry.last_media
                if self.entry.state is State.LIVE:
                    if silent < self.media.signal_lost_after_s:
                        self._expire()  # media flows, nobody needs frames (passthrough only)
                        continue
                    self.entry.set_state(State.LOST)
                    log.warning("signal lost", extra={"stream": self.entry.name,
                                                      "after_s": self.media.signal_lost_after_s})
                await self._emit_slate(loop)
                self._expire()
                continue
            except StreamClosed:
                return
            if not live:
                self.entry.touch()  # live again after the hysteresis (resets passthrough viewers)
            self._note_arrival(unit)
            renditions = self._watched()
            pt = self.entry.passthrough
            if pt is not None and pt.readers and not self.entry.passthrough_source:
                # A publisher that yields no H.264 packets (WHIP: aiortc decodes on receipt):
                # "source" viewers get the picture encoded at source size, on the same track.
                renditions.append(self._slate_rendition)
                if not self._slated_passthrough:
                    self._slated_passthrough = True
                    self._want_key.add(PASSTHROUGH)
            job = _Job(
                image=None,
                frame=unit.payload,
                timeline=unit.timeline,
                wall_ms=unit.arrival_wall_ms,
                renditions=renditions,
                keyframes=self._take_keys(renditions),
                overlay=self.media.overlay,
                relay_stamp=self.media.relay_stamp,
            )
            try:
                out = await loop.run_in_executor(self._executor, self._process, job)
            except Exception:
                log.exception("frame processing failed", extra={"stream": self.entry.name})
                continue
            self.frames_processed += 1
            self._publish(out)

    def _take_keys(self, renditions: list[Rendition]) -> set[str]:
        keys = {r.name for r in renditions if r.name in self._want_key}
        self._want_key -= keys
        return keys

    def _note_arrival(self, unit: Unit) -> None:
        e = self.entry
        e.frames_in += 1
        e.last_frame_time = time.time()
        frame = unit.payload
        e.width, e.height = frame.width, frame.height
        arr = self._arrivals
        arr.append(unit.arrival)
        if len(arr) > 31:
            del arr[0]
        if len(arr) >= 2 and arr[-1] > arr[0]:
            e.fps = (len(arr) - 1) / (arr[-1] - arr[0])

    def _publish(self, out: dict[str, list[Unit]]) -> None:
        for name, units in out.items():
            stream = self.entry.passthrough if name == PASSTHROUGH else self.entry.renditions[name]
            if stream is None:
                continue
            for u in units:
                stream.publish(u)
        self.entry.encoders = dict(self._encoders)

    async def _emit_slate(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.entry.state is State.LIVE:
            return
        renditions = self._watched()
        pt = self.entry.passthrough
        if pt is not None and pt.readers:
            # Passthrough viewers get the slate too, from an encoder of its own.
            renditions.append(self._slate_rendition)
            if not self._slated_passthrough:
                self._slated_passthrough = True
                self._want_key.add(PASSTHROUGH)
        if not renditions:
            return
        e = self.entry
        if e.state is State.LOST:
            since = time.time() - e.state_since
            title, detail = "SIGNAL LOST", f"{e.name}: no picture for {since:.0f} s"
        else:
            title, detail = "WAITING FOR DRONE", f"{e.name}: no publisher yet"
        w, h = self._last_size
        image = await loop.run_in_executor(
            self._executor, draw_slate, self._last_image, w, h, e.name, title, detail
        )
        job = _Job(
            image=image,
            frame=None,
            timeline={"arrival": now()},
            wall_ms=int(time.time() * 1000),
            renditions=renditions,
            keyframes=self._take_keys(renditions),
            overlay=False,
        )
        out = await loop.run_in_executor(self._executor, self._process, job)
        self.slate_frames += 1
        self._publish(out)

    def _expire(self) -> None:
        # Close encoders nobody has watched for a while (in the worker, in order).
        t = now()
        idle = [n for n, since in self._idle_since.items()
                if n in self._encoders and t - since > ENCODER_IDLE_S]
        for name in idle:
            enc = self._encoders.pop(name)
            self._executor.submit(enc.close)
        if idle:
            self.entry.encoders = dict(self._encoders)

    # ------------------------------------------------------------------ worker thread

    def _process(self, job: _Job) -> dict[str, list[Unit]]:
        if job.image is not None:
            img = job.image
            w, h = self._last_size
        else:
            frame = job.frame
            assert frame is not None
            w, h = frame.width & ~1, frame.height & ~1
            if frame.format.name != "yuv420p" or (w, h) != (frame.width, frame.height):
                # 4:4:4, NV12, odd sizes...: browsers want 4:2:0 with even sizes.
                frame = frame.reformat(width=w, height=h, format="yuv420p")
            img = np.asarray(frame.to_ndarray(), dtype=np.uint8)
            if img.shape != (h * 3 // 2, w):  # padded planes: repack
                img = np.ascontiguousarray(img[: h * 3 // 2, :w])
            job.timeline["decoded"] = job.timeline.get("decoded", job.timeline["arrival"])
            self._last_image = img.copy() if self.frames_processed % 5 == 0 else self._last_image
            self._last_size = (w, h)
            y, u, v = planes(img, w, h)
            stamp = read_drone_stamp(y)
            job.capture_ms = stamp[1] if stamp is not None else None
            if job.overlay:
                draw_overlay(img, w, h, self.entry.name, job.wall_ms / 1000)
            if job.relay_stamp:
                paint_relay_stamp(y, u, v, self.frames_processed, job.wall_ms)
        processed = now()
        # Capture spacing where the source gives it; otherwise network arrival (never the
        # processing time: a decoder thread that catches up would bunch frames together).
        media_t = job.timeline["arrival"]
        if job.frame is not None and job.frame.pts is not None and job.frame.time_base:
            media_t = float(job.frame.pts * job.frame.time_base)
        out_frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        pts = int((now() - self._t0) * TIME_BASE.denominator)
        result: dict[str, list[Unit]] = {}
        for r in job.renditions:
            if job.image is None and not self._rate_ok(r, media_t):
                continue
            ow, oh = output_size(w, h, r)
            enc = self._encoders.get(r.name)
            key = r.name in job.keyframes
            if enc is None or (enc.width, enc.height) != (ow, oh):
                if enc is not None:
                    enc.close()
                gop = max(1, round(self.media.keyframe_interval_s * r.max_fps))
                enc = RenditionEncoder(r, ow, oh, gop)
                self._encoders[r.name] = enc
                key = True
            f = out_frame if (ow, oh) == (w, h) else out_frame.reformat(
                width=ow, height=oh, interpolation="BILINEAR"
            )
            packets = enc.encode(f, pts, key)
            encoded = now()
            units = []
            for p in packets:
                tl = dict(job.timeline)
                tl["processed"] = processed
                tl["encoded"] = encoded
                units.append(Unit(p, bool(p.is_keyframe), tl, job.wall_ms, job.capture_ms))
            result[r.name] = units
        return result

    def _rate_ok(self, r: Rendition, t: float) -> bool:
        """Cap a rendition at max_fps by media time; a source at or below it passes whole."""
        last = self._last_encoded.get(r.name)
        if last is not None and 0 <= t - last < 0.75 / r.max_fps:
            return False
        self._last_encoded[r.name] = t
        return True

    def snapshot_jpeg(self, width: int = 320) -> bytes | None:
        """A small JPEG of the latest picture (for lists and walls); runs in the worker."""
        img = self._last_image
        if img is None:
            return None
        w, h = self._last_size
        bgr = cv2.cvtColor(img, cv2.COLOR_YUV2BGR_I420)
        height = max(2, round(h * width / w))
        small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
        return bytes(buf) if ok else None

    async def snapshot(self, width: int = 320) -> bytes | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.snapshot_jpeg, width)
