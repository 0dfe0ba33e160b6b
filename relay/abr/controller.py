"""The rules that move a viewer on "auto" along the ladder: down fast on evidence
(:mod:`.evidence`), up carefully after a padding probe, held off by the back-off
(:mod:`.backoff`). Pure: ``feed`` takes the time. How it decides: the package's docstring."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

from .backoff import Backoff
from .estimate import Trend
from .evidence import Evidence
from .tuning import Tuning
from .types import ProbeResult, Rung, Sample, Switch

__all__ = ["AbrController", "t_since"]


def t_since(t: float, then: float) -> float:
    return t - then


class AbrController:
    """The rules; ``tuning`` (or keyword overrides of it) sets the thresholds."""

    def __init__(self, ladder: list[Rung], current: str, tuning: Tuning | None = None,
                 padding: bool = False, **overrides: Any) -> None:
        self.tune = replace(tuning or Tuning(), **overrides)
        self.ladder = sorted(ladder, key=lambda r: -r.kbps)  # best first
        if current not in {r.name for r in self.ladder}:
            raise ValueError(f"{current!r} is not on the ladder")
        self.full_ladder = list(self.ladder)  # (``ladder`` is it, less the rungs a cap closed)
        self.ceiling: str | None = None  # the relay short of CPU closed the rungs above this one
        self.current = current
        self.padding = padding  # the sender can pad (RTX): probe a rung's rate before switching
        # A padding probe can be stopped at the first sign of a queue: the viewer has the
        # page's echo channel. Without it (a WHEP player we did not write) the signs come
        # from RTCP a second late, and on a lossy link each probe costs a freeze.
        self.timed = True
        self.history: deque[Switch] = deque(maxlen=50)
        self.probes: deque[ProbeResult] = deque(maxlen=50)
        self.trend = Trend()
        self.backoff = Backoff(self.tune.hold_s)
        self._started: float | None = None
        self._last_switch = self._last_up = self._last_down = -1e9
        self._clean_since: float | None = None
        self.evidence = Evidence(self.tune, self.trend)
        self._last_up_ok = False  # the last switch was a step up (not yet failed)
        self._settle = self.tune.settle_s  # how long the last switch's evidence is not judged
        self._probe_base: tuple[float, float | None] = (0.0, None)  # (loss, estimate) when probing
        self._room_since: float | None = None  # since when the estimate shows probe_headroom
        self._probing: tuple[list[str], float, str] | None = None  # (stages, since, reason)
        self._quiet_until = -1e9
        self._collapse_until = -1e9  # the estimate collapsed: follow it down until then

    @property
    def _hold(self) -> float:
        return self.backoff.hold

    @property
    def remb_collapse(self) -> float:
        return self.tune.remb_collapse

    @staticmethod
    def start_rung(ladder: list[Rung], start_kbps: int) -> str:
        """Where a new viewer starts: the best rung at or under ``start_kbps``."""
        fitting = [r for r in sorted(ladder, key=lambda r: -r.kbps) if r.kbps <= start_kbps]
        return (fitting[0] if fitting else min(ladder, key=lambda r: r.kbps)).name

    @property
    def estimate_kbps(self) -> float | None:
        return self.trend.remb

    @property
    def sent_kbps(self) -> float:
        """What the viewer is sent (smoothed; the rung's budget before it is known)."""
        return self.trend.sent_kbps or self._rung(self.current).kbps

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
        self.trend.losses.clear()
        self.evidence.reset()
        self.trend.sent_kbps = None
        self._room_since = None
        self._settle = self.tune.settle_s
        return sw

    def cap(self, name: str | None, t: float) -> Switch | None:
        """The relay, short of CPU, closed the rungs above ``name`` (None: open again): the
        viewer is moved down to it if it is above, and climbs no higher (its probes stop)
        until the cap is lifted; then the rules climb as ever."""
        if name is None:
            self.ladder, self.ceiling = list(self.full_ladder), None
            return None
        ceil = next(r for r in self.full_ladder if r.name == name).kbps
        self.ceiling = name
        self._probing = None  # (a padding probe of a closed rung: the egress lets it go)
        sw = None
        if self._rung(self.current).kbps > ceil:
            sw = self._switch(t, name, "down: relay short of CPU (its extra rungs closed)")
        self.ladder = [r for r in self.full_ladder if r.kbps <= ceil]
        return sw

    # -------------------------------------------------------------- the sample

    def feed(self, s: Sample) -> Switch | None:
        """Take one sample; returns the switch to make now, if any."""
        if self._started is None:
            self._started = s.t  # a new viewer holds its starting rung like any other
        self.trend.take(s.t, s.remb_kbps, s.loss, s.sent_kbps)
        reasons, collapsed, queued = self._evidence(s)
        if self._probing is not None or s.t < self._quiet_until:
            # A padding probe's overload (loss, NACKs, a late frame) is judged by
            # probe_result(), not here; and its after-effects are no evidence either.
            self._clean_since = None
            self.evidence.reset()
            self.trend.losses.clear()
            return None
        if reasons:
            return self._down(s, reasons, collapsed, queued)
        return self._maybe_up(s)

    def _rate(self) -> float:
        rung = self._rung(self.current)
        sent = self.trend.sent_kbps
        return min(rung.kbps, sent) if sent else rung.kbps

    def _evidence(self, s: Sample) -> tuple[list[str], bool, bool]:
        """What says the link is failing now: (reasons, the estimate collapsed, a queue stands)."""
        assert self._started is not None
        return self.evidence.judge(s, self._rung(self.current), self._rate(), t_since(s.t, self._last_switch),
                                   settle=self._settle, started=self._started, quiet_until=self._quiet_until,
                                   following=s.t < self._collapse_until)

    # -------------------------------------------------------------- down fast

    def _down_settle(self, s: Sample, reasons: list[str], collapsed: bool, queued: bool) -> float:
        """How long after the last switch this evidence may move the viewer again."""
        settle = self._settle
        if settle == self.tune.settle_s and any(r.startswith(("loss", "NACKs")) for r in reasons):
            # Loss and NACKs are counted on the current rung only (receiver reports from
            # before the change-over are dropped): after a moment they are this rung's,
            # and a link that fell far needs the next step now, not in 3 s.
            settle = 1.5
        if collapsed or queued:
            settle = self.tune.probe_settle_s  # the collapse goes on: follow it
        if queued and t_since(s.t, self._last_down) < 2.0:
            # The viewer was moved down a moment ago on the estimate's fall; now the link's
            # own rate is measured (a full link delivers its rate, draining the old rung's
            # queue or not): at once where it says (measured: the estimate's switch came
            # 0.5 s after the fall, the queue's rate 0.2 s later).
            settle = 0.0
        return settle

    def _down(self, s: Sample, reasons: list[str], collapsed: bool, queued: bool) -> Switch | None:
        tune = self.tune
        self._clean_since = None
        i = self._index()
        if i == len(self.ladder) - 1 or t_since(s.t, self._last_switch) < self._down_settle(
                s, reasons, collapsed, queued):
            return None  # at the bottom, or the last switch has not shown its effect yet
        probe_failed = self._last_up_ok and t_since(s.t, self._last_up) < tune.probe_s
        self._last_up_ok = False
        below = self.ladder[i + 1:]
        if t_since(s.t, self._last_switch) < tune.stay_s or probe_failed:
            self.backoff.failed(self.current, s.t, tune, self._probe_base)
        if probe_failed:
            # The ladder's steps are about 2x and REMB shows at most ~1.5x what is sent:
            # a probe is a real overload and each failed one costs freezes. On a link
            # that loses packets anyway (a marginal radio link) not again for half a
            # minute at least, unless the link is seen to change; on a clean link a
            # failure is a capacity limit that may lift soon: the usual doubling.
            if self._probe_base[0] >= tune.lossy_link:
                self.backoff.blocked[self.current] = s.t + max(self.backoff.hold, tune.probe_fail_hold_s)
            # Back to the rung that was clean, and stay there: not the overload's
            # after-effects (a draining queue, a lost keyframe) nor this rung for a while.
            sw = self._switch(s.t, below[0].name, "down: " + ", ".join(reasons) + " (probe failed)")
            self._settle = tune.recover_s
            return sw
        target = self._fitting(s, below, reasons, collapsed, queued)
        sw = self._switch(s.t, target.name, "down: " + ", ".join(reasons))
        self._last_down = s.t
        if collapsed or queued:
            # An estimate that collapsed lags the link by a second (measured: 3852 ->
            # 1336 -> 888 -> 627 kbit/s, 0.5 s apart, on a link that fell to 800 kbit/s):
            # for two seconds, its further fall under the new rung is trusted at once.
            self._collapse_until = s.t + 2.0
        return sw

    def _fitting(self, s: Sample, below: list[Rung], reasons: list[str], collapsed: bool,
                 queued: bool) -> Rung:
        """The rung to go down to. The rate the full link was measured to carry, else the
        estimate (a second late, and 0.85x what the receiver got when it was cut). The media
        is only part of what a full link carries: retransmissions, headers and the echoes
        share it (measured on 800 kbit/s: 585-745 kbit/s of media, 0.73-0.93)."""
        est = s.link_kbps / self.tune.media_share if queued and s.link_kbps is not None else self.trend.remb
        if est is None:
            return below[0]  # one rung down without an estimate
        # To what fits it, but at most half the rate in one step (a transiently low
        # estimate must not throw the viewer to the bottom) unless loss or NACKs say the
        # same: then the link has collapsed, go where it fits. (An estimate on a saturated
        # link is already 0.85x its capacity, and a rung's pictures mostly need less than
        # its budget.)
        corroborated = collapsed or queued or any(r.startswith(("loss", "NACKs")) for r in reasons)
        budget = est if corroborated else max(est, self._rung(self.current).kbps * 0.5)
        fits = [r for r in below if r.kbps <= budget]
        return fits[0] if fits else below[0]

    # -------------------------------------------------------------- up carefully

    def _clean(self, s: Sample) -> bool:
        """A clean sample: learn what the link usually shows; forget history that no longer
        holds. False when the sample is not clean."""
        tune, trend = self.tune, self.trend
        rung = self._rung(self.current)
        # On a low-rate rung the evidence is thin: at 10 fps one late frame is a 200 ms
        # "freeze", and two seconds of a quarter-megabit stream are ~50 packets, where a
        # link's usual 5 % loss shows as 10 % one window in four. Judged against what the
        # link usually loses, and one freeze allowed there: else a viewer (or a forward)
        # thrown to the floor by a burst never sees two clean seconds to climb back.
        thin = rung.fps <= tune.thin_fps
        loss_ok = trend.loss_2s() < max(tune.loss_clean, 2 * (trend.base_loss or 0.0) + 0.03 if thin else 0.0)
        if not (loss_ok and s.freezes <= (1 if thin else 0)
                and (s.fps is None or s.fps >= rung.fps * 0.85)):
            self._clean_since = None
            return False
        if self._clean_since is None:
            self._clean_since = s.t
        if not self.evidence.low_remb_run:
            trend.learn_base(s.loss, s.nacks, s.sent)
        if t_since(s.t, self._last_switch) >= tune.stay_s and t_since(s.t, self._clean_since) >= tune.stay_s:
            self.backoff.fails.pop(self.current, None)  # this rung holds: its failures are history
        if self._link_changed(s.t):
            self.backoff.reset(tune)
        # Room for a probe: the (smoothed) estimate well above what is sent, for a second.
        if trend.remb is not None and trend.remb >= self._rate() * tune.probe_headroom:
            self._room_since = s.t if self._room_since is None else self._room_since
        else:
            self._room_since = None
        return True

    def _up_hold(self, i: int) -> float:
        """How long the viewer stays on its rung before a step up."""
        tune = self.tune
        need = (tune.pad_up_hold_s if self.padding else tune.up_hold_s) if self._last_up_ok else tune.hold_s
        up_name = self.ladder[i - 1].name if i > 0 else ""
        base_loss = self.trend.base_loss
        if (not self.padding and base_loss is not None and base_loss >= tune.lossy_link
                and self.backoff.fails.get(up_name)):
            # A marginal link, and the rung above has failed on it: every probe costs freezes.
            # (Not for a first climb: a viewer thrown low by an overload must come back.)
            need = max(need, tune.lossy_hold_s)
        if not self.timed and base_loss is not None and base_loss >= tune.lossy_link:
            # A probe that cannot be stopped at once, on a marginal link: it costs this viewer
            # a freeze (measured: 3.2-3.9 s, every 7 s, for an aiortc player on 1.5 Mbit/s
            # with 5 % loss). Seldom, then; a rung it failed waits longer each time.
            need = max(need, tune.lossy_hold_s)
        return need

    def _maybe_up(self, s: Sample) -> Switch | None:
        if not self._clean(s):
            return None
        assert self._started is not None and self._clean_since is not None
        i = self._index()
        held = t_since(s.t, max(self._last_switch, self._started))
        if i == 0 or held < self._up_hold(i) or t_since(s.t, self._clean_since) < 2.0:
            return None
        up = self.ladder[i - 1]
        if self.backoff.is_blocked(up.name, s.t):
            return None  # a probe of it failed not long ago
        remb = self.trend.remb
        if not self.padding and remb is not None and (
                self._room_since is None or t_since(s.t, self._room_since) < 1.0):
            # Without padding the step up is the probe: only where the estimate shows room
            # above what is sent, for a second.
            return None
        said = f"estimate {remb:.0f} kbit/s" if remb is not None else "no estimate"
        reason = f"up: clean for {t_since(s.t, self._clean_since):.0f} s, {said}"
        if self.padding:
            # First pad the link up to the rung's rate (copies of packets already sent, on
            # the retransmission stream): a link that cannot carry it shows at once, and
            # costs a few retransmissions instead of two keyframes and the freezes after
            # (as mediasoup probes before it raises a consumer's layer). Then on to each
            # rung above it not held off: a link that grew back is climbed in one probe.
            stages = [up.name]
            for r in reversed(self.ladder[:i - 1]):
                if self.backoff.is_blocked(r.name, s.t):
                    break
                stages.append(r.name)
            self._probing = (stages, s.t, reason)
            return Switch(s.t, self.current, stages[-1], reason, probe=True)
        return self._step_up(s.t, up.name, reason)

    def _step_up(self, t: float, to: str, reason: str) -> Switch:
        self._last_up = t
        self._probe_base = (self.trend.base_loss or 0.0, self.trend.remb)
        sw = self._switch(t, to, reason)
        self._last_up_ok = True
        self._settle = self.tune.probe_settle_s
        return sw

    def _link_changed(self, t: float) -> bool:
        b = self.backoff
        if b.fail_base is None or not b.blocked:
            return False
        loss, remb = b.fail_base
        base_loss, now_remb = self.trend.base_loss, self.trend.remb
        # Loss judged over a while: a low rung sends few packets, and a few clean reports
        # in a row on a 2 % link are chance, not a better link (measured: it reset the
        # back-off every 15-25 s at 800 kbit/s).
        if (loss >= 0.01 and base_loss is not None and base_loss < loss * 0.3
                and t_since(t, self._last_switch) >= self.tune.link_change_s):
            return True
        return remb is not None and now_remb is not None and now_remb >= remb * 1.3

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

    def probe_failing(self, nacks: int, sent: int) -> bool:
        """Already clear that the probe fails (the glue stops padding at once): NACKs well
        over what the link usually loses (the queue of a link that cannot carry the rung
        fills in a few hundred ms, then drops a third of everything)."""
        return sent >= 10 and nacks - (self.trend.base_nack or 0.0) * sent > max(5.0, 0.1 * sent)

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
        base_nack = self.trend.base_nack or 0.0
        detail = f"NACKs {share * 100:.0f} % of {sent} packets (usually {base_nack * 100:.0f} %)"
        if remb_fell_to is not None:
            detail += f", estimate fell to {remb_fell_to * 100:.0f} %"
        if queue_ms is not None:
            detail += f", round trip +{queue_ms:.0f} ms"
        limit = base_nack + self.tune.probe_nack_margin
        if (sent >= 10 and share > limit) or remb_fell_to is not None or queue_ms is not None:
            self.backoff.pad_failed(to, t, self.tune, cheap=self.timed)
            self._quiet_until = t + self.tune.probe_quiet_s
            self.trend.losses.clear()
            res = ProbeResult(t, to, False, detail)
            self.probes.append(res)
            if held:
                # The stages below it held: up to the best of them.
                carried = held[-1]
                self.backoff.pad_fails.pop(carried, None)
                kbps = self._rung(carried).kbps
                return res, self._step_up(t, carried, f"{reason}, probe at {kbps} kbit/s held, "
                                                      f"at {self._rung(to).kbps}: {detail}")
            return res, None
        res = ProbeResult(t, to, True, detail)
        self.probes.append(res)
        self.backoff.pad_fails.pop(to, None)
        return res, self._step_up(t, to, f"{reason}, probe at {self._rung(to).kbps} kbit/s: {detail}")
