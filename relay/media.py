"""The plain data unit that moves through the relay. Imports nothing of the network."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Unit", "now"]


def now() -> float:
    """The relay's clock for stage timestamps (monotonic seconds)."""
    return time.monotonic()


@dataclass(slots=True, eq=False)
class Unit:
    """One video frame, raw (``av.VideoFrame``) or encoded (``av.Packet``).

    ``timeline`` maps a stage name ("arrival", "decoded", "processed", "encoded", "sent")
    to the monotonic time the frame left that stage; ``arrival_wall_ms`` is the wall clock
    (ms since the epoch) at arrival, used by viewers for relay-arrival → presented latency
    when the feed carries no capture stamp.
    """

    payload: Any
    keyframe: bool
    timeline: dict[str, float] = field(default_factory=dict)
    arrival_wall_ms: int = 0
    capture_wall_ms: int | None = None  # the drone's capture time, where its picture carries a stamp

    @classmethod
    def arrived(cls, payload: Any, keyframe: bool = True) -> Unit:
        return cls(
            payload=payload,
            keyframe=keyframe,
            timeline={"arrival": now()},
            arrival_wall_ms=int(time.time() * 1000),
        )

    @classmethod
    def decoded(cls, frame: Any, arrived: float) -> Unit:
        """A frame that came out of a decoder now, whose last packet arrived at ``arrived``."""
        unit = cls.arrived(frame)
        unit.timeline["decoded"] = unit.timeline["arrival"]
        unit.timeline["arrival"] = arrived
        return unit

    @property
    def arrival(self) -> float:
        return self.timeline["arrival"]
