"""Where the drone is and where its camera looks: one merged state per stream.

Sources (MAVLink over UDP, MISB ST 0601 KLV in the video, the HTTP/JSON endpoint) each
deliver *partial* updates — a position here, an attitude there — stamped with the time the
drone measured them (``t``, wall clock seconds). :class:`Telemetry` merges them into one
state and keeps:

- ``recent``: samples of the merged state, at most ``MAX_RATE_HZ`` a second, each encoded
  to JSON once (every viewer is sent the same bytes) and numbered, so a viewer asks for
  "everything after n";
- ``track``: the path of the last ``track_s`` seconds, one point a second (the map);
- ``malformed``/``accepted`` counters per source.

A source that goes quiet is *stale* after ``stale_after_s``: its last position is never
shown as "current". Pure data: no network, no clocks other than the ones passed in.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["FIELDS", "Telemetry", "TelemetryError", "clean_update"]

MAX_RATE_HZ = 10.0
RECENT = 300  # samples kept for viewers that catch up (30 s at 10 Hz)

# Every field a sample may carry: (low, high) — a value outside is refused, never clamped.
FIELDS: dict[str, tuple[float, float]] = {
    "lat": (-90.0, 90.0),            # degrees (WGS 84)
    "lon": (-180.0, 180.0),
    "alt": (-500.0, 20000.0),        # metres above mean sea level
    "rel_alt": (-500.0, 10000.0),    # metres above the take-off point (≈ ground)
    "hdg": (0.0, 360.0),             # vehicle heading, degrees from north
    "speed": (0.0, 200.0),           # ground speed, m/s
    "roll": (-180.0, 180.0),         # vehicle attitude, degrees
    "pitch": (-90.0, 90.0),
    "gimbal_pitch": (-180.0, 180.0), # camera elevation, degrees (-90: straight down)
    "gimbal_yaw": (0.0, 360.0),      # camera heading, degrees from north
    "hfov": (0.1, 180.0),            # camera field of view, degrees
    "vfov": (0.1, 180.0),
    "center_lat": (-90.0, 90.0),     # where the image centre meets the ground
    "center_lon": (-180.0, 180.0),
    "battery": (0.0, 100.0),         # percent remaining
    "voltage": (0.0, 100.0),         # volts
    "target_lat": (-90.0, 90.0),     # a laser rangefinder's point on the ground (DJI)
    "target_lon": (-180.0, 180.0),
    "est_s": (0.0, 60.0),            # an estimate: carried forward this long past its measurement
    "lens": (0.0, 3.0),              # the lens on the live picture (DJI): 0 wide, 1 zoom, 2 IR
    "palette": (0.0, 20.0),          # a thermal lens's palette (DJI's code: 0 white-hot, 1 black-hot, …)
    "scene_min_c": (-100.0, 2000.0), # the thermal scene's coldest and hottest point, °C (DJI)
    "scene_max_c": (-100.0, 2000.0),
}
_ROUND = {"lat": 7, "lon": 7, "center_lat": 7, "center_lon": 7, "target_lat": 7, "target_lon": 7}


class TelemetryError(ValueError):
    """A telemetry update that cannot be taken (one line, for the sender)."""


def clean_update(raw: Mapping[str, Any]) -> dict[str, float]:
    """Known fields only, each a finite number in range; raises on anything else."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in FIELDS:
            raise TelemetryError(f"unknown telemetry field {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise TelemetryError(f"{key} must be a number")
        lo, hi = FIELDS[key]
        if not lo <= value <= hi:
            raise TelemetryError(f"{key} = {value} is outside {lo:g}..{hi:g}")
        out[key] = round(float(value), _ROUND.get(key, 2))
    return out


class Telemetry:
    def __init__(self, stream: str, stale_after_s: float = 3.0, track_s: float = 600.0) -> None:
        self.stream = stream
        self.stale_after_s = stale_after_s
        self.state: dict[str, float] = {}
        self.t = 0.0  # capture time (wall clock) of the newest update
        self.source = ""
        self.last_arrival = 0.0  # monotonic time of the newest update
        self.seq = 0
        self.recent: deque[tuple[int, float, str]] = deque(maxlen=RECENT)  # (seq, t, json)
        self.track: deque[tuple[float, float, float]] = deque(maxlen=max(2, int(track_s)))
        self.accepted: dict[str, int] = {}
        self.malformed: dict[str, int] = {}
        self._last_sample_t = -1e18
        self._pending = False

    def bad(self, source: str) -> None:
        """Count a message from ``source`` that was malformed and skipped."""
        self.malformed[source] = self.malformed.get(source, 0) + 1

    def update(self, source: str, fields: Mapping[str, float], t: float | None = None,
               arrival: float | None = None) -> None:
        """Merge a (cleaned) partial update measured at wall-clock ``t``."""
        if not fields:
            return
        t = time.time() if t is None else t
        self.accepted[source] = self.accepted.get(source, 0) + 1
        self.state.update(fields)
        self.source = source
        self.last_arrival = time.monotonic() if arrival is None else arrival
        self.t = max(self.t, t)
        if self.t - self._last_sample_t >= 1.0 / MAX_RATE_HZ - 1e-6:
            self._sample()
        else:
            self._pending = True  # merged; the next sample carries it

    def _sample(self) -> None:
        self._pending = False
        self._last_sample_t = self.t
        self.seq += 1
        doc: dict[str, Any] = {"t": round(self.t, 3), **self.state}
        self.recent.append((self.seq, self.t, json.dumps(doc, separators=(",", ":"))))
        lat, lon = self.state.get("lat"), self.state.get("lon")
        if lat is not None and lon is not None and (not self.track or self.t - self.track[-1][0] >= 1.0):
            self.track.append((round(self.t, 3), lat, lon))

    def flush(self) -> None:
        """Emit a sample for updates merged since the last one (called a few times a second)."""
        if self._pending:
            self._sample()

    def age(self, now: float | None = None) -> float | None:
        if not self.last_arrival:
            return None
        return (time.monotonic() if now is None else now) - self.last_arrival

    def stale(self, now: float | None = None) -> bool:
        a = self.age(now)
        return a is None or a > self.stale_after_s

    def since(self, seq: int) -> list[str]:
        """The encoded samples numbered after ``seq`` (oldest first). Called for every viewer
        five times a second: the numbers are consecutive, so only the new tail is read."""
        if not self.recent or self.recent[-1][0] <= seq:
            return []
        tail = itertools.islice(reversed(self.recent), self.recent[-1][0] - seq)
        return [s for _, _, s in tail][::-1]

    def summary(self) -> dict[str, Any] | None:
        """For /api/streams and the wall: the newest state, its age, stale or not."""
        if not self.state:
            return None
        age = self.age()
        return {
            **self.state,
            "t": round(self.t, 3),
            "source": self.source,
            "age_s": None if age is None else round(age, 2),
            "stale": self.stale(),
            "malformed": sum(self.malformed.values()),
        }

    def track_points(self) -> list[list[float]]:
        return [[t, lat, lon] for t, lat, lon in self.track]
