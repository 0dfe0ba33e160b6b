"""Frame processing, in the stream's worker thread: one source frame becomes the one
picture every rendition encodes (4:2:0 at even size, the drone's stamp read, overlay drawn,
the relay's stamp painted if configured); the latest picture is kept for the slate and
for snapshots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av
import cv2
import numpy as np

from ..config import MediaConfig
from .overlay import draw_overlay, draw_telemetry, planes
from .stamp import paint_relay_stamp, read_drone_stamp

__all__ = ["WAITING_SIZE", "FrameProcessor", "Image"]

Image = np.ndarray[Any, Any]  # I420: Y plane, then U, then V, (h * 3 / 2) x w
WAITING_SIZE = (1280, 720)


class FrameProcessor:
    def __init__(self, name: str, media: MediaConfig,
                 telemetry: Callable[[], tuple[dict[str, float], bool]] | None = None) -> None:
        self.name = name
        self.media = media
        self.telemetry = telemetry  # the newest telemetry and whether it is stale: the overlay
        self.last_image: Image | None = None
        self.last_size = WAITING_SIZE
        self.count = 0  # frames prepared (the relay stamp's frame counter)

    def prepare(self, frame: av.VideoFrame, wall_ms: int, overlay: bool = True) -> tuple[Image, int | None]:
        """The picture to encode and the drone's capture time (None: no stamp in it);
        ``overlay`` False: the overload governor shed it (nothing drawn)."""
        w, h = frame.width & ~1, frame.height & ~1
        if frame.format.name != "yuv420p" or (w, h) != (frame.width, frame.height):
            # 4:4:4, NV12, odd sizes...: browsers want 4:2:0 with even sizes.
            frame = frame.reformat(width=w, height=h, format="yuv420p")
        img = np.asarray(frame.to_ndarray(), dtype=np.uint8)
        if img.shape != (h * 3 // 2, w):  # padded planes: repack
            img = np.ascontiguousarray(img[: h * 3 // 2, :w])
        if self.count % 5 == 0:
            self.last_image = img.copy()
        self.last_size = (w, h)
        y, u, v = planes(img, w, h)
        stamp = read_drone_stamp(y)  # before the overlay can touch it
        if self.media.overlay and overlay:
            draw_overlay(img, w, h, self.name, wall_ms / 1000)
        if self.telemetry is not None and overlay:
            state, stale = self.telemetry()
            if state:
                draw_telemetry(img, w, h, state, stale)
        if self.media.relay_stamp:
            paint_relay_stamp(y, u, v, self.count, wall_ms)
        self.count += 1
        return img, (stamp[1] if stamp is not None else None)

    def snapshot_jpeg(self, width: int = 320) -> bytes | None:
        """A JPEG of the latest picture: small for lists and walls, or (``width`` 0) at the
        source's full resolution, without overlay, for the record."""
        img = self.last_image
        if img is None:
            return None
        w, h = self.last_size
        bgr = cv2.cvtColor(img, cv2.COLOR_YUV2BGR_I420)
        if width:
            height = max(2, round(h * width / w))
            bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92 if not width else 70])
        return bytes(buf) if ok else None
