"""MISB ST 0601 (UAS Datalink Local Set) KLV for the simulator's MPEG-TS: the same state as
its MAVLink, inside the video, stamped with the frame's capture time (Precision Time Stamp).
Encoded with the ``stanag4609`` package (checksum, mapped integer fields)."""

from __future__ import annotations

import datetime

from stanag4609 import st0601

__all__ = ["klv_packet"]


def klv_packet(state: dict[str, float], capture_s: float, ground_msl: float) -> bytes:
    rel_az = (state["gimbal_yaw"] - state["hdg"]) % 360.0
    values: dict[int, object] = {
        2: datetime.datetime.fromtimestamp(capture_s, datetime.UTC),
        65: 17,  # UAS Datalink LS version
        5: state["hdg"] % 360.0,
        6: max(-20.0, min(20.0, state["pitch"])),
        7: max(-50.0, min(50.0, state["roll"])),
        13: state["lat"], 14: state["lon"], 15: state["alt"],
        16: state["hfov"], 17: state["vfov"],
        18: rel_az, 19: state["gimbal_pitch"],
        25: ground_msl,  # Frame Center Elevation: the ground the camera sees
        56: round(state["speed"]),
    }
    if "center_lat" in state:
        values[23], values[24] = state["center_lat"], state["center_lon"]
    return st0601.encode_uas_local_set(values)
