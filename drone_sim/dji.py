"""A DJI Pilot 2 emulator: the remote controller of a simulated DJI aircraft on the Cloud API.

It speaks what DJI documents (../shared/DJI-CLOUD-API.md) to an MQTT broker: ``update_topo``
on ``sys/product/{rc}/status`` (aircraft online), the aircraft's OSD on
``thing/product/{aircraft}/osd`` every ``1/osd_hz`` seconds (0.5 Hz like Pilot 2 outside DRC)
from the simulator's flight, ``live_capacity`` on the RC's state, and it answers the services
DJI's platform sends (``live_start_push``: pushes the simulated picture to the URL, RTMP or
WHIP; ``live_stop_push``; ``live_lens_change``; ``live_set_quality``). ``fail_starts`` makes
the first starts fail as DJI's often do (13006, "not on the camera view").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from .flight import Flight

__all__ = ["Pilot2"]

log = logging.getLogger("drone_sim.dji")


def _wgs_height(rel_alt: float) -> float:
    return 47.0 + rel_alt  # ellipsoid height: take-off point's (about 47 m in Berlin) + above take-off


class Pilot2:
    def __init__(self, broker: str, username: str, password: str, flight: Flight,
                 rc_sn: str = "5YSZK9C00000RC", aircraft_sn: str = "1581F5BKD00000AC", camera: str = "53-0-0",
                 model: tuple[int, int, int] = (0, 67, 1),
                 osd_hz: float = 0.5, size: tuple[int, int] = (640, 360), fail_starts: int = 0) -> None:
        self.broker, self.username, self.password = broker, username, password
        self.flight = flight
        self.rc, self.sn, self.camera, self.model = rc_sn, aircraft_sn, camera, model
        self.osd_hz, self.size = osd_hz, size
        self.fail_starts = fail_starts
        self.lens = "normal"
        self.quality = 0
        self.pushing: str | None = None   # the URL pushed to
        self.services: list[dict[str, Any]] = []  # every service received (tests)
        self.osd_sent: list[float] = []   # wall time of each OSD (tests: ground truth at that time)
        self._push_stop: asyncio.Event | None = None
        self._push_task: Any = None
        self.client: Any = None

    def _envelope(self, data: dict[str, Any], method: str | None = None, tid: str | None = None,
                  bid: str | None = None) -> bytes:
        doc: dict[str, Any] = {"tid": tid or str(uuid.uuid4()), "bid": bid or str(uuid.uuid4()),
                               "timestamp": int(time.time() * 1000), "gateway": self.rc, "data": data}
        if method:
            doc["method"] = method
        return json.dumps(doc).encode()

    def osd(self, t: float) -> dict[str, Any]:
        """The aircraft's OSD ``data`` at time ``t``, in DJI's fields and units."""
        s = self.flight.at(t)
        head = s["hdg"] if s["hdg"] <= 180 else s["hdg"] - 360
        yaw = s["gimbal_yaw"] if s["gimbal_yaw"] <= 180 else s["gimbal_yaw"] - 360
        out: dict[str, Any] = {
            "latitude": s["lat"], "longitude": s["lon"], "height": round(_wgs_height(s["rel_alt"]), 2),
            "elevation": s["rel_alt"], "attitude_head": round(head, 1), "attitude_pitch": s["pitch"],
            "attitude_roll": s["roll"], "horizontal_speed": s["speed"], "vertical_speed": 0.0, "mode_code": 5,
            "battery": {"capacity_percent": int(s["battery"]), "remain_flight_time": 1200},
            self.camera: {"payload_index": self.camera, "gimbal_pitch": s["gimbal_pitch"], "gimbal_roll": 0.0,
                          "gimbal_yaw": round(yaw, 1), "zoom_factor": 2.0,
                          "thermal_current_palette_style": 0, "thermal_gain_mode": 2,
                          "thermal_global_temperature_min": 8.5, "thermal_global_temperature_max": 312.0},
        }
        centre = (s.get("center_lat"), s.get("center_lon"))
        if centre[0] is not None:
            d = math.hypot((centre[0] - s["lat"]) * 111_320,
                           (centre[1] - s["lon"]) * 111_320 * math.cos(math.radians(s["lat"])))
            out[self.camera].update({"measure_target_latitude": centre[0],
                                     "measure_target_longitude": centre[1],
                                     "measure_target_distance": round(math.hypot(d, s["rel_alt"]), 1),
                                     "measure_target_altitude": 34.0, "measure_target_error_state": 0})
        return out

    def topo(self) -> dict[str, Any]:
        """``update_topo``: this remote controller, the aircraft under it."""
        d, t, st = self.model
        thing = {"device_secret": "x", "nonce": "n", "thing_version": "1.1.2"}
        return {"domain": 2, "type": 119, "sub_type": 0, **thing,
                "sub_devices": [{"sn": self.sn, "domain": d, "type": t, "sub_type": st, "index": "A",
                                 **thing}]}

    def capacity(self) -> dict[str, Any]:
        """``live_capacity``: one camera, one video, the lenses it switches between."""
        video = {"video_index": "normal-0", "video_type": "normal",
                 "switchable_video_types": ["normal", "wide", "zoom", "ir"]}
        one = {"available_video_number": 1, "coexist_video_number_max": 1}
        camera = {"camera_index": self.camera, **one, "video_list": [video]}
        return {"live_capacity": {**one, "device_list": [{"sn": self.sn, **one, "camera_list": [camera]}]}}

    async def run(self, stop: asyncio.Event) -> None:
        import aiomqtt

        u = urlsplit(self.broker)
        async with aiomqtt.Client(u.hostname or "127.0.0.1", u.port or 1883, username=self.username,
                                  password=self.password, identifier=f"pilot2-{self.rc}") as client:
            self.client = client
            await client.subscribe(f"thing/product/{self.rc}/services", qos=1)
            await client.subscribe(f"sys/product/{self.rc}/status_reply", qos=1)
            await client.publish(f"sys/product/{self.rc}/status", self._envelope(self.topo(), "update_topo"),
                                 qos=1)
            await client.publish(f"thing/product/{self.rc}/state", self._envelope(self.capacity()), qos=1)
            osd_task = asyncio.ensure_future(self._osd_loop(client, stop))
            try:
                async for message in client.messages:
                    if str(message.topic).endswith("/services"):
                        await self._service(client, json.loads(bytes(message.payload or b"{}")))
                    if stop.is_set():
                        break
            finally:
                osd_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await osd_task
                if stop.is_set():  # (the broker gone, a real controller keeps pushing: so does this)
                    await self.stop_push()

    async def _osd_loop(self, client: Any, stop: asyncio.Event) -> None:
        period = 1.0 / self.osd_hz
        while not stop.is_set():
            t = time.time()
            self.osd_sent.append(t)
            doc = json.loads(self._envelope(self.osd(t)))
            doc["timestamp"] = int(t * 1000)
            await client.publish(f"thing/product/{self.sn}/osd", json.dumps(doc).encode(), qos=0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    async def _service(self, client: Any, msg: dict[str, Any]) -> None:
        method, data = msg.get("method"), msg.get("data") or {}
        self.services.append({"method": method, "data": data, "at": time.time()})
        result: int = 0
        if method == "live_start_push":
            if self.fail_starts > 0:
                self.fail_starts -= 1
                result = 613006
            elif self.pushing:
                result = 613003
            else:
                await self._start_push(int(data.get("url_type", 1)), str(data.get("url", "")))
        elif method == "live_stop_push":
            result = 0 if self.pushing else 613011
            await self.stop_push()
        elif method == "live_lens_change":
            if data.get("video_type") in ("normal", "wide", "zoom", "ir"):
                self.lens = str(data["video_type"])
            else:
                result = 613014
        elif method == "live_set_quality":
            self.quality = int(data.get("video_quality", 0))
        else:
            result = 613004
        reply = {"tid": msg.get("tid"), "bid": msg.get("bid"), "timestamp": int(time.time() * 1000),
                 "method": method, "data": {"result": result, "output": {}}}
        await client.publish(f"thing/product/{self.rc}/services_reply", json.dumps(reply).encode(), qos=1)

    async def _start_push(self, url_type: int, url: str) -> None:
        self.pushing = url
        if url_type == 4:
            from .whip import publish_whip

            ev = asyncio.Event()
            self._push_stop = ev
            self._push_task = asyncio.ensure_future(publish_whip(url, None, self.size, 30.0, 1500, ev))
        else:
            # A process of its own (as ``python -m drone_sim`` pushes): FFmpeg's RTMP connect
            # holds the GIL, and the relay under test may live in this very process.
            w, h = self.size
            self._push_task = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "drone_sim", "--protocol", "rtmp", "--to", url, "--size", f"{w}x{h}",
                "--fps", "30", "--bitrate", "1500", stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)

    async def stop_push(self) -> None:
        if self._push_stop is not None:
            self._push_stop.set()
        task = self._push_task
        if isinstance(task, asyncio.subprocess.Process):
            if task.returncode is None:
                task.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task.wait(), 10)
        elif task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 10)
        self._push_stop, self._push_task, self.pushing = None, None, None
