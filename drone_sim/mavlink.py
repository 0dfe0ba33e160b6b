"""The simulator's autopilot voice: MAVLink v2 over UDP, as PX4/ArduPilot send it.

Ten times a second ``GLOBAL_POSITION_INT``, ``ATTITUDE``, ``GIMBAL_DEVICE_ATTITUDE_STATUS``
and ``CAMERA_FOV_STATUS``; once a second ``HEARTBEAT``, ``SYSTEM_TIME`` (the boot clock on
the wall clock), ``SYS_STATUS`` and ``BATTERY_STATUS``. Every message carries
``time_boot_ms`` of the moment it describes, from the same clock that stamps the frames.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from urllib.parse import urlsplit

from pymavlink.dialects.v20 import common as mavlink2
from pymavlink.quaternion import Quaternion

from .flight import Flight

__all__ = ["MavlinkSender", "parse_target"]

log = logging.getLogger("drone_sim.mavlink")
UINT16_MAX = 2**16 - 1


def parse_target(url: str) -> tuple[str, int]:
    """``mavlink+udp://HOST:PORT`` or ``udp://HOST:PORT`` -> (host, port)."""
    u = urlsplit(url)
    if u.scheme not in ("mavlink+udp", "udp") or not u.hostname or not u.port:
        raise ValueError(f"telemetry target must be mavlink+udp://HOST:PORT, got {url!r}")
    return u.hostname, u.port


class _Datagrams:
    """pymavlink writes each packed message to its "file": one datagram per message."""

    def __init__(self, sock: socket.socket, to: tuple[str, int]) -> None:
        self.sock, self.to = sock, to

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # nobody listening yet: UDP, as from a real autopilot
            self.sock.sendto(data, self.to)


class MavlinkSender:
    def __init__(self, flight: Flight, target: str, rate_hz: float = 10.0) -> None:
        self.flight = flight
        self.to = parse_target(target)
        self.rate_hz = rate_hz
        self.boot = time.time()
        self.sent = 0
        self._sock = socket.socket(socket.AF_INET6 if ":" in self.to[0] else socket.AF_INET,
                                   socket.SOCK_DGRAM)
        self.mav = mavlink2.MAVLink(_Datagrams(self._sock, self.to), srcSystem=1, srcComponent=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def boot_ms(self, t: float) -> int:
        return int((t - self.boot) * 1000) & 0xFFFFFFFF

    def send_once(self, t: float, slow: bool) -> None:
        s = self.flight.at(t)
        ms = self.boot_ms(t)
        m = self.mav
        if slow:
            m.heartbeat_send(mavlink2.MAV_TYPE_QUADROTOR, mavlink2.MAV_AUTOPILOT_PX4,
                             mavlink2.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 0, mavlink2.MAV_STATE_ACTIVE)
            m.system_time_send(int(t * 1e6), ms)
            m.sys_status_send(0, 0, 0, 200, int(s["voltage"] * 1000), -1, int(s["battery"]),
                              0, 0, 0, 0, 0, 0)
            m.battery_status_send(0, mavlink2.MAV_BATTERY_FUNCTION_ALL, mavlink2.MAV_BATTERY_TYPE_LIPO,
                                  2500, [int(s["voltage"] * 1000)] + [UINT16_MAX] * 9, -1, -1, -1,
                                  int(s["battery"]))
        hdg = math.radians(s["hdg"])
        vx = s["speed"] * math.cos(hdg) * 100
        vy = s["speed"] * math.sin(hdg) * 100
        m.global_position_int_send(ms, int(s["lat"] * 1e7), int(s["lon"] * 1e7), int(s["alt"] * 1000),
                                   int(s["rel_alt"] * 1000), int(vx), int(vy), 0, int(s["hdg"] * 100))
        m.attitude_send(ms, math.radians(s["roll"]), math.radians(s["pitch"]),
                        math.radians(s["hdg"] if s["hdg"] <= 180 else s["hdg"] - 360), 0, 0, 0)
        q = Quaternion([0.0, math.radians(s["gimbal_pitch"]), math.radians(s["gimbal_yaw"])]).q
        # Yaw in the earth frame (flag 64, and "yaw lock" for older readers).
        m.gimbal_device_attitude_status_send(0, 0, ms, 16 | 64, [float(x) for x in q],
                                             0, 0, 0, 0)
        nan = float("nan")
        clat = int(s["center_lat"] * 1e7) if "center_lat" in s else 2**31 - 1
        clon = int(s["center_lon"] * 1e7) if "center_lon" in s else 2**31 - 1
        m.camera_fov_status_send(ms, int(s["lat"] * 1e7), int(s["lon"] * 1e7), int(s["alt"] * 1000),
                                 clat, clon, int((s["alt"] - s["rel_alt"]) * 1000),
                                 [float(x) for x in q], s["hfov"], s["vfov"] if s["vfov"] else nan)
        self.sent += 1

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        n = 0
        next_t = time.time()
        while not self._stop.is_set():
            t = time.time()
            self.send_once(t, slow=n % max(1, int(self.rate_hz)) == 0)
            n += 1
            next_t += period
            self._stop.wait(max(0.0, next_t - time.time()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mavlink", daemon=True)
        self._thread.start()
        log.info("MAVLink telemetry to %s:%d at %.0f Hz", self.to[0], self.to[1], self.rate_hz)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sock.close()
