"""The DJI Cloud API's MQTT messages, read by one strict reader per kind.

Every message from the broker is bounded before it is parsed (``MAX_MESSAGE``), must be a JSON
object with the envelope DJI documents (``tid``, ``bid``, ``timestamp``, ``data``), and comes on
a topic of the shape DJI uses (``thing/product/{sn}/osd`` …; a serial is letters and digits).
What a reader cannot take is :class:`~relay.wire.Refused` with one line saying why; a field
out of its range is left out of the result (and counted by the caller), never clamped.

Meanings follow DJI's documentation (docs: ../shared/DJI-CLOUD-API.md): ``attitude_head`` and
``gimbal_yaw`` are degrees from true north (−180..180), ``gimbal_pitch`` is earth-referenced,
``elevation`` is the height above the take-off point (``height`` is ellipsoid height, not
above mean sea level, so it is not given as ``alt``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..wire import Refused, finite, json_doc, safe_text

__all__ = ["MAX_MESSAGE", "Envelope", "Osd", "Topic", "read_envelope", "read_live_capacity", "read_osd",
           "read_reply", "read_topic", "read_topo"]

MAX_MESSAGE = 64 * 1024  # an OSD message is ~3 KB; a Dock's biggest a few times that
SN = r"[A-Za-z0-9]{4,40}"
_TOPIC = re.compile(rf"^(thing|sys)/product/({SN})/(osd|state|services_reply|events|requests|status|drc/up)$")
_PAYLOAD_KEY = re.compile(r"^(\d{1,4})-(\d{1,4})-(\d{1,2})$")
_UUIDISH = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True)
class Topic:
    kind: str   # osd | state | services_reply | events | requests | status | drc/up
    sn: str     # the device (osd, state) or gateway (the others) serial


@dataclass(frozen=True)
class Envelope:
    topic: Topic
    tid: str
    bid: str
    timestamp_ms: float | None
    method: str
    gateway: str
    data: dict[str, Any]
    need_reply: bool = False


def read_topic(topic: str) -> Topic:
    m = _TOPIC.match(topic)
    if not m:
        raise Refused("not a DJI Cloud API topic")
    return Topic(m.group(3), m.group(2))


def _ident(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not _UUIDISH.match(value):
        raise Refused(f"{what}: not an id")
    return value


def read_envelope(topic: str, payload: bytes) -> Envelope:
    """A message as DJI frames it: bounded, JSON, an object with an object ``data``."""
    t = read_topic(topic)
    if len(payload) > MAX_MESSAGE:
        raise Refused(f"message over {MAX_MESSAGE} bytes")
    doc = json_doc(payload, "DJI message")  # (its own Refused: not JSON, nested too deep)
    if not isinstance(doc, dict):
        raise Refused("not a JSON object")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise Refused("data: not an object")
    ts = doc.get("timestamp")
    stamp = None if ts is None else finite(ts, 0, 1e14, "timestamp")
    method = doc.get("method")
    method = "" if method is None else safe_text(method, 64, "method")
    gateway = doc.get("gateway")
    gateway = "" if gateway is None else safe_text(gateway, 40, "gateway")
    if gateway and not re.fullmatch(SN, gateway):
        raise Refused("gateway: not a serial")
    return Envelope(t, _ident(doc.get("tid"), "tid"), _ident(doc.get("bid"), "bid"), stamp, method, gateway,
                    data, doc.get("need_reply") == 1)


def _num(data: dict[str, Any], key: str, lo: float, hi: float, bad: list[str]) -> float | None:
    """A field's value when it is a finite number in range; absent: None; else noted in ``bad``."""
    if key not in data or data[key] is None:
        return None
    try:
        return finite(data[key], lo, hi, key)
    except Refused:
        bad.append(key)
        return None


@dataclass
class Osd:
    """An aircraft's OSD as the relay's telemetry fields, and what its camera is."""

    fields: dict[str, float] = field(default_factory=dict)
    payload: str = ""         # "53-0-0": the camera the gimbal fields came from
    zoom: float | None = None
    ir_zoom: float | None = None
    thermal: dict[str, float] = field(default_factory=dict)  # palette, gain mode, scene min/max °C
    target: dict[str, float] = field(default_factory=dict)   # the laser rangefinder's point
    mode: int | None = None
    bad: list[str] = field(default_factory=list)             # fields left out (wrong type or range)


def _deg360(v: float) -> float:
    return v % 360.0


def read_osd(data: dict[str, Any]) -> Osd:
    """The aircraft OSD ``data`` (via a remote controller or a Dock)."""
    o = Osd()
    f, bad = o.fields, o.bad
    lat, lon = _num(data, "latitude", -90, 90, bad), _num(data, "longitude", -180, 180, bad)
    if lat is not None and lon is not None and not (lat == 0 and lon == 0):  # 0, 0: no fix yet
        f["lat"], f["lon"] = lat, lon
    for key, out, lo, hi in (("elevation", "rel_alt", -500, 10000), ("attitude_pitch", "pitch", -90, 90),
                             ("attitude_roll", "roll", -180, 180), ("horizontal_speed", "speed", 0, 200)):
        v = _num(data, key, lo, hi, bad)
        if v is not None:
            f[out] = v
    head = _num(data, "attitude_head", -180, 360, bad)
    if head is not None:
        f["hdg"] = _deg360(head)
    battery = data.get("battery")
    if isinstance(battery, dict):
        v = _num(battery, "capacity_percent", 0, 100, bad)
        if v is not None:
            f["battery"] = v
    mode = _num(data, "mode_code", 0, 99, bad)
    o.mode = None if mode is None else int(mode)
    # The gimbal: a block per camera keyed by its payload index ("53-0-0"); the main one (gimbal
    # index 0, else the lowest) is the picture's.
    blocks = sorted((k, v) for k, v in data.items() if _PAYLOAD_KEY.match(k) and isinstance(v, dict))
    if blocks:
        key, g = next(((k, v) for k, v in blocks if k.endswith("-0")), blocks[0])
        o.payload = key
        pitch = _num(g, "gimbal_pitch", -180, 180, bad)
        yaw = _num(g, "gimbal_yaw", -180, 360, bad)
        if pitch is not None:
            f["gimbal_pitch"] = pitch
        if yaw is not None:
            f["gimbal_yaw"] = _deg360(yaw)
        o.zoom = _num(g, "zoom_factor", 1, 400, bad)
        for key2, out in (("thermal_current_palette_style", "palette"), ("thermal_gain_mode", "gain_mode"),
                          ("thermal_global_temperature_min", "min_c"),
                          ("thermal_global_temperature_max", "max_c")):
            v = _num(g, key2, -100, 2000, bad)
            if v is not None:
                o.thermal[out] = v
        if _num(g, "measure_target_error_state", 0, 9, bad) == 0:
            tlat = _num(g, "measure_target_latitude", -90, 90, bad)
            tlon = _num(g, "measure_target_longitude", -180, 180, bad)
            dist = _num(g, "measure_target_distance", 0, 20000, bad)
            if tlat is not None and tlon is not None and dist is not None and dist > 0:
                o.target = {"lat": tlat, "lon": tlon, "dist": dist}
    cams = data.get("cameras")
    if isinstance(cams, list) and cams and isinstance(cams[0], dict):
        o.ir_zoom = _num(cams[0], "ir_zoom_factor", 1, 100, bad)
        if o.zoom is None:
            o.zoom = _num(cams[0], "zoom_factor", 1, 400, bad)
    return o


def read_topo(data: dict[str, Any]) -> list[dict[str, str]]:
    """``update_topo``: the aircraft now under the gateway (empty: none online)."""
    subs = data.get("sub_devices")
    if subs is None:
        return []
    if not isinstance(subs, list) or len(subs) > 16:
        raise Refused("sub_devices: not a list of at most 16")
    out = []
    for s in subs:
        if not isinstance(s, dict):
            raise Refused("sub_devices: not objects")
        sn = safe_text(s.get("sn"), 40, "sub_devices.sn")
        if not re.fullmatch(SN, sn):
            raise Refused("sub_devices.sn: not a serial")
        kind = "-".join(str(int(finite(s.get(k), 0, 9999, f"sub_devices.{k}")))
                        for k in ("domain", "type", "sub_type"))
        out.append({"sn": sn, "model": kind})
    return out


def read_live_capacity(data: dict[str, Any]) -> dict[str, list[str]]:
    """``live_capacity`` from a gateway's state: video id -> the lenses it may switch to."""
    cap = data.get("live_capacity")
    if not isinstance(cap, dict):
        return {}
    out: dict[str, list[str]] = {}
    for dev in (cap.get("device_list") or [])[:8]:
        if not isinstance(dev, dict):
            continue
        sn = dev.get("sn")
        for cam in (dev.get("camera_list") or [])[:8]:
            if not isinstance(cam, dict) or not isinstance(sn, str) or not re.fullmatch(SN, sn):
                continue
            idx = cam.get("camera_index")
            if not isinstance(idx, str) or not _PAYLOAD_KEY.match(idx):
                continue
            for video in (cam.get("video_list") or [])[:4]:
                if not isinstance(video, dict) or not isinstance(video.get("video_index"), str):
                    continue
                vi = video["video_index"]
                if not re.fullmatch(r"[a-z]{1,16}-\d{1,2}", vi):
                    continue
                types = [t for t in (video.get("switchable_video_types") or [])
                         if t in ("normal", "wide", "zoom", "ir", "thermal")]
                out[f"{sn}/{idx}/{vi}"] = types
    return out


def read_reply(data: dict[str, Any]) -> tuple[int, Any]:
    """A ``services_reply``'s result (0 = done) and output."""
    result = int(finite(data.get("result"), -1, 1e9, "result"))
    out = data.get("output")
    return result, out if isinstance(out, str | int | float | dict | list) or out is None else None
