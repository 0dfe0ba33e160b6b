"""Ground geometry for one camera over flat ground (pure): the ground point under a point of
the picture, and where a ground point lies in the picture.

The same model as the page's ``viewer/geo.js`` (which draws with it): a telemetry sample
gives the camera's position and height above ground (``lat``, ``lon``, ``rel_alt``), where
it looks (``center_lat``/``center_lon`` where the autopilot computed the image centre on the
ground, else ``gimbal_yaw``/``hdg`` and ``gimbal_pitch``) and its field of view (``hfov``,
``vfov``). Picture coordinates: ``u`` from -1 (left) to 1 (right), ``v`` from -1 (bottom)
to 1 (top). The relay uses it to turn a click on a frame into a marker's ground point at
that frame's capture time; the tests use it to check where the page draws a marker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["MAX_RANGE_M", "M_PER_DEG", "distance_m", "ground_point", "picture_point"]

M_PER_DEG = 111_320.0
MAX_RANGE_M = 2000.0  # a ray that meets the ground further away is cut here

Vec = tuple[float, float, float]


def _local(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    return ((lon - lon0) * M_PER_DEG * math.cos(math.radians(lat0)), (lat - lat0) * M_PER_DEG)


def distance_m(lat0: float, lon0: float, lat: float, lon: float) -> float:
    e, n = _local(lat0, lon0, lat, lon)
    return math.hypot(e, n)


def _aim(s: Mapping[str, float]) -> tuple[float, float, float] | None:
    """(yaw, pitch, height): where the camera looks, in degrees, and its height (m)."""
    if "lat" not in s or "lon" not in s:
        return None
    h = s.get("rel_alt", 0.0)
    if not h > 0:
        return None
    if "center_lat" in s and "center_lon" in s:
        e, n = _local(s["lat"], s["lon"], s["center_lat"], s["center_lon"])
        d = math.hypot(e, n)
        if d < 0.5:
            return s.get("gimbal_yaw", s.get("hdg", 0.0)), -90.0, h
        return (math.degrees(math.atan2(e, n)) + 360.0) % 360.0, -math.degrees(math.atan2(h, d)), h
    yaw = s.get("gimbal_yaw", s.get("hdg"))
    if yaw is None or "gimbal_pitch" not in s:
        return None
    return yaw, s["gimbal_pitch"], h


def _axes(s: Mapping[str, float]) -> tuple[Vec, Vec, Vec, float, float, float] | None:
    """Forward, right and up unit vectors (east, north, up), the field of view's half
    tangents, and the height; None when the sample cannot place the picture."""
    a = _aim(s)
    if a is None or not s.get("hfov", 0) > 0 or not s.get("vfov", 0) > 0:
        return None
    y, p, h = math.radians(a[0]), math.radians(a[1]), a[2]
    f = (math.sin(y) * math.cos(p), math.cos(y) * math.cos(p), math.sin(p))
    r = (math.cos(y), -math.sin(y), 0.0)
    up = (-math.sin(y) * math.sin(p), -math.cos(y) * math.sin(p), math.cos(p))
    return f, r, up, math.tan(math.radians(s["hfov"] / 2)), math.tan(math.radians(s["vfov"] / 2)), h


def ground_point(s: Mapping[str, float], u: float, v: float,
                 max_range: float = MAX_RANGE_M) -> tuple[float, float] | None:
    """(lat, lon) seen at (u, v), or None (nothing known, or above the horizon)."""
    ax = _axes(s)
    if ax is None:
        return None
    f, r, up, tu, tv, h = ax
    d = [f[i] + tu * u * r[i] + tv * v * up[i] for i in range(3)]
    horiz = math.hypot(d[0], d[1])
    if d[2] >= -1e-6:
        return None  # at or above the horizon: no ground point to mark
    k = h / -d[2]
    if k * horiz > max_range:
        return None
    lat0, lon0 = s["lat"], s["lon"]
    return (lat0 + k * d[1] / M_PER_DEG,
            lon0 + k * d[0] / (M_PER_DEG * math.cos(math.radians(lat0))))


def picture_point(s: Mapping[str, float], lat: float, lon: float) -> tuple[float, float] | None:
    """(u, v) where the ground point (lat, lon) appears — outside -1..1 when it is off the
    picture — or None (nothing known, or the point is behind the camera)."""
    ax = _axes(s)
    if ax is None:
        return None
    f, r, up, tu, tv, h = ax
    e, n = _local(s["lat"], s["lon"], lat, lon)
    d = (e, n, -h)
    z = sum(d[i] * f[i] for i in range(3))
    if z <= 1e-6:
        return None
    x = sum(d[i] * r[i] for i in range(3))
    y = sum(d[i] * up[i] for i in range(3))
    return x / z / tu, y / z / tv
