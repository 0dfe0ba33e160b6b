"""What says a viewer's link is failing now: the receiver's estimate, a standing queue,
loss, NACKs, and what the viewer reports (frames decoded, freezes). Keeps the runs and the
freezes it counts between samples; the controller decides what to do about it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .estimate import Trend
from .tuning import Tuning
from .types import Rung, Sample

__all__ = ["Evidence"]


@dataclass
class Evidence:
    tune: Tuning
    trend: Trend
    low_remb_run: int = 0  # samples running with the estimate low
    slow_run: int = 0  # samples running with poor decoding
    freezes: deque[float] = field(default_factory=deque)  # when the viewer reported each, lately

    def reset(self) -> None:
        """A switch, or a padding probe's overload: the runs and freezes so far say nothing."""
        self.freezes.clear()
        self.low_remb_run = self.slow_run = 0

    def judge(self, s: Sample, rung: Rung, rate: float, since_switch: float, *, settle: float,
              started: float, quiet_until: float, following: bool) -> tuple[list[str], bool, bool]:
        """What says the link is failing now: (reasons, the estimate collapsed, a queue
        stands). ``rate``: what the rung sends (smoothed); ``settle``: how long the last
        switch's evidence is not judged; ``following``: a collapse is being followed."""
        tune, trend = self.tune, self.trend
        loss = trend.loss_1s(s.t)
        reasons: list[str] = []
        collapsed = self._remb(s, rung, rate, loss, since_switch, following, reasons)
        # A queue standing on the link while the viewer receives well under what it is
        # sent: the link shrank, and what it delivered while its queue was full is its rate
        # now. Seen 0.3-0.5 s after the fall, a second before the receiver's estimate moves.
        # (Not in a new viewer's first seconds: its first echoes may already have queued,
        # and the first receiver reports count what it missed while it connected.)
        queued = (s.queue_ms is not None and s.link_kbps is not None
                  and s.t - started > tune.warmup_s
                  and s.link_kbps < rate * tune.queue_down)
        if queued:
            reasons.append(f"queue +{s.queue_ms:.0f} ms, link carries {s.link_kbps:.0f} kbit/s "
                           f"< {rate:.0f} sent")
        if loss > tune.loss_down:
            reasons.append(f"loss {loss * 100:.0f} %")
        if s.sent >= 10 and s.nacks > tune.nack_down * s.sent and since_switch > settle:
            # Sooner than receiver reports (sent about once a second): the viewer asks again
            # for a large share of what it was just sent.
            reasons.append(f"NACKs {100 * s.nacks / s.sent:.0f} % of packets")
        self._picture(s, rung, since_switch, settle, s.t - started > tune.warmup_s, quiet_until, reasons)
        return reasons, collapsed, queued

    def _remb(self, s: Sample, rung: Rung, rate: float, loss: float, since_switch: float, following: bool,
              reasons: list[str]) -> bool:
        """The receiver's estimate as evidence; returns whether it collapsed.

        REMB lags a switch (the estimator sees the queue drain or fill): judge it only
        after remb_grace_s, and only when it stays low for two samples running and it has
        just fallen ("dropped": by a third or more within the last 2 s; one cut of
        Chromium's, 0.85x, or two, is its answer to a keyframe's delay spike on a link that
        carries the rung) or the link shows trouble too (loss above its usual share, NACKs,
        frames late). Chromium's receive-side estimate is no measure of capacity otherwise:
        it answers each delay spike (a keyframe through a shaped link) with 0.85x what it
        receives, keeps cutting while the rate falls, and climbs back ~10-15 kbit/s a second
        (measured on links that carried the rung at 30 fps: 1174 -> 933 on "mid" over
        1.5 Mbit/s, 853 -> 426 on "low", 621 -> 288 on "floor" over 800 kbit/s; 1384 -> 1473
        in 6 s on "high" at 2.4 Mbit/s over 5 Mbit/s). A step up is judged by a padding probe
        instead. (Right after a switch made on a collapse, the estimate still falling is the
        link's news, not lag: it answers what the link delivers, a second late.)"""
        tune, trend = self.tune, self.trend
        remb = trend.remb
        low_remb = (remb is not None and (since_switch > tune.remb_grace_s or following)
                    and remb < rate * tune.remb_down)
        self.low_remb_run = self.low_remb_run + 1 if low_remb else 0
        nack_share = s.nacks / s.sent if s.sent >= 10 else 0.0
        # (Loss over a second of a few hundred packets varies by a couple of % on a lossy link.)
        shows = (loss > max(tune.lossy_link, 2 * (trend.base_loss or 0.0) + 0.03)
                 or nack_share > (trend.base_nack or 0.0) + 0.08
                 or (s.fps is not None and s.fps < rung.fps * 0.85) or s.freezes > 0)
        # A fall to well under what is sent, within two seconds, is the link shrinking: a
        # receiver answers a delay spike with 0.85x what it receives, so an estimate this far
        # down means it received little (measured: 3916 -> 1198 kbit/s in one sample when
        # the link fell from 5 Mbit/s to 800 kbit/s under "high"). No second sample needed.
        # (Judged at once even right after a switch: no lag of the estimate makes it fall
        # this far this fast.)
        collapsed = remb is not None and remb < rate * tune.remb_down and (following or (
            remb < rate * tune.remb_collapse and trend.remb_peak * tune.remb_collapse >= remb))
        if (self.low_remb_run >= 2 and (trend.remb_dropped or shows)) or collapsed:
            reasons.append(f"estimate {remb:.0f} kbit/s < {rate:.0f} sent")
        return collapsed

    def _picture(self, s: Sample, rung: Rung, since_switch: float, settle: float, warm: bool,
                 quiet_until: float, reasons: list[str]) -> None:
        """What the viewer itself reports: frames decoded, freezes."""
        tune = self.tune
        slow = warm and s.fps is not None and s.fps < rung.fps * 0.6 and since_switch > settle
        self.slow_run = self.slow_run + 1 if slow else 0
        if self.slow_run >= tune.fps_runs:
            # Two reports running: a link that collapsed leaves a queue of the old rung's
            # packets that the first report after the switch still shows.
            reasons.append(f"decoding {s.fps:.0f} of {rung.fps:.0f} fps")
        # (At 10 fps one frame late is a 200 ms "freeze": no evidence on so thin a rung.)
        thin = rung.fps <= tune.thin_fps
        if s.freezes and warm and since_switch > settle and s.t >= quiet_until + 1.5 and not thin:
            # (A viewer's report covers the second before it, and arrives up to a second
            # late: a freeze reported 1.5 s after a failed probe's quiet is still its.)
            self.freezes.extend([s.t] * s.freezes)
        while self.freezes and self.freezes[0] < s.t - tune.freeze_window_s:
            self.freezes.popleft()
        if len(self.freezes) >= 2:
            # One freeze is a lost packet's retransmission arriving late; two in 20 s, a
            # rung whose keyframes the link cannot carry in time (measured: 540p at
            # 1.2 Mbit/s on a 1.5 Mbit/s link with 5 % loss freezes 8-14 times a minute,
            # 360p at 0.6 Mbit/s 0-2 times).
            reasons.append(f"{len(self.freezes)} freezes in {tune.freeze_window_s:.0f} s")
