"""A synthetic aerial scene in I420: moving ground, drifting smoke, a pulsing hot spot, the stamp.

Everything is drawn straight into Y/U/V planes so a 1280x720 frame costs a few ms.
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import numpy.typing as npt

from .stamp import Stamp, paint, stamp_rect

__all__ = ["Scene"]

U8 = npt.NDArray[np.uint8]


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> npt.NDArray[np.float32]:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = max(2, h >> (octaves + 1 - o)), max(2, w >> (octaves + 1 - o))
        layer = rng.random((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(layer, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    out /= total
    return out


class Scene:
    """Renders frames of ``width`` x ``height``; call :meth:`render` with a frame number."""

    def __init__(self, width: int, height: int, seed: int = 7) -> None:
        if width % 2 or height % 2:
            raise ValueError("width and height must be even")
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        tw, th = width * 2, height * 2
        ground = _noise(rng, th, tw)
        # Fields, roads and roofs: hard edges give the encoder real detail to chew on.
        y = (40 + ground * 150).astype(np.uint8)
        for _ in range(90):
            x0, y0 = int(rng.integers(0, tw - 60)), int(rng.integers(0, th - 60))
            bw, bh = int(rng.integers(20, 120)), int(rng.integers(20, 90))
            cv2.rectangle(y, (x0, y0), (x0 + bw, y0 + bh), int(rng.integers(90, 230)), -1)
            cv2.rectangle(y, (x0, y0), (x0 + bw, y0 + bh), 30, 2)
        for _ in range(8):
            p0 = (int(rng.integers(0, tw)), 0)
            p1 = (int(rng.integers(0, tw)), th)
            cv2.line(y, p0, p1, 110, int(rng.integers(6, 14)))
        self._y: U8 = y
        green = _noise(rng, th // 2, tw // 2, 3)
        self._u: U8 = (112 + green * 14).astype(np.uint8)
        self._v: U8 = (118 + (1 - green) * 16).astype(np.uint8)
        ph, pw = height // 2, width // 3
        plume = _noise(rng, ph, pw, 4)
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        fall = np.exp(-(((xx - pw * 0.45) / (pw * 0.22)) ** 2 + ((yy - ph * 0.55) / (ph * 0.22)) ** 2))
        self._plume = np.clip(plume * 2.2 * fall, 0, 0.9).astype(np.float32)
        self._stamp_rect = stamp_rect(width, height)

    def _offset(self, t: float) -> tuple[int, int]:
        span_x, span_y = self.width, self.height
        fx = (t * 45.0) % (2 * span_x)
        fy = (t * 17.0) % (2 * span_y)
        x = fx if fx < span_x else 2 * span_x - fx
        y = fy if fy < span_y else 2 * span_y - fy
        return int(x) & ~1, int(y) & ~1

    def render(self, frame_no: int, t: float | None = None, capture_ms: int | None = None) -> U8:
        """An I420 array (height*3/2 x width) for frame ``frame_no`` at scene time ``t``."""
        w, h = self.width, self.height
        t = frame_no / 30.0 if t is None else t
        ox, oy = self._offset(t)
        out = np.empty((h * 3 // 2, w), np.uint8)
        y = out[:h]
        y[:] = self._y[oy : oy + h, ox : ox + w]
        q = (w // 2) * (h // 2)
        flat = out[h:].reshape(-1)
        u = flat[:q].reshape(h // 2, w // 2)
        v = flat[q:].reshape(h // 2, w // 2)
        u[:] = self._u[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2]
        v[:] = self._v[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2]
        # Hot spot: a pulsing orange-white core where the fire is.
        cx = int(w * 0.55 + math.sin(t * 0.3) * w * 0.05)
        cy = int(h * 0.6)
        r = int(h * (0.035 + 0.01 * math.sin(t * 4.0)))
        cv2.circle(y, (cx, cy), r * 2, 170, -1, cv2.LINE_AA)
        cv2.circle(y, (cx, cy), r, 250, -1, cv2.LINE_AA)
        cv2.circle(u, (cx // 2, cy // 2), r, 70, -1)
        cv2.circle(v, (cx // 2, cy // 2), r, 200, -1)
        # Smoke: blend toward grey, drifting with the wind from the hot spot.
        ph, pw = self._plume.shape
        px = cx - int(pw * 0.3) + int((t * 25) % (w * 0.1))
        py = cy - ph
        x0, y0 = max(0, px), max(0, py)
        x1, y1 = min(w, px + pw), min(h, py + ph)
        if x1 > x0 and y1 > y0:
            a = self._plume[y0 - py : y1 - py, x0 - px : x1 - px]
            a = a * (0.75 + 0.25 * math.sin(t * 1.3))
            roi = y[y0:y1, x0:x1]
            roi[:] = (roi * (1 - a) + 190 * a).astype(np.uint8)
            a2 = a[::2, ::2]
            hy0, hx0 = y0 // 2, x0 // 2
            uh, uw = a2.shape
            for plane in (u, v):
                r2 = plane[hy0 : hy0 + uh, hx0 : hx0 + uw]
                a3 = a2[: r2.shape[0], : r2.shape[1]]
                r2[:] = (r2 * (1 - a3) + 128 * a3).astype(np.uint8)
        # The stamp, on neutral chroma.
        sx, sy, sw, sh = self._stamp_rect
        u[sy // 2 : (sy + sh + 1) // 2, sx // 2 : (sx + sw + 1) // 2] = 128
        v[sy // 2 : (sy + sh + 1) // 2, sx // 2 : (sx + sw + 1) // 2] = 128
        ms = int(time.time() * 1000) if capture_ms is None else capture_ms
        paint(y, Stamp(frame_no, ms))
        return out
