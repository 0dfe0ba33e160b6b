"""The overload governor alone, on a fake clock: sheds in the declared order after sustained
lateness, gives back one step after calm, waits longer after a step back that came too soon."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from relay.config import parse
from relay.overload import CALM_S, Governor
from relay.registry import Registry
from relay.sources.rtmp_video import RtmpPublisher


def late_tick(g: Governor, t: float) -> None:
    g.skipped(5)
    g.tick(t)


def test_sheds_in_order_and_recovers_step_by_step(caplog: pytest.LogCaptureFixture) -> None:
    g = Governor(("fps_half", "overlay", "fps_third"))
    caplog.set_level(logging.INFO, "relay.overload")
    g.tick(0.0)
    assert g.level == 0 and g.fps_divisor() == 1 and g.overlay()
    late_tick(g, 1.0)
    assert g.level == 0  # one late second is not yet overload
    late_tick(g, 2.0)
    assert g.level == 1 and g.fps_divisor() == 2 and g.overlay() and g.since is not None
    assert g.doc()["shed"] == ["transcoded renditions at half frame rate"] and g.doc()["overloaded"]
    late_tick(g, 3.0)
    late_tick(g, 4.0)
    assert g.level == 2 and not g.overlay()
    g.loop_lag(0.3)  # the event loop's own lag is lateness too
    g.tick(5.0)
    g.loop_lag(0.3)
    g.tick(6.0)
    assert g.level == 3 and g.fps_divisor() == 3
    late_tick(g, 7.0)
    late_tick(g, 8.0)
    assert g.level == 3  # nothing more to shed
    t = 9.0
    while g.level and t < 200:
        g.tick(t)
        t += 1.0
    assert g.level == 0 and g.since is None and g.fps_divisor() == 1
    assert t >= 9.0 + 3 * CALM_S  # one step back per calm period
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0] == "relay overloaded: shedding fps_half" and msgs[-1] == "relay no longer overloaded"


def test_a_step_back_too_soon_doubles_the_calm_needed() -> None:
    g = Governor(("fps_half",))
    late_tick(g, 0.0)
    late_tick(g, 1.0)
    assert g.level == 1
    t = 2.0
    while g.level:
        g.tick(t)
        t += 1.0
    late_tick(g, t)
    late_tick(g, t + 1)
    assert g.level == 1 and g.calm_needed == 2 * CALM_S


def test_an_empty_order_never_sheds() -> None:
    g = Governor(())
    for t in range(10):
        late_tick(g, float(t))
    assert g.level == 0 and g.skipped_total == 50 and not g.doc()["overloaded"]


def test_frames_encoded_late_are_lateness_when_they_are_a_share_of_the_tick() -> None:
    """Before any queue skips, frames leaving the encoders over LATE_FRAME_S after arrival are
    lateness, once they are a fifth of the tick's frames (a lone slow frame is not)."""
    from relay.overload import LATE_FRAME_S

    g = Governor(("fps_half",))
    for t in (0.0, 1.0, 2.0):
        for i in range(30):
            g.encoded(LATE_FRAME_S * (2 if i == 0 else 0.5))  # one late frame in 30
        g.tick(t)
    assert g.level == 0
    for t in (3.0, 4.0):
        for i in range(30):
            g.encoded(LATE_FRAME_S * (2 if i < 8 else 0.5))  # 8 in 30
        g.tick(t)
    assert g.level == 1 and g.evidence["late_frames"] == 8


def _publisher(keys_only: bool) -> RtmpPublisher:
    entry = Registry(parse({}, env={})).get_or_create("d1")
    entry.keyframes_only = lambda: keys_only
    return RtmpPublisher(entry, "s", asyncio.new_event_loop())


@pytest.mark.parametrize("interval,shed", [(2.0, True), (10.0, False), (None, False)])
def test_decoding_shed_to_keyframes_only_where_keyframes_come_regularly(interval: float | None,
                                                                          shed: bool) -> None:
    """The governor's last step: a drone whose keyframes come at least every 2.5 s is decoded
    at its keyframes only (its inter frames need what was skipped); an intra-refresh drone
    (no regular keyframes) never is. After the shed, decoding resumes at a keyframe."""
    pub = _publisher(True)
    try:
        pub.key_interval_s = interval
        assert pub._shed(True) is False  # keyframes always decode
        assert pub._shed(False) is shed
        pub.entry.keyframes_only = lambda: False  # the shed ends...
        assert pub._shed(False) is shed  # ...and decoding resumes at a keyframe
        assert pub._shed(True) is False and pub._shed(False) is False
        assert pub.shed == (2 if shed else 0)
    finally:
        pub.close()
        pub.loop.close()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_cpu_the_kernel_withheld_is_read_from_the_cgroup_and_is_lateness(tmp_path: Any,
                                                                              version: str) -> None:
    """A relay held to a CPU share is stopped whole when the share is spent: no stamp inside
    it sees that, its cgroup's throttled time does (v1 ns, v2 µs); 5 % of a second is late."""
    from relay.overload import THROTTLED_LATE, Throttling

    if version == "v2":
        (tmp_path / "proc").write_text("0::/relay.slice\n")
        stat = tmp_path / "root" / "relay.slice" / "cpu.stat"
        line = "throttled_usec {}\n"
        scale = 1e6
    else:
        (tmp_path / "proc").write_text("5:memory:/x\n4:cpu,cpuacct:/relay\n")
        stat = tmp_path / "root" / "cpu,cpuacct" / "relay" / "cpu.stat"
        line = "throttled_time {}\n"
        scale = 1e9
    stat.parent.mkdir(parents=True)
    stat.write_text("nr_periods 10\n" + line.format(int(0.25 * scale)))
    t = Throttling(str(tmp_path / "proc"), str(tmp_path / "root"))
    assert t.path == stat and t.seconds() == pytest.approx(0.25)
    assert Throttling(str(tmp_path / "nothing")).seconds() is None  # no cgroup: no figure
    g = Governor(("fps_half",))
    for tick in (0.0, 1.0):
        g.throttled(THROTTLED_LATE / 2)
        g.tick(tick)
    assert g.level == 0
    for tick in (2.0, 3.0):
        g.throttled(THROTTLED_LATE * 2)
        g.tick(tick)
    assert g.level == 1 and g.evidence["throttled"] == pytest.approx(THROTTLED_LATE * 2)


def test_the_hud_line_says_what_is_shed_in_a_few_words() -> None:
    g = Governor(("fps_half", "overlay", "fps_third", "fps_sixth", "keyframes"))
    assert g.summary() == "" and g.doc()["summary"] == ""
    for t in range(10):
        late_tick(g, float(t))
    assert g.level == 5
    assert g.summary() == "frame rate cut to 1/6, no overlay, drones decoded at keyframes only"


def test_a_step_is_given_back_only_where_the_cpu_it_costs_is_there(caplog: pytest.LogCaptureFixture) -> None:
    """The cost of a step is learned when it is shed (the CPU before against the CPU once
    settled): a relay at its limit that shed its way down to a third of it does not give the
    step back while the load is the same (it would be late again at once); when the load
    halves, the same step fits under HEADROOM and is given back after the calm."""

    caplog.set_level(logging.INFO, "relay.overload")
    g = Governor(("keyframes",))
    for t in (0.0, 1.0):
        g.cpu(1.0)  # at the cgroup's limit, and late
        late_tick(g, t)
    assert g.level == 1
    t = 2.0
    while t < 2.0 + 4 * CALM_S:  # the same load: a third of the CPU, calm
        g.cpu(0.34)
        g.tick(t)
        t += 1.0
    assert g.level == 1 and g.holding and g.doc()["holding"]
    assert any("keeps keyframes shed" in r.getMessage() for r in caplog.records)
    g.cpu(0.2)  # half the drones gone: 0.2 / 0.34 of the core after the step back
    g.tick(t)
    assert g.level == 0 and not g.holding


def test_without_a_cpu_figure_the_calm_alone_decides() -> None:
    g = Governor(("fps_half",))
    late_tick(g, 0.0)
    late_tick(g, 1.0)
    t = 2.0
    while g.level and t < 2.0 + 3 * CALM_S:
        g.tick(t)
        t += 1.0
    assert g.level == 0 and t <= 2.0 + CALM_S + 2


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_cores_a_relay_may_use_are_its_cgroups_quota(tmp_path: Any, version: str) -> None:
    from relay.overload import Throttling

    if version == "v2":
        (tmp_path / "proc").write_text("0::/relay.slice\n")
        d = tmp_path / "root" / "relay.slice"
        d.mkdir(parents=True)
        (d / "cpu.max").write_text("50000 100000\n")
    else:
        (tmp_path / "proc").write_text("4:cpu,cpuacct:/relay\n")
        d = tmp_path / "root" / "cpu,cpuacct" / "relay"
        d.mkdir(parents=True)
        (d / "cpu.cfs_quota_us").write_text("50000\n")
        (d / "cpu.cfs_period_us").write_text("100000\n")
    (d / "cpu.stat").write_text("throttled_time 0\nthrottled_usec 0\n")
    assert Throttling(str(tmp_path / "proc"), str(tmp_path / "root")).cores() == pytest.approx(0.5)
    (d / ("cpu.max" if version == "v2" else "cpu.cfs_quota_us")).write_text(
        "max 100000\n" if version == "v2" else "-1\n")
    import os
    assert Throttling(str(tmp_path / "proc"), str(tmp_path / "root")).cores() == len(os.sched_getaffinity(0))


def test_a_held_step_is_tried_again_after_a_long_hold() -> None:
    """A cost learned long ago may be wrong (the load changed in a way the ratio does not
    show): after HOLD_RETRY_S of holding the step is given back anyway, and re-learned."""
    from relay.overload import HOLD_RETRY_S

    g = Governor(("fps_half",))
    for t in (0.0, 1.0):
        g.cpu(1.0)
        late_tick(g, t)
    t = 2.0
    while g.level and t < 2.0 + CALM_S + HOLD_RETRY_S + 5:
        g.cpu(0.9)
        g.tick(t)
        t += 1.0
    assert g.level == 0 and t > 2.0 + CALM_S + HOLD_RETRY_S - 1


def test_the_wall_cut_is_said_only_where_a_tile_watches() -> None:
    """``tiles_fps`` shed while no wall tile watches alone is shed with the next step; the
    HUD's line then does not speak of wall tiles (a phone once read "wall tiles at 1/3 frame
    rate" on a relay without a wall)."""
    g = Governor(("tiles_fps", "fps_half"))
    tiles = False
    g.applies = lambda step: tiles or step != "tiles_fps"
    late_tick(g, 0.0)
    late_tick(g, 1.0)
    assert g.level == 2 and g.summary() == "frame rate cut to 1/2"
    tiles = True
    assert g.summary() == "wall tiles at 1/3 frame rate, frame rate cut to 1/2"


def test_the_rungs_that_stay_are_another_relays_and_the_lowest_a_person_watches() -> None:
    from relay.egress.shed import Watching, rung_plan

    ladder = {"high": (2500, "h264"), "mid": (1200, "h264"), "low": (300, "h264"), "vp8": (800, "vp8")}
    w = [Watching("a", "high", False), Watching("b", "mid", False), Watching("c", "low", False),
         Watching("centre", "mid", True), Watching("d", "vp8", False), Watching("e", "source", False)]
    # the forward's rung (mid) and the lowest a person watches (low) stay; a person on high goes
    # to the best staying rung below it; another codec is its own group; the source is untouched
    assert rung_plan(ladder, w) == {"a": "mid"}
    assert rung_plan(ladder, [x for x in w if x.session != "centre"]) == {"a": "low", "b": "low"}
    assert rung_plan(ladder, [Watching("centre", "high", True), Watching("x", "high", True)]) == {}
    assert rung_plan(ladder, [Watching("a", "low", False), Watching("centre", "high", True),
                              Watching("b", "mid", False)]) == {"b": "low"}
