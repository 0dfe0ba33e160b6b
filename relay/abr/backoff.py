"""Which rungs may not be tried for a while, and for how long after each failure."""

from __future__ import annotations

from dataclasses import dataclass, field

from .tuning import Tuning

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Which rungs may not be tried for a while, and for how long after each failure."""

    hold: float  # the hold after the last failed step up (doubles, to max_hold_s)
    blocked: dict[str, float] = field(default_factory=dict)  # rung -> no probe before
    fails: dict[str, int] = field(default_factory=dict)  # rung -> failures in a row
    pad_fails: dict[str, int] = field(default_factory=dict)  # rung -> padding probes failed in a row
    fail_base: tuple[float, float | None] | None = None  # (loss, estimate) when the last probe failed

    def failed(self, rung: str, t: float, tune: Tuning, probe_base: tuple[float, float | None]) -> None:
        """A rung left soon after reaching it did not hold: not tried again for a hold-off
        that doubles with each such failure (reset by a link change, or by half a minute
        clean on it)."""
        self.fails[rung] = self.fails.get(rung, 0) + 1
        self.hold = min(tune.hold_s * 2 ** self.fails[rung], tune.max_hold_s)
        self.blocked[rung] = t + self.hold
        self.fail_base = probe_base

    def pad_failed(self, rung: str, t: float, tune: Tuning, cheap: bool = True) -> None:
        """A padding probe found the rung too big. Cheap (no keyframe was spent, the padding
        stopped at the first sign): try again soon, so a link that grows is used within
        seconds; a little later each time, up to pad_max_hold_s. Not cheap (the viewer has
        no echo channel: the padding ran its course before RTCP told): lossy_hold_s,
        doubling each time, up to max_hold_s."""
        n = self.pad_fails[rung] = self.pad_fails.get(rung, 0) + 1
        hold = (min(tune.pad_hold_s + 2.0 * (n - 1), tune.pad_max_hold_s) if cheap
                else min(tune.lossy_hold_s * 2 ** (n - 1), tune.max_hold_s))
        self.blocked[rung] = t + hold

    def is_blocked(self, rung: str, t: float) -> bool:
        return t < self.blocked.get(rung, 0.0)

    def reset(self, tune: Tuning) -> None:
        """The link changed: the failures on the old one say nothing."""
        self.hold = tune.hold_s
        self.fail_base = None
        self.blocked.clear()
        self.fails.clear()
