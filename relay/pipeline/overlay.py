"""OpenCV drawing straight on I420 planes: no colour conversion per frame.

The frame arrives as an I420 array (Y plane on top of U and V planes, the layout of
``av.VideoFrame.to_ndarray()`` for yuv420p). Text goes on the luma plane; the red badge
is painted in all three planes.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["draw_overlay", "draw_slate", "draw_telemetry", "planes"]

Image = npt.NDArray[np.uint8]

# BT.601 limited-range YUV of the colours we paint.
RED = (81, 90, 240)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def planes(img: Image, width: int, height: int) -> tuple[Image, Image, Image]:
    """Views of the Y, U and V planes of an I420 array."""
    y = img[:height]
    flat = img[height:].reshape(-1)
    quarter = (width // 2) * (height // 2)
    u = flat[:quarter].reshape(height // 2, width // 2)
    v = flat[quarter : 2 * quarter].reshape(height // 2, width // 2)
    return y, u, v


def _text(y: Image, text: str, org: tuple[int, int], scale: float, thick: int) -> None:
    """Light text on a dark edge. The edge is the same text at the same weight, shifted:
    OpenCV's current fonts widen with thickness, so a thicker dark copy ran past the light
    one and doubled its last letters ("for 5 s s" on the slate)."""
    x, y0 = org
    d = max(1, (thick + 1) // 2)
    for dx, dy in ((-d, -d), (d, -d), (-d, d), (d, d)):
        cv2.putText(y, text, (x + dx, y0 + dy), FONT, scale, 16, thick, cv2.LINE_AA)
    cv2.putText(y, text, org, FONT, scale, 235, thick, cv2.LINE_AA)


def _badge(img: Image, width: int, height: int, label: str, right: int, top: int) -> None:
    y, u, v = planes(img, width, height)
    scale = height / 720 * 0.9
    thick = max(1, round(height / 360))
    (tw, th), _ = cv2.getTextSize(label, FONT, scale, thick)
    pad = max(4, th // 2)
    x0, y0 = right - tw - 2 * pad, top
    x1, y1 = right, top + th + 2 * pad
    x0, y0 = x0 & ~1, y0 & ~1
    y[y0:y1, x0:x1] = RED[0]
    u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = RED[1]
    v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = RED[2]
    cv2.putText(y, label, (x0 + pad, y1 - pad), FONT, scale, 235, thick, cv2.LINE_AA)


def draw_overlay(img: Image, width: int, height: int, name: str, wall: float | None = None) -> None:
    """Stream name and wall-clock time bottom left, a LIVE badge top right (in place)."""
    y = img[:height]
    wall = time.time() if wall is None else wall
    clock = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall * 10) % 10}"
    scale = height / 720 * 0.9
    thick = max(1, round(height / 360))
    margin = max(8, height // 40)
    _text(y, f"{name}  {clock}", (margin, height - margin), scale, thick)
    _badge(img, width, height, "LIVE", width - margin, margin)


def draw_slate(
    last: Image | None, width: int, height: int, name: str, title: str, detail: str
) -> Image:
    """A dimmed copy of the last frame (or black) with a centred notice."""
    if last is not None and last.shape == (height * 3 // 2, width):
        img = last.copy()
        y, u, v = planes(img, width, height)
        y[:] = (y.astype(np.uint16) * 2 // 5 + 10).astype(np.uint8)
        u[:] = 128
        v[:] = 128
    else:
        img = np.empty((height * 3 // 2, width), np.uint8)
        img[:height] = 16
        img[height:] = 128
    y = img[:height]
    scale = height / 720 * 1.6
    thick = max(2, round(height / 240))
    (tw, th), _ = cv2.getTextSize(title, FONT, scale, thick)
    _text(y, title, ((width - tw) // 2, height // 2), scale, thick)
    small = scale * 0.5
    (dw, _), _ = cv2.getTextSize(detail, FONT, small, max(1, thick // 2))
    _text(y, detail, ((width - dw) // 2, height // 2 + th + height // 30), small, max(1, thick // 2))
    return img


def draw_telemetry(img: Image, width: int, height: int, state: dict[str, float], stale: bool) -> None:
    """Heading tape (top centre), altitude (right), position and battery (bottom right), on
    the luma plane, once per source frame for every rendition. Stale: said in the picture."""
    y = img[:height]
    scale = height / 720 * 0.7
    thick = max(1, round(height / 480))
    margin = max(8, height // 40)
    hdg = state.get("hdg")
    if hdg is not None:
        cx, top = width // 2, margin
        span = width // 3  # ±45° across a third of the width
        for deg in range(int(hdg) - 45, int(hdg) + 46):
            if deg % 10:
                continue
            x = cx + round((deg - hdg) / 45 * span / 2)
            tick = height // 40 if deg % 30 == 0 else height // 70
            cv2.line(y, (x, top), (x, top + tick), 235, thick + 1)
            if deg % 30 == 0:
                label = {0: "N", 90: "E", 180: "S", 270: "W"}.get(deg % 360, str(deg % 360))
                (tw, th), _ = cv2.getTextSize(label, FONT, scale * 0.7, thick)
                _text(y, label, (x - tw // 2, top + tick + th + 4), scale * 0.7, thick)
        cv2.line(y, (cx, top), (cx, top + height // 22), 235, thick + 2)
        _text(y, f"{round(hdg) % 360:03d}", (cx - round(22 * scale), top + height // 8), scale, thick)
    alt = state.get("rel_alt", state.get("alt"))
    if alt is not None:
        label = f"ALT {alt:.0f} m"
        (tw, _), _ = cv2.getTextSize(label, FONT, scale, thick)
        _text(y, label, (width - tw - margin, height // 2), scale, thick)
    parts = []
    if "lat" in state and "lon" in state:
        parts.append(f"{abs(state['lat']):.5f}{'N' if state['lat'] >= 0 else 'S'} "
                     f"{abs(state['lon']):.5f}{'E' if state['lon'] >= 0 else 'W'}")
    if "battery" in state:
        parts.append(f"BAT {state['battery']:.0f}%")
    if stale:
        parts.append("TELEMETRY STALE")
    if parts:
        label = "  ".join(parts)
        (tw, _), _ = cv2.getTextSize(label, FONT, scale, thick)
        _text(y, label, (width - tw - margin, height - margin), scale, thick)
