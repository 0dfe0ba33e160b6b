"""MISB ST 0601 KLV (the UAS Datalink Local Set) from a video feed's data stream.

MPEG-TS and RTSP feeds of military-grade and many public-safety drones carry the platform's
position, heading and sensor pointing as KLV beside the H.264. We decode it with the
``stanag4609`` package (checksum verified, MISB's mapped integers turned into degrees and
metres) and keep what the map needs. The Precision Time Stamp (tag 2) is the time the
values were measured: it becomes the sample's capture time.
"""

from __future__ import annotations

import datetime
from typing import Any

from stanag4609 import st0601

__all__ = ["KlvError", "fields_from_klv"]

# ST 0601 tag -> our field (tags 18/19 and 15/25 are combined below).
_DIRECT = {5: "hdg", 6: "pitch", 7: "roll", 13: "lat", 14: "lon", 15: "alt", 16: "hfov", 17: "vfov",
           23: "center_lat", 24: "center_lon", 56: "speed"}


class KlvError(ValueError):
    """Not a well-formed ST 0601 packet (bad key, length, checksum, or no time stamp)."""


def fields_from_klv(data: bytes) -> tuple[float, dict[str, float]]:
    """(capture time, fields) of one ST 0601 packet; raises :class:`KlvError`."""
    try:
        ls: Any = st0601.decode_uas_local_set(bytes(data))
    except Exception as exc:  # the library raises its own error types for every defect
        raise KlvError(str(exc)[:120]) from None
    raw: dict[int, Any] = {f.definition.tag: f.value for f in ls.fields}
    ts = raw.get(2)
    if not isinstance(ts, datetime.datetime):
        raise KlvError("no Precision Time Stamp")
    out: dict[str, float] = {}
    for tag, name in _DIRECT.items():
        v = raw.get(tag)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[name] = float(v)
    if "hdg" in out:
        out["hdg"] %= 360.0
        az = raw.get(18)
        if isinstance(az, int | float):
            out["gimbal_yaw"] = (out["hdg"] + float(az)) % 360.0
    el = raw.get(19)
    if isinstance(el, int | float):
        out["gimbal_pitch"] = float(el)
    ground = raw.get(25)  # Frame Center Elevation (MSL): the ground the camera looks at
    if "alt" in out and isinstance(ground, int | float):
        out["rel_alt"] = out["alt"] - float(ground)
    return ts.timestamp(), out
