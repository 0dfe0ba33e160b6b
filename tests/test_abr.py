"""The rendition controller on synthetic traces (no network: it takes samples and a time)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from relay.abr import AbrController, PadProbe, QueueWatch, Rung, Sample

LADDER = [Rung("high", 2500), Rung("mid", 1200), Rung("low", 600), Rung("floor", 250, fps=10)]


def run(ctl: AbrController, samples: list[Sample]) -> list[tuple[float, str]]:
    out = []
    for s in samples:
        sw = ctl.feed(s)
        if sw is not None:
            out.append((s.t, sw.to))
    return out


def steady(t0: float, t1: float, **kw: float) -> list[Sample]:
    return [Sample(t=t0 + i * 0.5, **kw) for i in range(int((t1 - t0) / 0.5))]  # type: ignore[arg-type]


def test_starts_at_the_best_rung_under_the_start_rate() -> None:
    assert AbrController.start_rung(LADDER, 1200) == "mid"
    assert AbrController.start_rung(LADDER, 100) == "floor"


def test_steps_down_within_one_sample_of_the_estimate_falling() -> None:
    # A collapse (under 0.6x what is sent, from far above it within 2 s: the link fell
    # from 5 Mbit/s to 800 kbit/s) is trusted at once: straight to the rung that fits.
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, steady(0, 10, remb_kbps=4000, loss=0.0, fps=30)
                   + steady(10, 16, remb_kbps=800, loss=0.0, fps=30))
    assert switches == [(10.0, "low")] and "estimate 800" in ctl.history[-1].reason
    # The estimate lags the link by a second: its first answer to a collapse is too high.
    # Its further fall under the new rung is followed at once (not after the usual 3 s),
    # and stops where the rung fits.
    ctl = AbrController(LADDER, "high")
    falling = [Sample(t=10.0, remb_kbps=1336, loss=0.0), Sample(t=10.5, remb_kbps=888, loss=0.0),
               Sample(t=11.0, remb_kbps=627, loss=0.0), Sample(t=11.5, remb_kbps=620, loss=0.0)]
    switches = run(ctl, steady(0, 10, remb_kbps=3800, loss=0.0, fps=30) + falling
                   + steady(12, 20, remb_kbps=640, loss=0.0, fps=30))
    assert switches == [(10.0, "mid"), (10.5, "low")], switches
    # The same when the estimate sat low already (it climbs slowly after a step up) and the
    # first step is on loss: its collapse right after the switch is followed at once too.
    ctl = AbrController(LADDER, "high")
    falling = [Sample(t=10.0, remb_kbps=1114, loss=0.14), Sample(t=10.2, remb_kbps=662),
               Sample(t=10.7, remb_kbps=619), Sample(t=11.2, remb_kbps=618)]
    switches = run(ctl, steady(0, 10, remb_kbps=1205, loss=0.0, fps=30) + falling
                   + steady(11.5, 20, remb_kbps=640, loss=0.0, fps=30))
    assert switches == [(10.0, "mid"), (10.7, "low")], switches
    # A milder fall must hold for two samples; then at most half the rate per step, and
    # the next step only once REMB has had time to see the new rate. (Nearer what is
    # sent, the link must show it too: here, loss over what it was.)
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, steady(0, 10, remb_kbps=2600, loss=0.0, fps=30)
                   + steady(10, 12, remb_kbps=1800, loss=0.07, fps=30)
                   + steady(12, 18, remb_kbps=900, loss=0.07, fps=30))
    assert switches[0] == (10.5, "mid") and switches[1][1] == "low" and switches[1][0] >= 13.5
    assert "estimate" in ctl.history[-1].reason
    # A new viewer's first seconds (still connecting, nothing decoded) are no evidence.
    ctl = AbrController(LADDER, "mid")
    assert run(ctl, steady(0, 2.5, fps=0.0, loss=0.0) + steady(2.5, 6, fps=30, loss=0.0)) == []


def link(ctl: AbrController, t0: float, t1: float, capacity: float, loss: float = 0.0) -> list[tuple[float, str]]:
    """A link model: REMB near 1.5x what the viewer gets where the link has room, near the
    capacity's usable share (0.85x, as Chromium's estimate sits on a saturated link) where it
    has not; a rung over the capacity shows heavy loss, a falling estimate and poor decoding."""
    out = []
    t = t0
    while t < t1:
        kbps = next(r.kbps for r in ctl.ladder if r.name == ctl.current)
        over = kbps > capacity
        s = Sample(t=t, remb_kbps=capacity * 0.8 if over else min(1.5 * kbps, capacity * 0.85),
                   loss=0.3 if over else loss, fps=10 if over else 30)
        sw = ctl.feed(s)
        if sw is not None:
            out.append((t, sw.to))
        t += 0.5
    return out


def test_random_loss_alone_does_not_move_a_viewer_that_decodes_well() -> None:
    ctl = AbrController(LADDER, "mid")
    switches = link(ctl, 0, 150, capacity=1500, loss=0.05)
    # It never goes below what fits; it probes "high" (the only way to learn a link has
    # room), and on this lossy link a failed probe is not repeated for 45 s, then 48, 60.
    assert {to for _, to in switches} <= {"high", "mid"}
    probes = [t for t, to in switches if to == "high"]
    assert 2 <= len(probes) <= 4, switches
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert all(g >= 45 for g in gaps) and gaps == sorted(gaps), gaps


def test_probes_only_where_the_estimate_shows_room() -> None:
    # A bar above 1.0x: on "low" over a 1.5 Mbit/s link the estimate shows room (1.5x),
    # on "mid" it does not (0.85 of the capacity is about what mid sends).
    ctl = AbrController(LADDER, "low", hold_s=4, probe_headroom=1.3)
    switches = link(ctl, 0, 60, capacity=1500, loss=0.05)
    assert [to for _, to in switches] == ["mid"], switches
    # A single high estimate is not room: it must hold for a second.
    ctl = AbrController(LADDER, "mid", hold_s=4, probe_headroom=1.3)
    flat = steady(0, 10, remb_kbps=1250, loss=0.0, fps=30)
    spike = [Sample(t=10.0, remb_kbps=3000, loss=0.0, fps=30)]
    assert run(ctl, flat + spike + steady(10.5, 11, remb_kbps=1250, loss=0.0, fps=30)) == []


def test_heavy_loss_or_poor_decoding_steps_down() -> None:
    ctl = AbrController(LADDER, "mid")
    # Heavy loss steps down now; loss that persists on the lower rung steps down again.
    switches = run(ctl, steady(0, 1, loss=0.25, fps=30) + steady(1, 5, loss=0.03, fps=30))
    assert switches == [(0.0, "low")]
    ctl = AbrController(LADDER, "mid")
    assert [to for _, to in run(ctl, steady(0, 5, loss=0.25, fps=30))] == ["low", "floor"]
    ctl = AbrController(LADDER, "mid")
    assert run(ctl, steady(0, 6, remb_kbps=1300, loss=0.01, fps=8))[0][1] == "low"


def test_climbs_one_rung_at_a_time_after_the_hold() -> None:
    ctl = AbrController(LADDER, "floor", hold_s=6, up_hold_s=3)
    switches = link(ctl, 0, 30, capacity=10000)
    assert [to for _, to in switches] == ["low", "mid", "high"]
    # The first step waits for the hold (a new viewer holds its rung); a step up that
    # held lets the next one follow after up_hold_s.
    assert switches[0][0] >= 6 and all(b[0] - a[0] >= 3 for a, b in itertools.pairwise(switches))
    # (each step up waits for the smoothed estimate to show room above the new rung)
    assert switches[-1][0] <= 6 + 2 * 4.5, switches


def test_a_link_that_recovers_resets_the_back_off() -> None:
    # A vehicle in a bad cell: 1.5 Mbit/s with 5 % loss; its probes of "high" fail and the
    # hold grows. Then it drives out: 10 Mbit/s, no loss. It must climb within 10 s.
    ctl = AbrController(LADDER, "mid", hold_s=4, max_hold_s=60)
    link(ctl, 0, 90, capacity=1500, loss=0.05)
    assert ctl.current == "mid" and ctl._hold > 4
    switches = link(ctl, 90, 120, capacity=10000)
    assert switches and switches[0][1] == "high" and switches[0][0] - 90 <= 10, switches


def test_a_failed_probe_blocks_the_rung_then_the_hold_doubles() -> None:
    # A lossy link (3 %): a failed probe blocks the rung for at least 30 s (here; 45 by default).
    ctl = AbrController(LADDER, "low", hold_s=6, probe_fail_hold_s=30, lossy_hold_s=6)
    run(ctl, steady(0, 6.5, remb_kbps=900, loss=0.03, fps=30))
    assert ctl.current == "mid"
    t_up = ctl.history[-1].t
    run(ctl, [Sample(t=t_up + 2, remb_kbps=800, loss=0.5, fps=12)])  # the probe fails
    assert ctl.current == "low" and "probe failed" in ctl.history[-1].reason
    t_down = ctl.history[-1].t
    run(ctl, steady(t_down + 0.5, t_down + 29.5, remb_kbps=900, loss=0.03, fps=30))
    assert ctl.current == "low"  # at least probe_fail_hold_s (30 s) before the next probe
    run(ctl, steady(t_down + 29.5, t_down + 32, remb_kbps=900, loss=0.03, fps=30))
    assert ctl.current == "mid"
    # Failing again and again: the hold doubles past the 30 s floor (6 * 2^3 = 48 s).
    for _ in range(2):
        t_up = ctl.history[-1].t
        run(ctl, [Sample(t=t_up + 2, remb_kbps=800, loss=0.5, fps=12)])
        t_down = ctl.history[-1].t
        for smp in steady(t_down + 0.5, t_down + 60, remb_kbps=900, loss=0.03, fps=30):
            if ctl.feed(smp) is not None:
                break  # the next probe
    gaps = [b.t - a.t for a, b in itertools.pairwise(ctl.history) if a.to == "low" and b.to == "mid"]
    assert gaps[-1] >= 47.5, [(sw.t, sw.to) for sw in ctl.history]
    # A clean link: the failure is a capacity limit that may lift; the hold is 12 s.
    ctl = AbrController(LADDER, "low", hold_s=6)
    run(ctl, steady(0, 6.5, remb_kbps=900, loss=0.0, fps=30))
    t_up = ctl.history[-1].t
    run(ctl, [Sample(t=t_up + 2, remb_kbps=800, loss=0.5, fps=12)])
    t_down = ctl.history[-1].t
    run(ctl, steady(t_down + 0.5, t_down + 14, remb_kbps=900, loss=0.0, fps=30))
    assert ctl.current == "mid" and ctl.history[-1].t - t_down <= 13.5


def test_the_bottom_rung_is_the_floor() -> None:
    ctl = AbrController(LADDER, "floor")
    assert run(ctl, steady(0, 5, remb_kbps=100, loss=0.5, fps=2)) == []


def test_an_estimate_below_the_rung_is_evidence_only_when_it_falls_or_the_link_shows_it() -> None:
    # Chromium's REMB climbs ~10-60 kbit/s a second after a step up, and sits at 0.85x
    # what it receives after any delay spike: below the rung for many seconds on a link
    # that carries it. Alone it is no evidence...
    ctl = AbrController(LADDER, "mid", hold_s=4)
    run(ctl, steady(0, 4.5, remb_kbps=1700, loss=0.0, fps=30))
    assert ctl.current == "high"
    t_up = ctl.history[-1].t
    ramp = [Sample(t=t_up + 0.5 * k, remb_kbps=1400 + 20 * k, loss=0.0, fps=30) for k in range(1, 30)]
    assert run(ctl, ramp) == []
    # ...unless it has just fallen (a link that shrank)...
    t = ramp[-1].t
    fall = [Sample(t=t + 0.5 * k, remb_kbps=1300, loss=0.0, fps=30) for k in range(1, 4)]
    assert [to for _, to in run(ctl, fall)] == ["mid"]
    # ...or the link shows it too: frames decoded late, NACKs or loss above the usual.
    for bad in ({"fps": 22.0}, {"loss": 0.08}, {"nacks": 20, "sent": 100}):
        ctl = AbrController(LADDER, "mid", hold_s=4)
        run(ctl, steady(0, 4.5, remb_kbps=1700, loss=0.0, fps=30))
        t_up = ctl.history[-1].t
        assert run(ctl, steady(t_up + 0.5, t_up + 8, remb_kbps=1400, loss=0.0, fps=30)) == []
        kw = {"remb_kbps": 1400, "loss": 0.0, "fps": 30.0, **bad}
        assert [to for _, to in run(ctl, steady(t_up + 8, t_up + 10, **kw))] == ["mid"], bad


def test_a_padding_probe_comes_before_a_step_up() -> None:
    ctl = AbrController(LADDER, "mid", hold_s=4, padding=True)
    sws = [ctl.feed(smp) for smp in steady(0, 5, remb_kbps=1300, loss=0.05, nacks=3, sent=60, fps=30)]
    probe = next(sw for sw in sws if sw is not None)
    assert probe.probe and probe.to == "high" and ctl.current == "mid" and ctl.probing == "high"
    # It pads to 10 % over the rung: 2750 - what mid sends (unknown here: its budget).
    assert ctl.probe_stages() == [("high", 2750 - 1200)]
    # While it runs, the overload it makes is no evidence against mid...
    assert ctl.feed(Sample(t=5.0, remb_kbps=1000, loss=0.3, nacks=30, sent=60, fps=12)) is None
    # ...the link's usual NACK share (5 %) is no reason to stop; a third of the packets is.
    assert not ctl.probe_failing(3, 60) and ctl.probe_failing(20, 60)
    res, sw = ctl.probe_result(5.3, 20, 60)
    assert not res.ok and sw is None and ctl.current == "mid" and ctl.probing is None
    # The probe's after-effects are quiet, and the rung is held off a little (4 s: a failed
    # padding probe is cheap, and a link that grows must be used soon).
    sws = [ctl.feed(smp) for smp in steady(5.5, 6.5, remb_kbps=1300, loss=0.3, nacks=3, sent=60, fps=30)]
    assert sws == [None, None]
    nxt = [ctl.feed(smp) for smp in steady(6.5, 20, remb_kbps=1300, loss=0.05, nacks=3, sent=60, fps=30)]
    probe = next(sw for sw in nxt if sw is not None)
    assert probe.probe and 5.3 + 4 <= probe.t <= 5.3 + 5, probe
    # Failing again: 2 s more each time, up to 8 s.
    res, _ = ctl.probe_result(probe.t + 0.5, 3, 60, queue_ms=90)
    assert not res.ok and "round trip +90 ms" in res.detail
    nxt = [ctl.feed(smp) for smp in steady(probe.t + 1, probe.t + 20, remb_kbps=1300, loss=0.05,
                                           nacks=3, sent=60, fps=30)]
    again = next(sw for sw in nxt if sw is not None)
    assert again.t - (probe.t + 0.5) >= 6, again
    probe = again
    # A probe the link carries is the step up, at once.
    res, sw = ctl.probe_result(probe.t + 1.3, 3, 60)
    assert res.ok and sw is not None and sw.to == "high" and ctl.current == "high"
    assert "probe at 2500 kbit/s" in sw.reason


def test_a_padding_probe_climbs_several_rungs_and_keeps_what_held() -> None:
    # From "low", a link that grew back: one probe tries mid, then high (not held off).
    ctl = AbrController(LADDER, "low", hold_s=4, padding=True)
    sws = [ctl.feed(smp) for smp in steady(0, 5, remb_kbps=700, loss=0.0, nacks=0, sent=40, fps=30)]
    probe = next(sw for sw in sws if sw is not None)
    assert probe.probe and probe.to == "high" and ctl.probing == "high"
    assert ctl.probe_stages() == [("mid", 1320 - 600), ("high", 2750 - 600)]
    # All of it held: straight to high.
    res, sw = ctl.probe_result(probe.t + 2.8, 0, 200, tried="high")
    assert res.ok and sw is not None and (sw.frm, sw.to) == ("low", "high") and ctl.current == "high"
    # The same, on a link that carries mid but not high: the round trips grew while it
    # padded to high. The step up goes to mid; high is held off, mid is not.
    ctl = AbrController(LADDER, "low", hold_s=4, padding=True)
    sws = [ctl.feed(smp) for smp in steady(0, 5, remb_kbps=700, loss=0.0, nacks=0, sent=40, fps=30)]
    probe = next(sw for sw in sws if sw is not None)
    res, sw = ctl.probe_result(probe.t + 2.0, 1, 150, queue_ms=70, tried="high")
    assert not res.ok and res.to == "high" and "round trip +70 ms" in res.detail
    assert sw is not None and (sw.frm, sw.to) == ("low", "mid") and "held" in sw.reason
    # The next probe from mid waits for high's hold-off (4 s), and tries high alone.
    nxt = [(smp.t, ctl.feed(smp)) for smp in steady(probe.t + 2.5, probe.t + 15, remb_kbps=1300,
                                                      loss=0.0, nacks=0, sent=80, fps=30)]
    t_next, again = next((t, sw) for t, sw in nxt if sw is not None)
    assert again.probe and again.to == "high" and t_next >= probe.t + 2.0 + 4
    assert [n for n, _ in ctl.probe_stages()] == ["high"]
    # A failure in the first stage: no step up at all, mid held off.
    ctl = AbrController(LADDER, "low", hold_s=4, padding=True)
    sws = [ctl.feed(smp) for smp in steady(0, 5, remb_kbps=700, loss=0.0, nacks=0, sent=40, fps=30)]
    probe = next(sw for sw in sws if sw is not None)
    res, sw = ctl.probe_result(probe.t + 1.0, 0, 60, queue_ms=60, tried="mid")
    assert not res.ok and res.to == "mid" and sw is None and ctl.current == "low"
    # While mid is held off, a probe does not start at all (it would have to pass mid).
    assert all(ctl.feed(smp) is None for smp in steady(probe.t + 1.5, probe.t + 4.5, remb_kbps=700,
                                                        loss=0.0, nacks=0, sent=40, fps=30))


def test_freezes_reported_after_a_failed_padding_probe_are_its_own() -> None:
    # The queue a failed probe left (up to ~100 ms) can cost a late frame; the viewer's
    # report of it arrives up to two seconds later. It is the probe's, not the rung's...
    ctl = AbrController(LADDER, "mid", hold_s=4, padding=True)
    sws = [ctl.feed(smp) for smp in steady(0, 5, remb_kbps=1300, loss=0.05, nacks=3, sent=60, fps=30)]
    probe = next(sw for sw in sws if sw is not None)
    res, _ = ctl.probe_result(probe.t + 0.8, 2, 60, queue_ms=80)
    assert not res.ok
    t = probe.t + 1.0
    late = steady(t, t + 2.5, remb_kbps=1300, loss=0.05, nacks=3, sent=60, fps=30)
    late += [Sample(t=t + 2.5, remb_kbps=1300, loss=0.05, nacks=3, sent=60, fps=29, freezes=2)]
    assert run(ctl, late) == [] and ctl.current == "mid"
    # ...while two freezes well after it are the rung's: down.
    t += 8
    bad = [Sample(t=t, remb_kbps=1300, loss=0.05, nacks=3, sent=60, fps=29, freezes=2)]
    assert [to for _, to in run(ctl, bad)] == ["low"] and "2 freezes" in ctl.history[-1].reason


def echoes(watch: QueueWatch, t0: float, t1: float, rtt: float | None, every: float = 0.1) -> None:
    """Echoes sent every ``every`` from t0 to t1, each answered after ``rtt`` (None: lost)."""
    t = t0
    while t < t1 - 1e-9:
        watch.sent(t)
        if rtt is not None:
            watch.answered(t, t + rtt)
        t = round(t + every, 6)


def test_a_queue_stands_when_every_echo_comes_back_late_or_not_at_all() -> None:
    w = QueueWatch()
    echoes(w, 0.0, 5.0, 0.002)  # the link's own round trip: 2 ms
    assert w.base_rtt == pytest.approx(0.002) and w.standing(5.0) is None
    # A keyframe's burst: three echoes late, then the queue has drained.
    echoes(w, 5.0, 5.3, 0.12)
    echoes(w, 5.3, 6.0, 0.003)
    assert w.standing(6.2) is None
    # A lossy link: echoes lost here and there, none late: no queue.
    for k in range(20):
        w.sent(6.0 + 0.1 * k)
        if k % 3:
            w.answered(6.0 + 0.1 * k, 6.0 + 0.1 * k + 0.003)
    assert w.standing(8.2) is None
    # The link fell: a full shaped queue answers ~150 ms late or drops the echo.
    w2 = QueueWatch()
    echoes(w2, 0.0, 5.0, 0.002)
    for k in range(6):
        w2.sent(5.0 + 0.1 * k)
        if k % 2 == 0:
            w2.answered(5.0 + 0.1 * k, 5.0 + 0.1 * k + 0.152)
    assert w2.standing(5.2) is None  # too soon to tell from a burst
    stood = w2.standing(5.75)
    assert stood is not None and stood[0] == 5.0 and abs(stood[1] - 0.150) < 1e-6, stood
    # An echo answered in time ends it; echoes not yet due count neither way.
    w2.sent(5.6)
    assert w2.standing(5.65) is not None
    w2.answered(5.6, 5.605)
    assert w2.standing(5.7) is None


def test_a_standing_queue_with_the_link_delivering_less_steps_down_at_once() -> None:
    # Measured on 5 Mbit/s falling to 800 kbit/s under "high": a queue of +234 ms and
    # 745 kbit/s received while it stood, 0.5 s after the fall, the estimate still 1345.
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, [*steady(0, 10, remb_kbps=3800, loss=0.0, fps=30, sent_kbps=2300),
                         Sample(t=10.0, remb_kbps=3800, loss=0.0, sent_kbps=2300, queue_ms=234, link_kbps=745)])
    assert switches == [(10.0, "low")], switches
    assert "queue +234 ms, link carries 745 kbit/s" in ctl.history[-1].reason
    # The estimate collapsed first (0.5 s after the fall, before the queue had stood long
    # enough): the link's measured rate a moment later is followed at once.
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, [*steady(0, 10, remb_kbps=3800, loss=0.0, fps=30, sent_kbps=2300),
                         Sample(t=10.0, remb_kbps=1219, sent_kbps=2176),
                         Sample(t=10.1, remb_kbps=1219, sent_kbps=1500, queue_ms=172, link_kbps=672)])
    assert switches == [(10.0, "mid"), (10.1, "low")], switches
    # The same after a step on the estimate's milder fall (two samples under what is sent,
    # a third down from its high; replayed from a run: 3739 -> 1518 -> 1280 kbit/s, then
    # the queue's rate 665 kbit/s 0.2 s later).
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, [*steady(0, 10, remb_kbps=3700, loss=0.0, fps=30, sent_kbps=2335),
                         Sample(t=10.0, remb_kbps=1518, sent_kbps=1500),
                         Sample(t=10.1, remb_kbps=1280, sent_kbps=624),
                         Sample(t=10.3, remb_kbps=1280, sent_kbps=1906, queue_ms=351, link_kbps=665)])
    assert switches == [(10.1, "mid"), (10.3, "low")], switches
    # The media gets only part of a full link (retransmissions, headers, the echoes share
    # it): 585 kbit/s of media measured on another run of the same 800 kbit/s link is "low".
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, [*steady(0, 10, remb_kbps=3800, loss=0.0, fps=30, sent_kbps=2300),
                         Sample(t=10.0, remb_kbps=1300, sent_kbps=2300, queue_ms=331, link_kbps=585)])
    assert switches == [(10.0, "low")], switches
    # Not in a viewer's first seconds (its first echoes may have queued already, its first
    # receiver reports count what it missed while connecting): measured 462 kbit/s "on" an
    # 800 kbit/s link 1.8 s after a viewer began.
    start = [Sample(t=0.0, remb_kbps=700, sent_kbps=600),
             Sample(t=1.8, remb_kbps=700, sent_kbps=600, queue_ms=126, link_kbps=462)]
    assert run(AbrController(LADDER, "low"), start) == []
    assert run(AbrController(LADDER, "low", warmup_s=0.0), start) == [(1.8, "floor")]  # later: it counts
    # A keyframe draining through a link that carries the rung: the queue stands a while,
    # but the viewer receives all it is sent. No switch.
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, steady(0, 10, remb_kbps=3800, loss=0.0, fps=30, sent_kbps=2300)
                   + steady(10, 12, remb_kbps=3800, loss=0.0, fps=30, sent_kbps=2300, queue_ms=120,
                            link_kbps=2600))
    assert switches == []
    # After the step the queue of the old rung drains: received at the link's rate, which
    # carries the new rung: no second step. A link that carries less still gets one, at once.
    ctl = AbrController(LADDER, "high")
    switches = run(ctl, [*steady(0, 10, remb_kbps=3800, loss=0.0, fps=30, sent_kbps=2300),
                         Sample(t=10.0, remb_kbps=3800, sent_kbps=2300, queue_ms=150, link_kbps=1300),
                         Sample(t=10.5, remb_kbps=3800, sent_kbps=1200, queue_ms=150, link_kbps=1250),
                         Sample(t=11.0, remb_kbps=2900, sent_kbps=1200, queue_ms=150, link_kbps=700),
                         Sample(t=11.5, remb_kbps=900, sent_kbps=600, queue_ms=60, link_kbps=690)])
    assert switches == [(10.0, "mid"), (11.0, "low")], switches


STAGES = [("mid", 700.0), ("high", 2100.0)]  # from "low" at 600 kbit/s: padding to each rung


def test_a_padding_probe_ramps_each_stage_then_holds_then_the_next() -> None:
    p = PadProbe(list(STAGES), pad_s=1.2, ramp_s=0.6)
    assert p.rate_kbps(0.0) == 0.0 and p.rate_kbps(0.3) == pytest.approx(350)
    assert p.rate_kbps(0.6) == pytest.approx(700) and p.rate_kbps(1.1) == pytest.approx(700)
    # Stage two ramps from the first stage's rate, then the padding ends (the tail).
    assert p.rate_kbps(1.2) == pytest.approx(700) and p.tried == "high"
    assert p.rate_kbps(1.5) == pytest.approx(1400) and p.rate_kbps(2.3) == pytest.approx(2100)
    assert p.rate_kbps(2.4) is None and p.tried == "high" and not p.stop(2.5)


def test_a_padding_probe_stops_on_a_queue_and_blames_the_right_stage() -> None:
    # Round trips over the baseline (2-6 ms: spread 4 ms, so 29 ms over 2 ms) in stage two,
    # 0.5 s after it began: "high" failed, "mid" held.
    p = PadProbe(list(STAGES))
    p.baseline([0.002, 0.006, 0.003])
    assert p.queue_at == pytest.approx(0.029)
    for t in (0.5, 1.0, 1.2):
        p.rate_kbps(t)
        p.round_trips([0.003, 0.004])
        assert not p.stop(t)
    p.rate_kbps(1.7)
    p.round_trips([0.003, 0.040, 0.052])
    assert p.stop(1.7) and p.tried == "high" and p.queue_s == pytest.approx(0.038)
    # The same queue 0.1 s into stage two is the first stage's (it showed late).
    p = PadProbe(list(STAGES))
    p.baseline([0.002, 0.006, 0.003])
    p.rate_kbps(1.2)
    p.rate_kbps(1.3)
    p.round_trips([0.040, 0.052])
    assert p.stop(1.3) and p.tried == "mid"
    # Without round trips the estimate decides; one made in the first 150 ms is no evidence.
    p = PadProbe(list(STAGES[:1]), remb0=1_000_000)
    p.estimate(0.1, 500_000)
    assert not p.stop(0.1)
    p.estimate(0.4, 900_000)
    assert p.stop(0.4) and p.fell_to == pytest.approx(0.9)
    # With round trips timed, a falling estimate alone does not stop it (it also falls on a
    # free link settling after a change); NACKs do.
    p = PadProbe(list(STAGES[:1]), remb0=1_000_000)
    p.baseline([0.002])
    p.estimate(0.4, 800_000)
    assert not p.stop(0.4) and p.fell_to is None
    assert p.stop(0.5, nacks_failing=True) and p.tried == "mid"


def test_the_floor_climbs_back_through_a_lossy_links_usual_loss() -> None:
    """Thrown to the floor (10 fps) by a burst on a link that always loses ~5 %: its thin
    evidence (one late frame is a 200 ms "freeze"; 2 s of it is ~50 packets, where 5 %
    loss reads 12 % one window in four) must not keep it there for ever. Before: never a
    step up in 60 s of this trace."""
    ctl = AbrController(LADDER, "mid")
    # The link's usual loss, learned on "mid" (clean for the controller: under 10 %).
    warm = steady(0, 10, remb_kbps=1150, loss=0.05, nacks=3, sent=60, fps=30)
    burst = steady(10, 12, remb_kbps=1150, loss=0.3, nacks=20, sent=60, fps=5, freezes=2)
    floor = []
    for i, t in enumerate(x * 0.5 for x in range(24, 120)):
        floor.append(Sample(t=t, remb_kbps=1150, loss=0.12 if i % 4 == 0 else 0.04, nacks=1, sent=12,
                            fps=10, freezes=1 if i % 6 == 0 else 0))
    switches = run(ctl, warm + burst + floor)
    assert switches[0][1] in ("low", "floor"), switches
    downs = [s for s in switches if s[1] == "floor"]
    assert downs, switches
    ups = [s for s in switches if s[0] > downs[0][0] and s[1] != "floor"]
    assert ups, switches  # it tried to climb back (padding off: a plain step up)


def test_report_queue_stands_on_two_late_receiver_reports() -> None:
    """A player without the echo channel: its receiver reports' round trips (each answers a
    sender report that crossed the link's queue) tell a standing queue — two running late,
    the newest fresh — and since when; one late report (a keyframe's burst) does not."""
    from relay.abr import ReportQueue

    q = ReportQueue()
    for i in range(10):
        q.report(float(i), 0.040 + 0.002 * (i % 3))
    assert q.standing(9.5) is None and q.base_rtt == 0.040
    q.report(10.0, 0.180)  # one late: a burst
    assert q.standing(10.2) is None
    q.report(11.0, 0.210)
    since, depth = q.standing(11.2) or (None, None)
    assert since == 10.0 - 0.180 and depth is not None and abs(depth - 0.170) < 1e-9
    assert q.standing(14.0) is None  # no report for 3 s: nothing fresh to judge by
    q.report(14.1, 0.045)  # drained
    assert q.standing(14.2) is None


def test_a_viewer_without_the_echo_channel_probes_a_lossy_link_seldom() -> None:
    """A WHEP player we did not write: its padding probe cannot be stopped at the first sign
    (no echo channel), and on a lossy link each costs it a freeze. It waits lossy_hold_s
    before the first probe, and each failure doubles the wait (up to max_hold_s); on a
    clean link it climbs as the page does."""
    def first_probe(ctl: AbrController, t0: float, t1: float, loss: float) -> Any:
        for smp in steady(t0, t1, remb_kbps=1300, loss=loss, nacks=int(60 * loss), sent=60):
            sw = ctl.feed(smp)
            if sw is not None:
                return sw
        return None

    page = AbrController(LADDER, "mid", hold_s=4, padding=True)
    player = AbrController(LADDER, "mid", hold_s=4, padding=True)
    player.timed = False
    p_page, p_player = first_probe(page, 0, 60, 0.05), first_probe(player, 0, 60, 0.05)
    assert p_page is not None and p_page.t < 6, p_page
    assert p_player is not None and p_player.probe and p_player.t >= 20, p_player
    waits = []
    t = p_player.t
    for _ in range(3):
        res, _sw = player.probe_result(t + 1.3, 20, 60)
        assert not res.ok
        nxt = first_probe(player, t + 1.5, t + 200, 0.05)
        assert nxt is not None
        waits.append(nxt.t - (t + 1.3))
        t = nxt.t
    assert waits[0] >= 20 and waits[1] >= 40 and 60 <= waits[2] <= 62, waits  # doubling, to max_hold_s
    clean = AbrController(LADDER, "mid", hold_s=4, padding=True)
    clean.timed = False
    p_clean = first_probe(clean, 0, 60, 0.0)
    assert p_clean is not None and p_clean.t < 6, p_clean  # a clean link: no reason to wait


def test_a_cap_moves_the_viewer_down_and_holds_it_there_until_lifted() -> None:
    """The relay short of CPU closes a stream's extra rungs: an auto viewer above the cap is
    moved down to it, never climbs past it however clean its link, and climbs as ever once
    the cap is lifted."""
    ladder = [Rung("high", 2500, 30), Rung("mid", 1200, 30), Rung("low", 300, 15)]
    ctl = AbrController(ladder, "high")
    sw = ctl.cap("low", 10.0)
    assert sw is not None and (sw.frm, sw.to) == ("high", "low") and "short of CPU" in sw.reason
    assert ctl.current == "low" and [r.name for r in ctl.ladder] == ["low"]
    assert ctl.cap("low", 11.0) is None  # (already there)
    # a minute of a clean link with room: no step up past the cap
    assert run(ctl, steady(12, 72, remb_kbps=6000, loss=0.0, fps=30)) == []
    assert ctl.current == "low"
    ctl.cap(None, 72.0)
    assert [r.name for r in ctl.ladder] == ["high", "mid", "low"]
    climbed = []
    for s in steady(72, 200, remb_kbps=6000, loss=0.0, fps=30):
        sw = ctl.feed(s)
        if sw is not None and sw.probe:
            _, sw = ctl.probe_result(s.t, 0, 100)
        if sw is not None:
            climbed.append(sw.to)
    assert climbed and ctl.current != "low", ctl.history
