"""MAVLink telemetry over UDP (PX4, ArduPilot, or a ground station's forward).

The listener owns the configured port behind the same gate as the video ports (allowed
senders only, one sender at a time) and parses each datagram with pymavlink's
``ardupilotmega`` dialect (a superset of ``common``, so ArduPilot's own messages are not
mistaken for garbage). A fresh parser per datagram: a corrupt datagram cannot swallow the
next one. What we take:

- ``GLOBAL_POSITION_INT``: position, altitudes, ground speed (heading if known);
- ``ATTITUDE``: roll, pitch, heading (yaw);
- ``GIMBAL_DEVICE_ATTITUDE_STATUS``: camera pitch and heading (earth or vehicle frame);
- ``CAMERA_FOV_STATUS``: where the image centre meets the ground, field of view;
- ``BATTERY_STATUS`` / ``SYS_STATUS``: percent remaining, voltage;
- ``SYSTEM_TIME``: the autopilot's boot time on the wall clock, so each message's
  ``time_boot_ms`` becomes the time it was measured (else: when it arrived).

Corrupt datagrams, unknown messages and out-of-range values are counted per stream
(``Telemetry.malformed``) and skipped; the video never notices.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit

from ..registry import Entry
from ..telemetry import TelemetryError, clean_update
from .gate import UdpGate

__all__ = ["MavlinkSource", "fields_of"]

log = logging.getLogger("relay.telemetry")

SOURCE = "mavlink"
MAX_CLOCK_SKEW_S = 30.0  # a boot-time mapping further off than this is not trusted
INT32_MAX = 2**31 - 1
UINT16_MAX = 2**16 - 1


def _deg360(rad: float) -> float:
    return math.degrees(rad) % 360.0


def _euler(q: Any) -> tuple[float, float, float]:
    """(roll, pitch, yaw) in radians of a w, x, y, z quaternion (aerospace ZYX order)."""
    from pymavlink.quaternion import Quaternion

    r, p, y = Quaternion([float(v) for v in q]).euler
    return float(r), float(p), float(y)


def fields_of(msg: Any, state: dict[str, float]) -> dict[str, float]:
    """The telemetry fields one MAVLink message carries (raw, before range checks)."""
    kind = msg.get_type()
    out: dict[str, float] = {}
    if kind == "GLOBAL_POSITION_INT":
        out = {"lat": msg.lat / 1e7, "lon": msg.lon / 1e7, "alt": msg.alt / 1000.0,
               "rel_alt": msg.relative_alt / 1000.0, "speed": math.hypot(msg.vx, msg.vy) / 100.0}
        if msg.hdg != UINT16_MAX:
            out["hdg"] = (msg.hdg / 100.0) % 360.0
    elif kind == "ATTITUDE":
        out = {"roll": math.degrees(msg.roll), "pitch": math.degrees(msg.pitch), "hdg": _deg360(msg.yaw)}
    elif kind == "GIMBAL_DEVICE_ATTITUDE_STATUS":
        _, pitch, yaw = _euler(msg.q)
        out = {"gimbal_pitch": math.degrees(pitch)}
        # The yaw's frame: said outright by newer autopilots, else implied by "yaw lock".
        earth = bool(msg.flags & 64) or (not msg.flags & 32 and bool(msg.flags & 16))
        if earth:
            out["gimbal_yaw"] = _deg360(yaw)
        elif "hdg" in state:
            out["gimbal_yaw"] = (state["hdg"] + math.degrees(yaw)) % 360.0
    elif kind == "CAMERA_FOV_STATUS":
        if msg.lat_image != INT32_MAX and msg.lon_image != INT32_MAX:
            out["center_lat"], out["center_lon"] = msg.lat_image / 1e7, msg.lon_image / 1e7
        for key in ("hfov", "vfov"):
            v = float(getattr(msg, key))
            if math.isfinite(v):
                out[key] = v
    elif kind == "BATTERY_STATUS":
        if msg.battery_remaining >= 0:
            out["battery"] = float(msg.battery_remaining)
        if msg.voltages and msg.voltages[0] != UINT16_MAX:
            out["voltage"] = msg.voltages[0] / 1000.0
    elif kind == "SYS_STATUS":
        if msg.battery_remaining >= 0:
            out["battery"] = float(msg.battery_remaining)
        if msg.voltage_battery != UINT16_MAX:
            out["voltage"] = msg.voltage_battery / 1000.0
    return out


class MavlinkSource(UdpGate):
    """Listens on the stream's ``telemetry`` URL and feeds its :class:`Telemetry`."""

    def __init__(self, entry: Entry, url: str, allow: tuple[str, ...], takeover_after_s: float) -> None:
        super().__init__(entry.name, allow, ("127.0.0.1", 0), takeover_after_s)
        u = urlsplit(url)
        self.host = u.hostname or "0.0.0.0"
        self.port = int(u.port or 14550)
        self.entry = entry
        self.boot_offset: float | None = None  # wall clock - autopilot boot clock, seconds
        self.datagrams = 0
        from pymavlink.dialects.v20 import ardupilotmega

        self._dialect = ardupilotmega

    def _measured_at(self, msg: Any, arrival: float) -> float:
        """When a message's values were measured. One that carries its own time
        (``time_boot_ms``) is its own sample: that time on the wall clock once SYSTEM_TIME
        told the boot offset, else its arrival. One without (battery, voltage) belongs to
        the newest state (or its arrival, when that is old)."""
        boot_ms = getattr(msg, "time_boot_ms", None)
        if not isinstance(boot_ms, int):
            t = self.entry.telemetry.t
            return t if 0 < arrival - t < 2.0 else arrival
        if self.boot_offset is not None:
            measured = self.boot_offset + boot_ms / 1000.0
            if abs(measured - arrival) < MAX_CLOCK_SKEW_S:
                return measured
        return arrival

    async def start(self) -> None:  # type: ignore[override]
        await super().start(self.host, self.port)
        log.info("MAVLink telemetry listening", extra={"stream": self.entry.name,
                                                        "address": f"{self.host}:{self.port}"})

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.admit(addr):
            return
        self.datagrams += 1
        arrival = time.time()
        tele = self.entry.telemetry
        parser = self._dialect.MAVLink(None)
        parser.robust_parsing = True
        try:
            msgs = parser.parse_buffer(data) or []
        except Exception:  # pymavlink raises its own errors (and others) on odd input
            msgs = []
            tele.bad(SOURCE)
        if not msgs and data:
            tele.bad(SOURCE)  # not one whole message in the datagram
        for msg in msgs:
            kind = msg.get_type()
            if kind == "BAD_DATA":
                tele.bad(SOURCE)
                continue
            if kind == "SYSTEM_TIME":
                if msg.time_unix_usec > 0:
                    offset = msg.time_unix_usec / 1e6 - msg.time_boot_ms / 1000.0
                    if abs(offset + msg.time_boot_ms / 1000.0 - arrival) < MAX_CLOCK_SKEW_S:
                        self.boot_offset = offset
                continue
            try:
                fields = clean_update(fields_of(msg, tele.state))
            except (TelemetryError, AttributeError, TypeError, ValueError):
                tele.bad(SOURCE)
                continue
            if not fields:
                continue
            tele.update(SOURCE, fields, t=self._measured_at(msg, arrival))
