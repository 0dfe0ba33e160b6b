"""One encoder per rendition (PyAV): every viewer of the rendition gets its packets."""

from __future__ import annotations

import contextlib
import fractions
import logging
from typing import Any

import av
from av.video.frame import PictureType

from ..config import Rendition

__all__ = ["TIME_BASE", "RenditionEncoder", "output_size"]

VBV_WINDOW_S = 0.25  # the window a rendition's bit budget holds over
log = logging.getLogger("relay.pipeline")
TIME_BASE = fractions.Fraction(1, 90000)


def output_size(src_w: int, src_h: int, rendition: Rendition) -> tuple[int, int]:
    """The rendition's size for a source: its height (never upscaled), the source's aspect."""
    h = min(rendition.height, src_h) & ~1
    w = max(2, round(src_w * h / src_h / 2) * 2)
    return w, h


class RenditionEncoder:
    """Low-latency encoder: no B-frames, fixed GOP, keyframe on request, SPS/PPS in-band."""

    def __init__(self, rendition: Rendition, width: int, height: int, gop_frames: int) -> None:
        self.rendition = rendition
        self.width = width
        self.height = height
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self._last_pts = -1
        if rendition.codec == "h264":
            ctx: Any = av.CodecContext.create("libx264", "w")
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                # VBV: at most the rendition's rate over any VBV_WINDOW_S, keyframes
                # included, so a keyframe does not burst past a link sized for the rung.
                "x264-params": (
                    f"keyint={gop_frames}:min-keyint={gop_frames}:scenecut=0:"
                    "repeat-headers=1:bframes=0:aud=0:"
                    f"vbv-maxrate={rendition.bitrate_kbps}:"
                    f"vbv-bufsize={max(1, round(rendition.bitrate_kbps * VBV_WINDOW_S))}"
                ),
            }
        else:
            ctx = av.CodecContext.create("libvpx", "w")
            ctx.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
                "error-resilient": "1",
                "auto-alt-ref": "0",
            }
            ctx.gop_size = gop_frames
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = fractions.Fraction(round(rendition.max_fps), 1)
        ctx.bit_rate = rendition.bitrate_kbps * 1000
        ctx.thread_count = 1
        ctx.open()
        self._ctx = ctx
        log.info(
            "encoder opened",
            extra={"rendition": rendition.name, "codec": rendition.codec,
                   "size": f"{width}x{height}", "kbps": rendition.bitrate_kbps},
        )

    def encode(self, frame: av.VideoFrame, pts: int, keyframe: bool) -> list[Any]:
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = TIME_BASE
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        packets: list[Any] = list(self._ctx.encode(frame))
        for p in packets:
            if p.pts is None:
                p.pts = pts
            p.time_base = TIME_BASE
            self.frames += 1
            self.bytes += p.size
            self.keyframes += bool(p.is_keyframe)
        return packets

    def close(self) -> None:
        with contextlib.suppress(Exception):  # PyAV versions differ on close()
            self._ctx.close()
