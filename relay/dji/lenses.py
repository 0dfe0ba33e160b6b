"""The field of view of a DJI camera's lenses: the Cloud API sends none, only which camera
(its payload index, ``53-0-0``), the lens on the live video and a zoom factor.

The table holds horizontal fields of view (degrees) computed from DJI's published diagonal
ones for the photo frame (docs: ../shared/DJI-CLOUD-API.md §2, marked there as unverified); a
brigade extends or corrects it in ``[dji.fov]``. A camera not in either is *unknown*: the relay
then gives no field of view, so no footprint is drawn rather than a wrong one. Live video is
16:9, so the vertical field follows from the horizontal one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["CAMERAS", "Lenses"]

# "<type>-<subtype>" of the payload index -> {lens: HFOV}. Zoom: the lens at zoom factor 1
# relative to the wide lens (the zoom factor DJI reports divides the wide view).
CAMERAS: dict[str, dict[str, float]] = {
    "52-0": {"wide": 71.5},                  # M30
    "53-0": {"wide": 71.5, "ir": 49.4},      # M30T
    "66-0": {"wide": 71.5},                  # Mavic 3E
    "67-0": {"wide": 71.5, "ir": 49.4},      # Mavic 3T
    "129-0": {"wide": 71.5, "ir": 49.4},     # Mavic 3TA
    "88-0": {"wide": 69.6},                  # M4E
    "89-0": {"wide": 69.6, "ir": 35.8},      # M4T
    "42-0": {"wide": 70.5},                  # H20
    "43-0": {"wide": 70.5, "ir": 32.2},      # H20T
    "82-0": {"wide": 69.7},                  # H30
    "83-0": {"wide": 69.7, "ir": 36.0},      # H30T
}
LENSES = ("wide", "zoom", "ir")
ASPECT = 9 / 16  # live video


def _narrow(hfov: float, factor: float) -> float:
    return math.degrees(2 * math.atan(math.tan(math.radians(hfov) / 2) / max(1.0, factor)))


class Lenses:
    def __init__(self, extra: Iterable[tuple[str, float]] = ()) -> None:
        self.table = {k: dict(v) for k, v in CAMERAS.items()}
        for key, hfov in extra:
            cam, lens = key.split("/")
            self.table.setdefault(cam, {})[lens] = float(hfov)

    def fov(self, payload: str, lens: str, zoom: float | None,
            ir_zoom: float | None) -> tuple[float, float] | None:
        """(HFOV, VFOV) of ``lens`` ("wide", "zoom", "ir"; "normal" is wide) on the camera
        ``payload`` ("53-0-0"), or None where the table does not know it."""
        cam = self.table.get("-".join(payload.split("-")[:2]))
        if cam is None:
            return None
        lens = "wide" if lens in ("normal", "") else "ir" if lens == "thermal" else lens
        if lens == "zoom":
            if "zoom" in cam:
                h = _narrow(cam["zoom"], zoom or 1.0)
            elif "wide" in cam and zoom:
                h = _narrow(cam["wide"], zoom)
            else:
                return None
        elif lens in cam:
            h = _narrow(cam[lens], ir_zoom or 1.0) if lens == "ir" else cam[lens]
        else:
            return None
        v = math.degrees(2 * math.atan(math.tan(math.radians(h) / 2) * ASPECT))
        return round(h, 2), round(v, 2)
