"""The relay's own stamp (docs/stamp.md, slot "relay", bottom-right): frame counter and
arrival wall-clock ms, so a viewer can measure relay-arrival → presented on any feed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["paint_relay_stamp"]

COLS, ROWS, GRID_W, GRID_H = 24, 4, 80, 45
C0, R0 = GRID_W - 1 - COLS, GRID_H - 1 - ROWS
WHITE, BLACK = 235, 16


def _crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)) & 0xFFFF
    return crc


def paint_relay_stamp(
    y: npt.NDArray[np.uint8], u: npt.NDArray[np.uint8], v: npt.NDArray[np.uint8],
    frame: int, wall_ms: int,
) -> None:
    """Paint the stamp into the Y plane, neutral chroma under it (in place)."""
    h, w = y.shape
    cw, ch = w / GRID_W, h / GRID_H
    payload = (frame & 0xFFFFFFFF).to_bytes(4, "big") + (wall_ms & 0xFFFFFFFFFFFF).to_bytes(6, "big")
    word = payload + _crc16(payload).to_bytes(2, "big")
    x0, y0 = int(cw * (C0 - 0.5)), int(ch * (R0 - 0.5))
    x1, y1 = min(w, round(cw * (C0 + COLS + 0.5))), min(h, round(ch * (R0 + ROWS + 0.5)))
    y[y0:y1, x0:x1] = BLACK
    u[y0 // 2 : (y1 + 1) // 2, x0 // 2 : (x1 + 1) // 2] = 128
    v[y0 // 2 : (y1 + 1) // 2, x0 // 2 : (x1 + 1) // 2] = 128
    for i in range(COLS * ROWS):
        if (word[i >> 3] >> (7 - (i & 7))) & 1:
            r, c = divmod(i, COLS)
            cx0, cy0 = round(cw * (C0 + c)), round(ch * (R0 + r))
            cx1, cy1 = round(cw * (C0 + 1 + c)), round(ch * (R0 + 1 + r))
            y[cy0:cy1, cx0:cx1] = WHITE
