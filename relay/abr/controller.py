"""Which rendition a viewer on "auto" should get now: a pure decision, fed with samples.

No network, no clock of its own (``feed`` takes the time), so it is unit-tested on
synthetic traces. The glue that samples aiortc (REMB, receiver reports, NACK/PLI counts)
and the viewer's own report, and that performs the keyframe-aligned switch, lives in
``egress/whep.py`` and ``webrtc/``.

How it decides (after mediasoup's and OvenMediaEngine's controllers):

- **down fast**: the link is failing when the receiver's estimate (REMB) stays under 0.8x
  what the current rung sends and has just fallen or the link shows it too (at once when it
  fell under 0.6x within 2 s: ``remb_collapse``), when a queue stands on the link
  (:class:`QueueWatch`: round trips on the echo channel late for 0.3 s) while the viewer
  receives under ``queue_down`` of what it is sent (then what it received is the link's
  rate: the surest and soonest sign, ~0.5 s after the fall), when loss over
  the last second exceeds ``loss_down``, when the viewer
  NACKs more than ``nack_down`` of the packets it was sent (sooner than receiver reports),
  or when it reports decoding well under the rung's frame rate or two freezes in 20 s. Then
  the viewer moves to the highest rung that fits the estimate or the measured rate (at
  most half the rate in one step unless loss, NACKs, the queue or a collapse of the
  estimate say the same; one rung down
  without an estimate) within one sample period (0.5 s) of the evidence, once the last
  switch has settled (``settle_s``; after a collapse the estimate's further fall is
  followed at once for 2 s: it lags the link by a second).
- **up carefully**: one rung at a time (several in one padding probe), after two clean
  seconds and a hold since the last switch: ``hold_s`` after a step down, ``up_hold_s``
  after a step up that held. Where the sender can pad (``padding``: RTX negotiated), the
  step up is first a **padding probe**: ``feed`` returns ``Switch(probe=True)``, the
  egress pads the link to the next rung's rate, then on to each rung above it that is not
  held off (``probe_stages``), and reports what the link showed to ``probe_result`` (round
  trips growing, the estimate falling, NACKs above the usual share), which returns the
  step up to the best rung the link carried, if any; a failed padding probe costs little,
  so the rung is tried again after ``pad_hold_s`` (+2 s each time, up to
  ``pad_max_hold_s``). Without padding the step up is the probe (REMB is capped near 1.5x
  what the viewer receives, so no estimate can show room for a rung twice as big), vetoed
  unless the estimate has covered ``probe_headroom`` times what the viewer is sent for a
  second. (Measured: a higher bar, 1.3x, does not tell a saturated link from a free one —
  Chromium's estimate on mid over a 1.5 Mbit/s link reaches 1.4-1.5x at times — while
  after a long limit it climbs only ~12 kbit/s a second, so it delayed the climb back by
  10-20 s. The default keeps 1.0.) A step up is judged after ``probe_settle_s`` (the rung
  below was clean, so trouble now is the new rung's); one that fails within ``probe_s`` is
  a failed probe: the viewer goes back to the rung it came from and stays there
  ``recover_s`` whatever the overload left behind, and that rung is not probed again for a
  hold-off that doubles (up to ``max_hold_s``; at least ``probe_fail_hold_s`` on a link
  that loses ``lossy_link`` or more anyway, where a probe of a rung that failed also waits
  ``lossy_hold_s``), so a link that cannot carry it is not probed every few seconds.
  (Measured at 1.5 Mbit/s, 5 %: each failed probe of "high" cost a freeze 1-3 s later.)
- **a changed link resets the back-off**: when the loss seen on a clean rung falls well below
  what it was when the last probe failed, or the estimate rises well above it, the link is
  not the one that failed and the hold returns to ``hold_s`` (a vehicle that drives out of
  a bad cell climbs back in seconds, not a minute).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .types import ProbeResult, Rung, Sample, Switch

__all__ = ["AbrController", "t_since"]


@dataclass
class AbrController:
    ladder: list[Rung]  # best first
    current: str
    hold_s: float = 6.0
    max_hold_s: float = 60.0
    probe_s: float = 5.0
    up_hold_s: float = 3.0
    loss_down: float = 0.12
    loss_clean: float = 0.1  # random loss of a few % is not congestion: climb through it
    nack_down: float = 0.3  # NACKed packets over packets sent in a sample
    freeze_window_s: float = 20.0
    stay_s: float = 30.0  # a rung left sooner than this after reaching it failed
    probe_settle_s: float = 0.5  # a step up is judged at once: the rung below was clean
    settle_s: float = 3.0  # after a switch, the new rung's evidence needs this long to show
    recover_s: float = 4.0  # after a failed probe: the overload's queue and lost keyframe clear
    warmup_s: float = 3.0  # a new viewer's first reports (still connecting) are no evidence
    remb_grace_s: float = 3.0  # after a step up, REMB needs time to see the higher rate
    probe_headroom: float = 1.0  # a step up needs an estimate this far above what is sent
    probe_fail_hold_s: float = 45.0  # a failed probe on a lossy link blocks its rung this long
    lossy_link: float = 0.02  # random loss at or above this: a lossy (marginal) link
    lossy_hold_s: float = 20.0  # on a lossy link, this long before probing a rung that failed
    link_change_s: float = 10.0  # loss must stay low this long after a switch to mean a new link
    fps_runs: int = 2  # poor decoding must show in this many samples running
    remb_down: float = 0.8  # an estimate alone is evidence under this share of what is sent
    remb_collapse: float = 0.6  # ...at once, and trusted, when it fell under this share within 2 s
    queue_down: float = 0.8  # a standing queue, and the viewer receives under this share of what is sent
    media_share: float = 0.85  # of a full link, what the media gets (headers, retransmissions, echoes)
    padding: bool = False  # the sender can pad (RTX): probe a rung's rate before switching
    probe_nack_margin: float = 0.08  # a padding probe fails above the link's usual NACK share + this
    probe_quiet_s: float = 1.5  # after a failed padding probe, its overload is no evidence
    pad_hold_s: float = 4.0  # a rung a padding probe found too big is probed again after this,
    pad_max_hold_s: float = 6.0  # 2 s more each time up to this
    pad_up_hold_s: float = 2.0  # after a step up a padding probe verified, the next probe waits this
    history: deque[Switch] = field(default_factory=lambda: deque(maxlen=50))
    _started: float | None = None
    _last_switch: float = -1e9
    _last_up: float = -1e9
    _last_down: float = -1e9
    _hold: float = 0.0
    _remb: float | None = None
    _clean_since: float | None = None
    _losses: deque[tuple[float, float]] = field(default_factory=deque)
    _low_remb_run: int = 0
    _last_up_ok: bool = False  # the last switch was a step up (not yet failed)
    _settle: float = 0.0  # how long the last switch's evidence is not judged
    _blocked: dict[str, float] = field(default_factory=dict)  # rung -> no probe before
    _freezes: deque[float] = field(default_factory=deque)
    _fails: dict[str, int] = field(default_factory=dict)  # rung -> failures in a row
    _sent_kbps: float | None = None
    _rembs: deque[tuple[float, float]] = field(default_factory=deque)  # raw, the last 2 s
    _base_loss: float | None = None  # smoothed loss while clean
    _probe_base: tuple[float, float | None] = (0.0, None)  # (loss, estimate) when probing
    _fail_base: tuple[float, float | None] | None = None  # the same, for the last failed probe
    _room_since: float | None = None  # since when the estimate shows probe_headroom
    _slow_run: int = 0  # samples running with poor decoding
    _probing: tuple[list[str], float, str] | None = None  # (stages, since, reason) of a padding probe
    _quiet_until: float = -1e9
    _collapse_until: float = -1e9  # the estimate collapsed: follow it down until then
    _base_nack: float | None = None  # smoothed NACK share while clean
    _n_loss: int = 0
    _pad_fails: dict[str, int] = field(default_factory=dict)  # rung -> padding probes failed in a row
    _n_nack: int = 0
    probes: deque[ProbeResult] = field(default_factory=lambda: deque(maxlen=50))

    def __post_init__(self) -> None:
        self.ladder = sorted(self.ladder, key=lambda r: -r.kbps)
        if self.current not in {r.name for r in self.ladder}:
            raise ValueError(f"{self.current!r} is not on the ladder")
        self._hold = self.hold_s
        self._settle = self.settle_s

    @staticmethod
    def start_rung(ladder: list[Rung], start_kbps: int) -> str:
        """Where a new viewer starts: the best rung at or under ``start_kbps``."""
        fitting = [r for r in sorted(ladder, key=lambda r: -r.kbps) if r.kbps <= start_kbps]
        return (fitting[0] if fitting else min(ladder, key=lambda r: r.kbps)).name

    @property
    def estimate_kbps(self) -> float | None:
        return self._remb

    @property
    def sent_kbps(self) -> float:
        """What the viewer is sent (smoothed; the rung's budget before it is known)."""
        return self._sent_kbps or self._rung(self.current).kbps

    def _rung(self, name: str) -> Rung:
        return next(r for r in self.ladder if r.name == name)

    def _index(self) -> int:
        return next(i for i, r in enumerate(self.ladder) if r.name == self.current)

    def _switch(self, t: float, to: str, reason: str) -> Switch:
        sw = Switch(t, self.current, to, reason)
        self.history.append(sw)
        self.current = to
        self._last_switch = t
        self._clean_since = None
        self._losses.clear()
        self._freezes.clear()
        self._low_remb_run = 0
        self._slow_run = 0
        self._sent_kbps = None
        self._room_since = None
        self._settle = self.settle_s
        return sw

    def feed(self, s: Sample) -> Switch | None:
        """Take one sample; returns the switch to make now, if any."""
        if self._started is None:
            self._started = s.t  # a new viewer holds its starting rung like any other
        assert self._started is not None
        if s.remb_kbps is not None:
            self._rembs.append((s.t, s.remb_kbps))
            while self._rembs[0][0] < s.t - 2.0:
                self._rembs.popleft()
            # Fall at once, rise smoothly: a falling estimate is the news that matters.
            self._remb = s.remb_kbps if self._remb is None or s.remb_kbps < self._remb else (
                0.7 * self._remb + 0.3 * s.remb_kbps)
        if s.loss is not None:
            self._losses.append((s.t, s.loss))
        while self._losses and self._losses[0][0] < s.t - 2.0:
            self._losses.popleft()
        recent = [x for t, x in self._losses if t >= s.t - 1.0]
        loss = sum(recent) / len(recent) if recent else 0.0  # the last second: trouble
        # Over two seconds for "clean": a low rung sends few packets, one loss in a second
        # of them is not a trend.
        loss_2s = sum(x for _, x in self._losses) / len(self._losses) if self._losses else 0.0
        rung = self._rung(self.current)
        i = self._index()
        since_switch = t_since(s.t, self._last_switch)
        reasons = []
        # REMB lags a switch (the estimator sees the queue drain or fill): judge it only
        # after remb_grace_s, and only when it stays low for two samples running; "dropped":
        # it fell by a third or more within the last 2 s (one cut of Chromium's, 0.85x, or
        # two, is its answer to a keyframe's delay spike on a link that carries the rung).
        peak = max((r for _, r in self._rembs), default=0.0)  # the estimate's high of the last 2 s
        dropped = bool(self._rembs) and peak >= 1.5 * self._rembs[-1][1]
        # Compared with what the viewer is actually sent: REMB is capped near 1.5x that, so
        # a rung whose pictures need less than its budget must not look congested.
        if s.sent_kbps is not None:
            self._sent_kbps = s.sent_kbps if self._sent_kbps is None else (
                0.75 * self._sent_kbps + 0.25 * s.sent_kbps)  # over ~2 s: keyframes come and go
        rate = min(rung.kbps, self._sent_kbps) if self._sent_kbps else rung.kbps
        # REMB is evidence only where it has just fallen, or where the link shows trouble
        # too (loss above its usual share, NACKs, frames late). Chromium's receive-side
        # estimate is no measure of capacity otherwise: it answers each delay spike (a
        # keyframe through a shaped link) with 0.85x what it receives, keeps cutting while
        # the rate falls, and climbs back ~10-15 kbit/s a second (measured on links that
        # carried the rung at 30 fps: 1174 -> 933 on "mid" over 1.5 Mbit/s, 853 -> 426 on
        # "low", 621 -> 288 on "floor" over 800 kbit/s; 1384 -> 1473 in 6 s on "high" at
        # 2.4 Mbit/s over 5 Mbit/s). A step up is judged by a padding probe instead.
        # (Right after a switch made on a collapse, the estimate still falling is the link's
        # news, not lag: it answers what the link delivers, a second late.)
        following = s.t < self._collapse_until
        low_remb = (self._remb is not None and (since_switch > self.remb_grace_s or following)
                    and self._remb < rate * self.remb_down)
        self._low_remb_run = self._low_remb_run + 1 if low_remb else 0
        nack_share = s.nacks / s.sent if s.sent >= 10 else 0.0
        # (Loss over a second of a few hundred packets varies by a couple of % on a lossy link.)
        shows = (loss > max(self.lossy_link, 2 * (self._base_loss or 0.0) + 0.03)
                 or nack_share > (self._base_nack or 0.0) + 0.08
                 or (s.fps is not None and s.fps < rung.fps * 0.85) or s.freezes > 0)
        # A fall to well under what is sent, within two seconds, is the link shrinking: a
        # receiver answers a delay spike with 0.85x what it receives, so an estimate this far
        # down means it received little (measured: 3916 -> 1198 kbit/s in one sample when
        # the link fell from 5 Mbit/s to 800 kbit/s under "high"). No second sample needed.
        # (Judged at once even right after a switch: no lag of the estimate makes it fall
        # this far this fast.)
        collapsed = self._remb is not None and self._remb < rate * self.remb_down and (following or (
            self._remb < rate * self.remb_collapse
            and peak * self.remb_collapse >= self._remb))
        if (self._low_remb_run >= 2 and (dropped or shows)) or collapsed:
            reasons.append(f"estimate {self._remb:.0f} kbit/s < {rate:.0f} sent")
        # A queue standing on the link while the viewer receives well under what it is
        # sent: the link shrank, and what it delivered while its queue was full is its rate
        # now. Seen 0.3-0.5 s after the fall, a second before the receiver's estimate moves.
        # (Not in a new viewer's first seconds: its first echoes may already have queued,
        # and the first receiver reports count what it missed while it connected.)
        queued = (s.queue_ms is not None and s.link_kbps is not None
                  and t_since(s.t, self._started) > self.warmup_s
                  and s.link_kbps < rate * self.queue_down)
        if queued:
            reasons.append(f"queue +{s.queue_ms:.0f} ms, link carries {s.link_kbps:.0f} kbit/s "
                           f"< {rate:.0f} sent")
        if loss > self.loss_down:
            reasons.append(f"loss {loss * 100:.0f} %")
        if s.sent >= 10 and s.nacks > self.nack_down * s.sent and since_switch > self._settle:
            # Sooner than receiver reports (sent about once a second): the viewer asks again
            # for a large share of what it was just sent.
            reasons.append(f"NACKs {100 * s.nacks / s.sent:.0f} % of packets")
        warm = t_since(s.t, self._started) > self.warmup_s
        slow = warm and s.fps is not None and s.fps < rung.fps * 0.6 and since_switch > self._settle
        self._slow_run = self._slow_run + 1 if slow else 0
        if self._slow_run >= self.fps_runs:
            # Two reports running: a link that collapsed leaves a queue of the old rung's
            # packets that the first report after the switch still shows.
            reasons.append(f"decoding {s.fps:.0f} of {rung.fps:.0f} fps")
        if s.freezes and warm and since_switch > self._settle and s.t >= self._quiet_until + 1.5:
            # (A viewer's report covers the second before it, and arrives up to a second
            # late: a freeze reported 1.5 s after a failed probe's quiet is still its.)
            self._freezes.extend([s.t] * s.freezes)
        while self._freezes and self._freezes[0] < s.t - self.freeze_window_s:
            self._freezes.popleft()
        if len(self._freezes) >= 2:
            # One freeze is a lost packet's retransmission arriving late; two in 20 s, a
            # rung whose keyframes the link cannot carry in time (measured: 540p at
            # 1.2 Mbit/s on a 1.5 Mbit/s link with 5 % loss freezes 8-14 times a minute,
            # 360p at 0.6 Mbit/s 0-2 times).
            reasons.append(f"{len(self._freezes)} freezes in {self.freeze_window_s:.0f} s")
        if self._probing is not None or s.t < self._quiet_until:
            # A padding probe's overload (loss, NACKs, a late frame) is judged by
            # probe_result(), not here; and its after-effects are no evidence either.
            self._clean_since = None
            self._freezes.clear()
            self._losses.clear()
            self._slow_run = self._low_remb_run = 0
            return None
        if reasons:
            self._clean_since = None
            settle = self._settle
            if settle == self.settle_s and any(r.startswith(("loss", "NACKs")) for r in reasons):
                # Loss and NACKs are counted on the current rung only (receiver reports from
                # before the change-over are dropped): after a moment they are this
                # rung's, and a link that fell far needs the next step now, not in 3 s.
                settle = 1.5
            if collapsed or queued:
                settle = self.probe_settle_s  # the collapse goes on: follow it
            if queued and t_since(s.t, self._last_down) < 2.0:
                # The viewer was moved down a moment ago on the estimate's fall; now the
                # link's own rate is measured (a full link delivers its rate, draining the
                # old rung's queue or not): at once where it says (measured: the estimate's
                # switch came 0.5 s after the fall, the queue's rate 0.2 s later).
                settle = 0.0
            if i == len(self.ladder) - 1 or since_switch < settle:
                return None  # at the bottom, or the last switch has not shown its effect yet
            probe_failed = self._last_up_ok and t_since(s.t, self._last_up) < self.probe_s
            self._last_up_ok = False
            below = self.ladder[i + 1:]
            target = below[0]
            # A rung left soon after reaching it did not hold: it is not tried again for a
            # hold-off that doubles with each such failure (reset by a link change, or by
            # half a minute clean on it).
            if since_switch < self.stay_s or probe_failed:
                self._fails[self.current] = self._fails.get(self.current, 0) + 1
                self._hold = min(self.hold_s * 2 ** self._fails[self.current], self.max_hold_s)
                self._blocked[self.current] = s.t + self._hold
                self._fail_base = self._probe_base
            if probe_failed:
                # The ladder's steps are about 2x and REMB shows at most ~1.5x what is sent:
                # a probe is a real overload and each failed one costs freezes. On a link
                # that loses packets anyway (a marginal radio link) not again for half a
                # minute at least, unless the link is seen to change; on a clean link a
                # failure is a capacity limit that may lift soon: the usual doubling.
                if self._probe_base[0] >= self.lossy_link:
                    self._blocked[self.current] = s.t + max(self._hold, self.probe_fail_hold_s)
                # Back to the rung that was clean, and stay there: not the overload's
                # after-effects (a draining queue, a lost keyframe) nor this rung for a while.
                sw = self._switch(s.t, target.name, "down: " + ", ".join(reasons) + " (probe failed)")
                self._settle = self.recover_s
                return sw
            # The rate the full link was measured to carry, else the estimate (a second
            # late, and 0.85x what the receiver got when it was cut). The media is only part
            # of what a full link carries: retransmissions, headers and the echoes share it
            # (measured on 800 kbit/s: 585-745 kbit/s of media, 0.73-0.93).
            est = s.link_kbps / self.media_share if queued and s.link_kbps is not None else self._remb
            if est is not None:
                # To what fits it, but at most half the rate in one step (a transiently low
                # estimate must not throw the viewer to the bottom) unless loss or NACKs say
                # the same: then the link has collapsed, go where it fits.
                corroborated = collapsed or queued or any(r.startswith(("loss", "NACKs")) for r in reasons)
                # (An estimate on a saturated link is already 0.85x its capacity, and a
                # rung's pictures mostly need less than its budget.)
                budget = est if corroborated else max(est, rung.kbps * 0.5)
                fits = [r for r in below if r.kbps <= budget]
                target = fits[0] if fits else below[0]
            sw = self._switch(s.t, target.name, "down: " + ", ".join(reasons))
            self._last_down = s.t
            if collapsed or queued:
                # An estimate that collapsed lags the link by a second (measured: 3852 ->
                # 1336 -> 888 -> 627 kbit/s, 0.5 s apart, on a link that fell to 800 kbit/s):
                # for two seconds, its further fall under the new rung is trusted at once.
                self._collapse_until = s.t + 2.0
            return sw
        clean = loss_2s < self.loss_clean and not s.freezes and (s.fps is None or s.fps >= rung.fps * 0.85)
        if not clean:
            self._clean_since = None
            return None
        if self._clean_since is None:
            self._clean_since = s.t
        # What the link usually loses: learnt while nothing points to congestion, as the
        # mean of the first samples, then over about ten seconds.
        if s.loss is not None and not self._low_remb_run:
            self._n_loss += 1
            a = max(0.05, 1 / self._n_loss)
            self._base_loss = s.loss if self._base_loss is None else (1 - a) * self._base_loss + a * s.loss
        if s.sent >= 10 and not self._low_remb_run:
            self._n_nack += 1
            a = max(0.05, 1 / self._n_nack)
            share = s.nacks / s.sent
            self._base_nack = share if self._base_nack is None else (1 - a) * self._base_nack + a * share
        if since_switch >= self.stay_s and t_since(s.t, self._clean_since) >= self.stay_s:
            self._fails.pop(self.current, None)  # this rung holds: its failures are history
        if self._link_changed(s.t):
            self._hold = self.hold_s
            self._fail_base = None
            self._blocked.clear()
            self._fails.clear()
        # Room for a probe: the (smoothed) estimate well above what is sent, for a second.
        if self._remb is not None and self._remb >= rate * self.probe_headroom:
            self._room_since = s.t if self._room_since is None else self._room_since
        else:
            self._room_since = None
        held = t_since(s.t, max(self._last_switch, self._started))
        need = (self.pad_up_hold_s if self.padding else self.up_hold_s) if self._last_up_ok else self.hold_s
        up_name = self.ladder[i - 1].name if i > 0 else ""
        if (not self.padding and self._base_loss is not None and self._base_loss >= self.lossy_link
                and self._fails.get(up_name)):
            # A marginal link, and the rung above has failed on it: every probe costs freezes.
            # (Not for a first climb: a viewer thrown low by an overload must come back.)
            need = max(need, self.lossy_hold_s)
        if i == 0 or held < need or t_since(s.t, self._clean_since) < 2.0:
            return None
        up = self.ladder[i - 1]
        if s.t < self._blocked.get(up.name, 0.0):
            return None  # a probe of it failed not long ago
        if (not self.padding and self._remb is not None
                and (self._room_since is None or t_since(s.t, self._room_since) < 1.0)):
            # Without padding the step up is the probe: only where the estimate shows room
            # above what is sent, for a second.
            return None
        said = f"estimate {self._remb:.0f} kbit/s" if self._remb is not None else "no estimate"
        reason = f"up: clean for {t_since(s.t, self._clean_since):.0f} s, {said}"
        if self.padding:
            # First pad the link up to the rung's rate (copies of packets already sent, on
            # the retransmission stream): a link that cannot carry it shows at once, and
            # costs a few retransmissions instead of two keyframes and the freezes after
            # (as mediasoup probes before it raises a consumer's layer). Then on to each
            # rung above it not held off: a link that grew back is climbed in one probe.
            stages = [up.name]
            for r in reversed(self.ladder[:i - 1]):
                if s.t < self._blocked.get(r.name, 0.0):
                    break
                stages.append(r.name)
            self._probing = (stages, s.t, reason)
            return Switch(s.t, self.current, stages[-1], reason, probe=True)
        return self._step_up(s.t, up.name, reason)

    def _step_up(self, t: float, to: str, reason: str) -> Switch:
        self._last_up = t
        self._probe_base = (self._base_loss or 0.0, self._remb)
        sw = self._switch(t, to, reason)
        self._last_up_ok = True
        self._settle = self.probe_settle_s
        return sw

    # -------------------------------------------------------------- padding probes

    @property
    def probing(self) -> str | None:
        """The best rung a padding probe is testing now, if any."""
        return self._probing[0][-1] if self._probing else None

    def probe_stages(self) -> list[tuple[str, float]]:
        """The rungs a padding probe tries in turn, the next one up first, each with the
        padding that takes the viewer's link to its rate (and 10 % over: its keyframes must
        fit too). The egress may stop after any stage."""
        if self._probing is None:
            return []
        return [(n, max(0.0, self._rung(n).kbps * 1.1 - self.sent_kbps)) for n in self._probing[0]]

    def _probe_limit(self) -> float:
        return (self._base_nack or 0.0) + self.probe_nack_margin

    def probe_failing(self, nacks: int, sent: int) -> bool:
        """Already clear that the probe fails (the glue stops padding at once): NACKs well
        over what the link usually loses (the queue of a link that cannot carry the rung
        fills in a few hundred ms, then drops a third of everything)."""
        return sent >= 10 and nacks - (self._base_nack or 0.0) * sent > max(5.0, 0.1 * sent)

    def probe_result(self, t: float, nacks: int, sent: int, remb_fell_to: float | None = None,
                     queue_ms: float | None = None, tried: str | None = None,
                     ) -> tuple[ProbeResult, Switch | None]:
        """The padding probe is over: ``tried`` is the last stage it padded to (the first
        when not given; the stages before it held); ``nacks`` of the ``sent`` media packets
        were NACKed while it ran (and a moment after, for the queue to show);
        ``remb_fell_to``: the receiver's estimate fell to this share of what it was (its
        delay-based detector saw the queue grow); ``queue_ms``: round trips grew this much
        (a queue filling). Returns the step up to the best rung the link carried, if any."""
        if self._probing is None:
            raise RuntimeError("no probe running")
        stages, _since, reason = self._probing
        self._probing = None
        to = tried if tried in stages else stages[0]
        held = stages[:stages.index(to)]
        share = nacks / sent if sent else 0.0
        detail = f"NACKs {share * 100:.0f} % of {sent} packets (usually {(self._base_nack or 0) * 100:.0f} %)"
        if remb_fell_to is not None:
            detail += f", estimate fell to {remb_fell_to * 100:.0f} %"
        if queue_ms is not None:
            detail += f", round trip +{queue_ms:.0f} ms"
        if (sent >= 10 and share > self._probe_limit()) or remb_fell_to is not None or queue_ms is not None:
            # Not carried. Cheap (no keyframe was spent, the padding stopped at the first
            # sign): try again soon, so a link that grows is used within seconds; a little
            # later each time, up to pad_max_hold_s.
            self._pad_fails[to] = self._pad_fails.get(to, 0) + 1
            hold = min(self.pad_hold_s + 2.0 * (self._pad_fails[to] - 1), self.pad_max_hold_s)
            self._blocked[to] = t + hold
            self._quiet_until = t + self.probe_quiet_s
            self._losses.clear()
            res = ProbeResult(t, to, False, detail)
            self.probes.append(res)
            if held:
                # The stages below it held: up to the best of them.
                carried = held[-1]
                self._pad_fails.pop(carried, None)
                kbps = self._rung(carried).kbps
                return res, self._step_up(t, carried, f"{reason}, probe at {kbps} kbit/s held, "
                                                      f"at {self._rung(to).kbps}: {detail}")
            return res, None
        res = ProbeResult(t, to, True, detail)
        self.probes.append(res)
        self._pad_fails.pop(to, None)
        return res, self._step_up(t, to, f"{reason}, probe at {self._rung(to).kbps} kbit/s: {detail}")

    def _link_changed(self, t: float) -> bool:
        if self._fail_base is None or not self._blocked:
            return False
        loss, remb = self._fail_base
        # Loss judged over a while: a low rung sends few packets, and a few clean reports
        # in a row on a 2 % link are chance, not a better link (measured: it reset the
        # back-off every 15-25 s at 800 kbit/s).
        if (loss >= 0.01 and self._base_loss is not None and self._base_loss < loss * 0.3
                and t_since(t, self._last_switch) >= self.link_change_s):
            return True
        return remb is not None and self._remb is not None and self._remb >= remb * 1.3


def t_since(t: float, then: float) -> float:
    return t - then
