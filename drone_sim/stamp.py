"""The burned-in stamp: frame number and capture time, readable after compression and scaling.

Format (docs/stamp.md): a grid of 24 x 4 square cells, each W/80 wide and H/45 high
(16 px at 1280x720, 8 px at 640x360), starting one cell from the top-left corner, inside
a black border half a cell wide. Cells are read row by row, most significant bit first:

    bits  0..31  frame number (uint32)
    bits 32..79  capture time, wall clock, ms since the Unix epoch (uint48)
    bits 80..95  CRC-16/CCITT-FALSE of the 10 payload bytes

Two slots use the same format: "drone" (top-left, cells from column 1 / row 1: the
capture time) and "relay" (bottom-right, from column 55 / row 40: the relay burns its
arrival time there, so feeds without a drone stamp still show relay → screen latency).

A 1 is white (luma 235), a 0 black (luma 16). A reader averages the inner half of each
cell and thresholds at mid-grey, then checks the CRC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["COLS", "ROWS", "SLOTS", "Stamp", "crc16", "decode", "encode_bits", "paint", "stamp_rect"]

COLS, ROWS = 24, 4
GRID_W, GRID_H = 80, 45  # cells across / down the frame
WHITE, BLACK = 235, 16
SLOTS = {"drone": (1, 1), "relay": (GRID_W - 1 - COLS, GRID_H - 1 - ROWS)}


@dataclass(frozen=True)
class Stamp:
    frame: int
    capture_ms: int


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode_bits(stamp: Stamp) -> list[int]:
    payload = (stamp.frame & 0xFFFFFFFF).to_bytes(4, "big") + (
        stamp.capture_ms & 0xFFFFFFFFFFFF
    ).to_bytes(6, "big")
    word = payload + crc16(payload).to_bytes(2, "big")
    return [(byte >> (7 - i)) & 1 for byte in word for i in range(8)]


def _cell(width: int, height: int) -> tuple[float, float]:
    return width / GRID_W, height / GRID_H


def stamp_rect(width: int, height: int, slot: str = "drone") -> tuple[int, int, int, int]:
    """(x, y, w, h) of the stamp area including its half-cell border, in pixels."""
    cw, ch = _cell(width, height)
    c0, r0 = SLOTS[slot]
    x0, y0 = int(cw * (c0 - 0.5)), int(ch * (r0 - 0.5))
    x1, y1 = round(cw * (c0 + COLS + 0.5)), round(ch * (r0 + ROWS + 0.5))
    return x0, y0, min(width, x1) - x0, min(height, y1) - y0


def paint(luma: npt.NDArray[np.uint8], stamp: Stamp, slot: str = "drone") -> None:
    """Burn the stamp into a luma plane (in place). Chroma of that area should be neutral."""
    h, w = luma.shape[:2]
    x, y, rw, rh = stamp_rect(w, h, slot)
    luma[y : y + rh, x : x + rw] = BLACK
    cw, ch = _cell(w, h)
    c0, r0 = SLOTS[slot]
    for i, bit in enumerate(encode_bits(stamp)):
        if bit:
            r, c = divmod(i, COLS)
            cx0, cy0 = round(cw * (c0 + c)), round(ch * (r0 + r))
            cx1, cy1 = round(cw * (c0 + 1 + c)), round(ch * (r0 + 1 + r))
            luma[cy0:cy1, cx0:cx1] = WHITE


def decode(luma: npt.NDArray[np.uint8], slot: str = "drone") -> Stamp | None:
    """Read a stamp from a luma (grey) plane of any size; None if absent or corrupt."""
    h, w = luma.shape[:2]
    cw, ch = _cell(w, h)
    c0, r0 = SLOTS[slot]
    bits = []
    for i in range(COLS * ROWS):
        r, c = divmod(i, COLS)
        x0 = int(cw * (c0 + 0.25 + c))
        x1 = max(x0 + 1, int(cw * (c0 + 0.75 + c)))
        y0 = int(ch * (r0 + 0.25 + r))
        y1 = max(y0 + 1, int(ch * (r0 + 0.75 + r)))
        bits.append(1 if float(luma[y0:y1, x0:x1].mean()) > 125 else 0)
    data = bytes(
        sum(bit << (7 - j) for j, bit in enumerate(bits[k : k + 8])) for k in range(0, 96, 8)
    )
    if crc16(data[:10]) != int.from_bytes(data[10:12], "big"):
        return None
    return Stamp(frame=int.from_bytes(data[:4], "big"), capture_ms=int.from_bytes(data[4:10], "big"))
