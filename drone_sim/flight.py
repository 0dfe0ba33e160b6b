"""A plausible flight over an incident: an orbit around it, or a lawn-mower survey of it.

``Flight.at(t)`` gives the whole state at wall-clock time ``t`` (the same clock that stamps
the frames), so the telemetry the simulator sends and the picture it pushes belong together:
position, altitude, heading, ground speed, attitude, gimbal, field of view, where the image
centre meets the ground, and a battery that drains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Flight", "ground_point", "parse_location"]

EARTH_M_PER_DEG = 111_320.0


def parse_location(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"location must look like 52.5200,13.4050, got {text!r}") from None
    if not (-85 <= lat <= 85 and -180 <= lon <= 180):
        raise ValueError(f"location out of range: {text!r}")
    return lat, lon


def _offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    return (lat + north_m / EARTH_M_PER_DEG,
            lon + east_m / (EARTH_M_PER_DEG * math.cos(math.radians(lat))))


def ground_point(lat: float, lon: float, height_m: float, yaw_deg: float,
                 pitch_deg: float) -> tuple[float, float] | None:
    """Where a ray from (lat, lon, height) with heading ``yaw`` and elevation ``pitch``
    (negative: below the horizon) meets flat ground; None above the horizon."""
    if pitch_deg >= -0.5 or height_m <= 0:
        return None
    dist = height_m / math.tan(math.radians(-pitch_deg))
    y = math.radians(yaw_deg)
    return _offset(lat, lon, dist * math.sin(y), dist * math.cos(y))


@dataclass
class Flight:
    lat: float = 52.5200      # the incident point
    lon: float = 13.4050
    home_alt: float = 34.0    # ground altitude above mean sea level, m
    altitude: float = 80.0    # above ground, m
    pattern: str = "orbit"    # orbit | lawnmower
    radius: float = 120.0     # orbit radius, or half the side of the surveyed square, m
    speed: float = 8.0        # m/s
    hfov: float = 69.0        # degrees (a typical drone camera, 16:9)
    vfov: float = 42.0
    battery_minutes: float = 28.0
    start: float = 0.0        # wall-clock time the flight began

    def at(self, t: float) -> dict[str, float]:
        el = max(0.0, t - self.start)
        if self.pattern == "lawnmower":
            east, north, hdg = self._lawnmower(el)
            gimbal_pitch, gimbal_yaw = -90.0, hdg
        else:
            omega = self.speed / self.radius  # rad/s, counter-clockwise seen from above
            a = omega * el
            east, north = self.radius * math.cos(a), self.radius * math.sin(a)
            hdg = (math.degrees(math.atan2(-math.sin(a), math.cos(a))) + 360.0) % 360.0
            # The camera looks at the incident point.
            gimbal_yaw = (math.degrees(math.atan2(-east, -north)) + 360.0) % 360.0
            gimbal_pitch = -math.degrees(math.atan2(self.altitude, self.radius))
        lat, lon = _offset(self.lat, self.lon, east, north)
        battery = max(0.0, 100.0 - 100.0 * el / (self.battery_minutes * 60.0))
        out = {
            "lat": round(lat, 7), "lon": round(lon, 7),
            "alt": round(self.home_alt + self.altitude, 2), "rel_alt": round(self.altitude, 2),
            "hdg": round(hdg, 2), "speed": self.speed, "roll": 4.0 if self.pattern == "orbit" else 0.0,
            "pitch": -3.0, "gimbal_pitch": round(gimbal_pitch, 2), "gimbal_yaw": round(gimbal_yaw, 2),
            "hfov": self.hfov, "vfov": self.vfov, "battery": round(battery, 1),
            "voltage": round(13.2 + 3.6 * battery / 100.0, 2),
        }
        centre = ground_point(lat, lon, self.altitude, gimbal_yaw, gimbal_pitch)
        if centre is not None:
            out["center_lat"], out["center_lon"] = round(centre[0], 7), round(centre[1], 7)
        return out

    def _lawnmower(self, el: float) -> tuple[float, float, float]:
        """Legs east and west across the square, stepping north, then back south."""
        side = 2 * self.radius
        spacing = max(20.0, self.altitude * 2 * math.tan(math.radians(self.vfov / 2)) * 0.8)
        legs = max(2, int(side / spacing) + 1)
        leg_t = side / self.speed
        step_t = spacing / self.speed
        cycle = legs * leg_t + (legs - 1) * step_t
        el %= 2 * cycle
        back = el >= cycle
        el = el - cycle if back else el
        i = min(legs - 1, int(el // (leg_t + step_t)))
        r = el - i * (leg_t + step_t)
        row = i if not back else legs - 1 - i
        north = -self.radius + row * spacing
        eastward = (i % 2 == 0) != back
        if r < leg_t:
            x = r * self.speed
            east = -self.radius + x if eastward else self.radius - x
            return east, north, 90.0 if eastward else 270.0
        east = self.radius if eastward else -self.radius
        d = (r - leg_t) * self.speed
        return east, north + (d if not back else -d), 0.0 if not back else 180.0
