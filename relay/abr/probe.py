"""A padding probe's course and verdict (pure; the egress pads, times and feeds it)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PadProbe"]


@dataclass
class PadProbe:
    """One padding probe's course and verdict, pure (the egress pads, times and feeds it).

    The viewer's link is padded up to each stage's rate in turn (``stages``: the rung and
    the padding in kbit/s that brings the link to its rate; see
    ``AbrController.probe_stages``): a ramp from the stage before's rate over ``ramp_s``,
    held to ``pad_s``, then the next stage. The probe stops at the first clear sign that
    the link does not carry the stage: round trips on the echo channel over their
    baseline (taken before the padding starts) by ``queue_over_s`` and the baseline's own
    spread (a queue filling: the first sign); where no round trips are timed, the
    receiver's estimate falling under 0.95x what it was; or NACKs (the egress asks the
    controller, ``AbrController.probe_failing``). A sign within 0.2 s of a stage's start
    is the stage before's (its queue showing late). Times are seconds since the padding
    started."""

    stages: list[tuple[str, float]]
    remb0: float | None = None  # the estimate before (bit/s); None: it says nothing here
    pad_s: float = 1.2
    ramp_s: float = 0.6
    queue_over_s: float = 0.025
    k: int = 0  # the stage now
    stage_at: float = 0.0  # when it began
    base_rtt: float | None = None
    queue_at: float = 0.025  # round trips this much over the baseline: a queue
    remb_min: float | None = None  # the estimate's least while padding (bit/s)
    queue_s: float | None = None  # the queue seen, if any
    fell: bool = False  # the estimate fell (no round trips timed)

    def baseline(self, rtts: list[float]) -> None:
        """Round trips timed before the padding: over the link's own jitter (a radio link's
        round trips vary by tens of ms)."""
        if rtts:
            self.base_rtt = min(rtts)
            self.queue_at = self.queue_over_s + max(rtts) - self.base_rtt

    def rate_kbps(self, t: float) -> float | None:
        """The padding rate now (None: padding over, the tail that waits for NACKs);
        on to the next stage when this one has held ``pad_s``."""
        if t - self.stage_at >= self.pad_s and self.k + 1 < len(self.stages):
            self.k, self.stage_at = self.k + 1, t  # this rung held: on to the next
        el = t - self.stage_at
        if el >= self.pad_s:
            return None
        prev = self.stages[self.k - 1][1] if self.k else 0.0
        return prev + (self.stages[self.k][1] - prev) * min(1.0, el / self.ramp_s)

    def estimate(self, t: float, bps: float) -> None:
        """A new estimate from the receiver (one sent in the first 150 ms was made before
        the padding arrived)."""
        if t > 0.15:
            self.remb_min = bps if self.remb_min is None else min(self.remb_min, bps)

    def round_trips(self, late: list[float]) -> None:
        """Round trips answered since the padding began (oldest first): the last two over
        the baseline by ``queue_at`` are a queue."""
        if self.base_rtt is not None and len(late) >= 2 and min(late[-2:]) > self.base_rtt + self.queue_at:
            self.queue_s = min(late[-2:]) - self.base_rtt

    def stop(self, t: float, nacks_failing: bool = False) -> bool:
        """Whether the link has shown it does not carry the stage (then ``tried`` is the
        stage that failed). Where round trips are timed they decide, not the estimate: it
        also falls on a free link while it settles after a change (measured: to 93 % on
        5 Mbit/s, 4 s after the link grew back, the echoes flat at 1-3 ms)."""
        self.fell = (self.base_rtt is None and self.remb0 is not None and self.remb_min is not None
                     and self.remb_min < 0.95 * self.remb0)
        if not (self.fell or self.queue_s is not None or nacks_failing):
            return False
        if self.k > 0 and t - self.stage_at < 0.2:
            self.k -= 1  # the queue was the stage before's: this one had barely begun
        return True

    @property
    def tried(self) -> str:
        return self.stages[self.k][0]

    @property
    def padding_kbps(self) -> float:
        return self.stages[self.k][1]

    @property
    def fell_to(self) -> float | None:
        """The estimate's fall, as a share of what it was (when it decided)."""
        if self.fell and self.remb0 and self.remb_min is not None:
            return self.remb_min / self.remb0
        return None
