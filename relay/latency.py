"""Latency bookkeeping: bounded sample windows, stage breakdowns, clock-offset estimation."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["ClockOffsetEstimator", "LatencyBook", "Window", "percentile"]

STAGES = ("decoded", "processed", "encoded", "sent")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


class Window:
    """The last ``size`` samples within ``horizon_s`` seconds: bounded memory, exact percentiles."""

    def __init__(self, size: int = 2048, horizon_s: float = 30.0) -> None:
        self.size = size
        self.horizon_s = horizon_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)
        self.count = 0
        self.total = 0.0

    def add(self, value: float, at: float | None = None) -> None:
        self._samples.append((time.monotonic() if at is None else at, value))
        self.count += 1
        self.total += value

    def values(self) -> list[float]:
        cutoff = time.monotonic() - self.horizon_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return [v for _, v in self._samples]

    def summary(self) -> dict[str, float | int | None]:
        vals = sorted(self.values())
        if not vals:
            return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
        return {
            "n": len(vals),
            "p50": round(percentile(vals, 50), 2),
            "p95": round(percentile(vals, 95), 2),
            "p99": round(percentile(vals, 99), 2),
            "max": round(vals[-1], 2),
        }


class LatencyBook:
    """Relay-added latency per rendition (arrival → first packet sent) and per-stage shares."""

    def __init__(self) -> None:
        self.total: dict[str, Window] = {}
        self.stages: dict[str, dict[str, Window]] = {}

    def record(self, rendition: str, timeline: dict[str, float]) -> None:
        """Record a frame's timeline once it is sent (times in seconds, monotonic)."""
        start = timeline.get("arrival")
        sent = timeline.get("sent")
        if start is None or sent is None or "replayed" in timeline or "slate" in timeline:
            return
        self.total.setdefault(rendition, Window()).add((sent - start) * 1000.0)
        stages = self.stages.setdefault(rendition, {})
        prev = start
        for stage in STAGES:
            t = timeline.get(stage)  # "replayed" is a marker, never a stage
            if t is None:
                continue
            stages.setdefault(stage, Window()).add((t - prev) * 1000.0)
            prev = t

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rendition, window in self.total.items():
            stage_sums = {
                stage: (sum(w.values()) / max(1, len(w.values())))
                for stage, w in self.stages.get(rendition, {}).items()
            }
            mean_total = sum(stage_sums.values()) or 1.0
            out[rendition] = {
                "relay_ms": window.summary(),
                "stages_ms": {s: w.summary() for s, w in self.stages.get(rendition, {}).items()},
                "stage_share": {s: round(v / mean_total, 3) for s, v in stage_sums.items()},
            }
        return out


@dataclass(frozen=True)
class OffsetSample:
    offset: float
    rtt: float
    at: float


class ClockOffsetEstimator:
    """NTP-style offset between a local and a remote clock, keeping the minimum-RTT sample.

    For one exchange: t0 local send, t1 remote receive, t2 remote send, t3 local receive.
    offset = remote - local = ((t1 - t0) + (t2 - t3)) / 2; rtt = (t3 - t0) - (t2 - t1).
    The sample with the smallest RTT among the last ``window`` bounds the error best.
    """

    def __init__(self, window: int = 16) -> None:
        self._samples: deque[OffsetSample] = deque(maxlen=window)

    def add(self, t0: float, t1: float, t2: float, t3: float) -> OffsetSample:
        rtt = (t3 - t0) - (t2 - t1)
        sample = OffsetSample(offset=((t1 - t0) + (t2 - t3)) / 2, rtt=max(0.0, rtt), at=t3)
        self._samples.append(sample)
        return sample

    @property
    def best(self) -> OffsetSample | None:
        if not self._samples:
            return None
        return min(self._samples, key=lambda s: s.rtt)

    @property
    def offset(self) -> float | None:
        b = self.best
        return None if b is None else b.offset
