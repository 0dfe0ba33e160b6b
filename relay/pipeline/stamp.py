"""Stamps (docs/stamp.md) on the relay's side.

``read_drone_stamp`` reads the capture time a drone (or the simulator) burned into its own
picture (slot "drone", top-left), once per source frame: the relay then tells each viewer,
over the data channel, which capture time belongs to which RTP timestamp, and the browser
measures glass-to-glass latency without reading a pixel.

``paint_relay_stamp`` burns the relay's own stamp (slot "relay", bottom-right: frame counter
and arrival wall-clock ms) into the picture. It covers part of what a commander sees, so it
is off unless ``media.relay_stamp`` is set: only for browsers whose
``requestVideoFrameCallback`` gives no RTP timestamp."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["paint_relay_stamp", "read_drone_stamp"]

COLS, ROWS, GRID_W, GRID_H = 24, 4, 80, 45
C0, R0 = GRID_W - 1 - COLS, GRID_H - 1 - ROWS
DRONE_C0, DRONE_R0 = 1, 1
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


def _inner(start: float, size: float, n: int) -> npt.NDArray[np.intp]:
    """Pixel indices of the inner half of n consecutive cells: shape (n, k)."""
    k = max(1, int(size / 2))
    firsts = np.floor(start + (np.arange(n) + 0.25) * size).astype(np.intp)
    out: npt.NDArray[np.intp] = firsts[:, None] + np.arange(k, dtype=np.intp)[None, :]
    return out


def read_drone_stamp(y: npt.NDArray[np.uint8]) -> tuple[int, int] | None:
    """(frame number, capture wall-clock ms) from the drone slot, or None (no valid stamp).

    Vectorised: the inner half of each of the 96 cells is averaged with one gather, about
    30 µs at 1280x720 (the pipeline reads it once per source frame, before the overlay).
    """
    h, w = y.shape
    cw, ch = w / GRID_W, h / GRID_H
    if cw < 2 or ch < 2:
        return None
    rows = _inner(DRONE_R0 * ch, ch, ROWS)  # (4, kr)
    cols = _inner(DRONE_C0 * cw, cw, COLS)  # (24, kc)
    if rows[-1, -1] >= h or cols[-1, -1] >= w:
        return None
    block = y[rows.reshape(-1)[:, None], cols.reshape(-1)[None, :]]  # (4*kr, 24*kc)
    means = block.reshape(ROWS, rows.shape[1], COLS, cols.shape[1]).mean(axis=(1, 3))
    bits = (means > 128).reshape(-1)
    word = np.packbits(bits).tobytes()
    if _crc16(word[:10]) != int.from_bytes(word[10:12], "big"):
        return None
    return int.from_bytes(word[:4], "big"), int.from_bytes(word[4:10], "big")
