"""One DJI aircraft as the relay knows it, and DJI's codes in words."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .estimate import DeadReckoning

__all__ = ["ERRORS", "MODELS", "PERMANENT", "QUALITY", "Aircraft", "DjiError", "error_words"]

# DJI's live error codes (the last five digits), in the words a commander needs.
ERRORS = {
    13001: "no aircraft connected", 13002: "no such camera on the aircraft", 13003: "already streaming",
    13004: "the aircraft cannot stream this", 13005: "quality not supported",
    13006: "the pilot is not on the camera view: ask them to open it", 13007: "no flight-control authority",
    13008: "no video from the camera", 13009: "asked too often: wait a moment",
    13010: "the aircraft cannot reach the relay's address", 13011: "not streaming",
    13012: "another camera is live and cannot be switched directly",
    13013: "this way of pushing is not supported",
    13014: "wrong or incomplete parameters", 13015: "network congestion", 13016: "decoding failed",
    13017: "paused during a file download", 13099: "unknown error",
}
PERMANENT = {13001, 13002, 13004, 13005, 13013, 13014}
# domain-type-sub_type of the aircraft (docs: ../shared/DJI-CLOUD-API.md §2)
MODELS = {"0-89-0": "M350 RTK", "0-60-0": "M300 RTK", "0-67-0": "M30", "0-67-1": "M30T", "0-77-0": "Mavic 3E",
          "0-77-1": "Mavic 3T", "0-77-3": "Mavic 3TA", "0-91-0": "M3D", "0-91-1": "M3TD", "0-99-0": "M4E",
          "0-99-1": "M4T", "0-100-0": "M4D", "0-100-1": "M4TD", "0-103-0": "Matrice 400"}
QUALITY = {0: "adaptive", 1: "smooth 960x540", 2: "SD 720p", 3: "HD 720p", 4: "UHD 1080p"}


def error_words(code: int) -> str:
    if code == 0:
        return "done"
    detail = code % 100000
    return f"{ERRORS.get(detail, 'error')} (DJI {code})"


class DjiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Aircraft:
    sn: str
    gateway: str
    model: str = ""
    stream: str | None = None
    reckon: DeadReckoning = field(default_factory=DeadReckoning)
    payload: str = ""
    lens: str = "normal"
    zoom: float | None = None
    ir_zoom: float | None = None
    thermal: dict[str, float] = field(default_factory=dict)
    target: dict[str, float] = field(default_factory=dict)
    mode: int | None = None
    online: bool = True
    last_osd: float = 0.0       # monotonic arrival of the newest OSD
    osd_count: int = 0
    fov_known: bool | None = None
    live: dict[str, Any] = field(default_factory=dict)   # video_id, state, quality, error
    capacity: dict[str, list[str]] = field(default_factory=dict)
    target_gap_m: float | None = None  # the laser's point against the footprint's centre

    def doc(self) -> dict[str, Any]:
        return {"serial": self.sn, "gateway": self.gateway, "model": self.model,
                "name": MODELS.get(self.model, f"aircraft {self.model}"), "stream": self.stream,
                "online": self.online, "lens": self.lens, "camera": self.payload, "zoom": self.zoom,
                "fov_known": self.fov_known, "thermal": self.thermal or None, "target": self.target or None,
                "target_gap_m": self.target_gap_m, "mode": self.mode, "osd": self.osd_count,
                "osd_age_s": round(time.monotonic() - self.last_osd, 1) if self.last_osd else None,
                "live": self.live or None,
                "lenses": sorted({t for ts in self.capacity.values() for t in ts})
                or ["normal", "wide", "zoom", "ir"]}
