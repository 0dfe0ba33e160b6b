"""The relay as a DJI Cloud API platform: one MQTT client of the brigade's broker.

- ``update_topo`` from a remote controller (DJI Pilot 2) or a Dock says which aircraft is
  online under which gateway; each aircraft gets its stream (``[dji.aircraft]``, else the next
  free name of ``[dji] streams``), and every ``update_topo`` is answered.
- The aircraft's OSD (0.5 Hz) becomes the stream's telemetry with MAVLink's meanings: position,
  height above take-off, heading, attitude, speed, battery, the gimbal (earth-referenced) and
  the lens's field of view (relay/dji/lenses.py); between OSD messages the position and angles
  are carried forward (relay/dji/estimate.py) ten times a second, each estimate saying how old
  its measurement is. A Dock's partial OSD messages merge into one state.
- Live control (the API, control role): start and stop the aircraft's stream (to this relay,
  RTMP or WHIP, with a publish token for that stream), switch lens and quality. Each service
  waits for its reply (DJI's own platform: 20 s); errors are said in words; a start that fails
  as DJI's first starts often do is tried again with back-off.

Everything from the broker is read by relay/dji/wire.py (bounded, strict); a message that is
not taken is counted and logged once per reason a minute, and nothing else stops. Broker down:
the video goes on, the relay says so once and dials again with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..aio import stop_if_cancelled, within
from ..config import Config
from ..geo import distance_m, ground_point
from ..registry import Registry
from ..telemetry import TelemetryError, clean_update
from ..wire import Refused
from . import control
from .aircraft import Aircraft, DjiError
from .lenses import Lenses
from .wire import Envelope, read_envelope, read_live_capacity, read_osd, read_reply, read_topo

__all__ = ["DjiPlatform"]

log = logging.getLogger("relay.dji")
SOURCE = "dji"
TICK_S = 0.1
MAX_CLOCK_SKEW_S = 30.0
LENS_CODES = {"normal": 0.0, "wide": 0.0, "zoom": 1.0, "ir": 2.0}
QUEUE = 256  # messages waiting to be read: a flood past this is dropped by the client
MAX_PACKET = 72 * 1024  # told to the broker (MQTT 5): it sends us nothing larger

class DjiPlatform:
    def __init__(self, config: Config, registry: Registry,
                 publish_url: Callable[[str], tuple[int, str]]) -> None:
        self.config = config
        self.dji = config.dji
        self.registry = registry
        self.publish_url = publish_url  # stream -> (url_type, url) the aircraft pushes to
        self.lenses = Lenses(self.dji.fov)
        self.aircraft: dict[str, Aircraft] = {}
        self.client: Any = None
        self.connected = False
        self.since = 0.0
        self.refused: dict[str, int] = {}
        self._said: dict[str, float] = {}
        self._pending: dict[str, asyncio.Future[tuple[int, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    # ---- the connection -------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dji-mqtt")
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="dji-estimates")

    async def stop(self) -> None:
        for t in (self._task, self._ticker):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    def _client(self) -> Any:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        u = urlsplit(self.dji.broker)
        tls = None
        if u.scheme == "mqtts":
            tls = ssl.create_default_context(cafile=self.dji.ca)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.MaximumPacketSize = MAX_PACKET
        return aiomqtt.Client(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
                              username=self.dji.username, password=self.dji.password,
                              identifier=f"relay-{self.config.name}-{uuid.uuid4().hex[:6]}",
                              protocol=aiomqtt.ProtocolVersion.V5, properties=props, tls_context=tls,
                              keepalive=20, timeout=10, max_queued_incoming_messages=QUEUE,
                              logger=logging.getLogger("relay.dji.mqtt"))

    async def _run(self) -> None:
        """Connect, subscribe, read; on any loss say so once and dial again (1 s .. 30 s)."""
        import aiomqtt

        backoff = 1.0
        while True:
            try:
                async with self._client() as client:
                    self.client = client
                    for topic in ("sys/product/+/status", "thing/product/+/osd", "thing/product/+/state",
                                  "thing/product/+/services_reply", "thing/product/+/events",
                                  "thing/product/+/requests", "thing/product/+/drc/up"):
                        await client.subscribe(topic, qos=1)
                    self.connected, self.since = True, time.time()
                    log.info("DJI broker connected", extra={"broker": self.dji.broker})
                    backoff = 1.0
                    async for message in client.messages:
                        self.handle(str(message.topic), bytes(message.payload or b""))
            except aiomqtt.MqttError as e:
                stop_if_cancelled()
                if self.connected or not self._said.get("down"):
                    log.warning("DJI broker unreachable: video goes on, dialling again",
                                extra={"broker": self.dji.broker, "error": str(e)[:200]})
                    self._said["down"] = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the platform silently
                log.exception("DJI platform error; reconnecting")
            finally:
                self.connected, self.client = False, None
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(DjiError(503, "the DJI broker connection was lost"))
                self._pending.clear()
            await asyncio.sleep(backoff)
            backoff = min(30.0, backoff * 2)

    def _refuse(self, reason: str, detail: str = "") -> None:
        """One log line per reason a minute; counted by reason. ``reason`` comes from a fixed
        set (a value from outside goes in ``detail``, logged, never a key: a hostile sender
        varying it would otherwise grow the counters without bound)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._said.get(reason, -1e9) > 60:
            self._said[reason] = now
            log.info("DJI message ignored", extra={"reason": reason, "detail": detail[:200],
                                                   "count": self.refused[reason]})

    # ---- messages -----------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> None:
        try:
            env = read_envelope(topic, payload)
        except Refused as e:
            self._refuse(str(e))
            return
        kind = env.topic.kind
        try:
            if kind == "status" and env.method == "update_topo":
                self._topo(env)
            elif kind == "osd":
                self._osd(env)
            elif kind == "state":
                self._state(env)
            elif kind == "services_reply":
                self._reply(env)
            elif kind == "requests" and env.method == "config":
                self._dock_config(env)
            elif kind in ("events", "requests") and env.need_reply:
                self._answer(env, f"thing/product/{env.topic.sn}/{kind}_reply", {"result": 0})
        except Refused as e:
            self._refuse(f"{kind}: {e}")

    def _answer(self, env: Envelope, topic: str, data: dict[str, Any]) -> None:
        doc = {"tid": env.tid, "bid": env.bid, "timestamp": int(time.time() * 1000), "method": env.method,
               "data": data}
        self._publish(topic, doc)

    def _publish(self, topic: str, doc: dict[str, Any]) -> None:
        client = self.client
        if client is None:
            raise DjiError(503, "not connected to the DJI broker")
        task = asyncio.get_running_loop().create_task(client.publish(topic, json.dumps(doc).encode(), qos=1))
        task.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._refuse("publish failed", str(task.exception()))

    def _dock_config(self, env: Envelope) -> None:
        """A Dock asks for the platform's license when it connects (its ``requests`` ``config``);
        the answer's fields go straight in ``data`` (DJI's exception to its reply form). Without
        the license configured the Dock is told nothing and drops the connection: said once."""
        d = self.dji
        if not (d.app_id and d.app_key and d.app_license):
            self._refuse("a Dock asked for the license: [dji] app_id_env, app_key_env, app_license_env unset")
            return
        self._answer(env, f"thing/product/{env.topic.sn}/requests_reply",
                     {"app_id": d.app_id, "app_key": d.app_key, "app_license": d.app_license,
                      "ntp_server_host": d.ntp_host, "ntp_server_port": 123})

    def _topo(self, env: Envelope) -> None:
        gateway = env.topic.sn
        subs = read_topo(env.data)
        self._answer(env, f"sys/product/{gateway}/status_reply", {"result": 0})
        online = {s["sn"] for s in subs}
        for a in self.aircraft.values():
            if a.gateway == gateway and a.sn not in online and a.online:
                a.online = False
                log.info("DJI aircraft offline", extra={"serial": a.sn, "stream": a.stream})
        for s in subs:
            known = self.aircraft.get(s["sn"])
            if known is None:
                stream = self._stream_for(s["sn"])
                if stream is None:
                    self._refuse("an aircraft with no stream for it ([dji] aircraft or streams)")
                    continue
                known = self.aircraft[s["sn"]] = Aircraft(s["sn"], gateway, s["model"], stream=stream)
                self.registry.get_or_create(stream).telemetry.stale_after_s = self.dji.stale_after_s
            known.gateway, known.model, known.online = gateway, s["model"], True
            log.info("DJI aircraft online", extra={"serial": known.sn, "model": known.model,
                                                   "gateway": gateway, "stream": known.stream})

    def _stream_for(self, sn: str) -> str | None:
        fixed = dict(self.dji.aircraft)
        if sn in fixed:
            return fixed[sn]
        taken = {a.stream for a in self.aircraft.values()} | set(fixed.values())
        return next((s for s in self.dji.streams if s not in taken), None)

    def _osd(self, env: Envelope) -> None:
        a = self.aircraft.get(env.topic.sn)
        if a is None:
            self._refuse("OSD of an aircraft no update_topo announced")
            return
        osd = read_osd(env.data)
        for key in osd.bad:
            self._refuse(f"osd field {key} out of range or of the wrong type")
        arrival = time.time()
        t = arrival
        if env.timestamp_ms is not None and abs(env.timestamp_ms / 1000 - arrival) < MAX_CLOCK_SKEW_S:
            t = env.timestamp_ms / 1000
        a.last_osd, a.online = time.monotonic(), True
        a.osd_count += 1
        if osd.payload:
            a.payload = osd.payload
        a.zoom = osd.zoom if osd.zoom is not None else a.zoom
        a.ir_zoom = osd.ir_zoom if osd.ir_zoom is not None else a.ir_zoom
        a.thermal = osd.thermal or a.thermal
        a.target = osd.target
        a.mode = osd.mode if osd.mode is not None else a.mode
        fields = dict(osd.fields)
        fov = self.lenses.fov(a.payload, a.lens, a.zoom, a.ir_zoom) if a.payload else None
        if fov is not None:
            fields["hfov"], fields["vfov"] = fov
        if a.fov_known is not (fov is not None) and a.payload:
            a.fov_known = fov is not None
            if fov is None:
                log.warning("DJI camera's field of view unknown: no footprint is drawn (add it to [dji.fov])",
                            extra={"serial": a.sn, "camera": a.payload, "lens": a.lens})
        if a.target:
            fields["target_lat"], fields["target_lon"] = a.target["lat"], a.target["lon"]
        fields["est_s"] = 0.0  # measured (an estimate before it said how old it was)
        # The lens and the thermal range travel with the telemetry: in every page and the record.
        fields["lens"] = LENS_CODES.get(a.lens, 0.0)
        for key, out in (("palette", "palette"), ("min_c", "scene_min_c"), ("max_c", "scene_max_c")):
            if key in a.thermal:
                fields[out] = a.thermal[key]
        try:
            clean = clean_update(fields)
        except TelemetryError as e:
            self._refuse("osd: a value the telemetry does not take", str(e))
            return
        a.reckon.measured(t, clean)
        entry = self.registry.get(a.stream) if a.stream else None
        if entry is not None:
            entry.telemetry.update(SOURCE, clean, t=t)
            self._check_target(a, clean)

    def _check_target(self, a: Aircraft, f: dict[str, float]) -> None:
        """The laser's point against where the picture's centre meets the ground (the same
        geometry as the footprint's; nothing to compare without a field of view): logged."""
        centre = ground_point(f, 0.0, 0.0) if a.target else None
        if centre is None:
            return
        gap = distance_m(centre[0], centre[1], a.target["lat"], a.target["lon"])
        if a.target_gap_m is None or abs(gap - a.target_gap_m) > 10:
            log.info("DJI laser point against the footprint's centre",
                     extra={"serial": a.sn, "gap_m": round(gap, 1)})
        a.target_gap_m = round(gap, 1)

    def _state(self, env: Envelope) -> None:
        cap = read_live_capacity(env.data)
        if cap:
            for a in self.aircraft.values():
                if a.gateway == env.topic.sn or a.sn == env.topic.sn:
                    a.capacity = {k: v for k, v in cap.items() if k.startswith(a.sn + "/")} or a.capacity

    def _reply(self, env: Envelope) -> None:
        fut = self._pending.pop(env.tid, None)
        if fut is None or fut.done():
            self._refuse("a reply nobody waits for")
            return
        fut.set_result(read_reply(env.data))

    # ---- estimates between OSD messages ------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick(time.time())
            except Exception:
                log.exception("DJI estimates failed this tick")

    def tick(self, now: float) -> None:
        for a in self.aircraft.values():
            if not a.stream or not a.last_osd:
                continue
            est = a.reckon.at(now)
            if est is None or not est.get("est_s"):  # (past the horizon: the report stands, as sent)
                continue
            entry = self.registry.get(a.stream)
            if entry is None:
                continue
            try:
                clean = clean_update(est)
            except TelemetryError:
                continue
            # (its arrival is the measurement's: the sample's age and staleness stay honest)
            entry.telemetry.update(SOURCE, clean, t=now, arrival=a.last_osd)

    # ---- live control -----------------------------------------------------------------
    def of_stream(self, stream: str) -> Aircraft | None:
        return next((a for a in self.aircraft.values() if a.stream == stream), None)

    def video_id(self, a: Aircraft) -> str:
        known = [k for k in a.capacity if k.split("/")[1] == a.payload] or list(a.capacity)
        return known[0] if known else f"{a.sn}/{a.payload or '0-0-0'}/normal-0"

    async def service(self, a: Aircraft, method: str, data: dict[str, Any]) -> tuple[int, Any]:
        """Send ``method`` to the aircraft's gateway and wait for its reply."""
        if self.client is None:
            raise DjiError(503, "not connected to the DJI broker")
        tid = str(uuid.uuid4())
        fut: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tid] = fut
        self._publish(f"thing/product/{a.gateway}/services",
                      {"tid": tid, "bid": str(uuid.uuid4()), "timestamp": int(time.time() * 1000),
                       "method": method, "data": data})
        try:
            return await within(self.dji.reply_timeout_s, fut)
        except TimeoutError:
            raise DjiError(504, f"{method}: no reply from the aircraft within "
                                f"{self.dji.reply_timeout_s:g} s") from None
        finally:
            self._pending.pop(tid, None)

    async def live(self, stream: str, action: str, lens: str | None = None,
                   quality: int | None = None) -> dict[str, Any]:
        return await control.live(self, stream, action, lens, quality)

    def status(self) -> dict[str, Any]:
        return {"broker": self.dji.broker, "connected": self.connected, "since": self.since,
                "ignored": sum(self.refused.values()), "aircraft": [a.doc() for a in self.aircraft.values()]}
