"""The overload governor's first cut falls on the wall: a rendition only wall tiles watch
(``?screen=wall``, as the wall page asks) runs at a third of its frame rate while the
commander's rendition keeps its own; a rendition a commander shares with a tile is not cut.
The governor's decision is tests/test_overload.py's: here it is held at ``tiles_fps`` and the
frames each rendition published are counted over the same source frames (a ratio: it holds
on a loaded machine whatever rate the drone reaches)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.helpers import SMALL, Drone, WhepViewer, start_relay, wait_for

pytestmark = pytest.mark.slow


async def test_a_rendition_only_wall_tiles_watch_is_cut_first() -> None:
    relay = await start_relay({**SMALL, "overload": {"enabled": True, "shed": ["tiles_fps"]}})
    gov = relay.services.governor
    gov.tick = lambda t, wall=None: None  # type: ignore[method-assign]  # (the test sets the level)
    drone = Drone(f"{relay.url}/whip/d1")
    commander = WhepViewer(relay.url, "d1", rendition="high", read_stamps=False)
    tile = WhepViewer(relay.url, "d1", rendition="low", read_stamps=False)
    tile.url += "&screen=wall"
    try:
        await wait_for(lambda: relay.entry("d1") is not None, 15, "the drone publishing")
        await commander.start()
        await tile.start()
        await commander.wait_frames(10, 30)
        await tile.wait_frames(10, 30)
        low, high = relay.entry("d1").renditions["low"], relay.entry("d1").renditions["high"]
        assert low.tiles_only and not high.tiles_only
        screens = {v.rendition: v.tile for v in relay.viewers("d1").values()}
        assert screens == {"high": False, "low": True}
        async with aiohttp.ClientSession() as s, s.get(f"{relay.url}/api/streams/d1/stats") as r:
            doc = await r.json()
        assert sorted(v["screen"] for v in doc["viewers"]) == ["view", "wall"], doc["viewers"]

        def counted() -> tuple[int, int]:
            return low.published, high.published

        def cut(then: tuple[int, int], _: int) -> tuple[int, int]:
            now = counted()
            return now[0] - then[0], now[1] - then[1]

        # Not overloaded: both renditions take every source frame.
        then = counted()
        await wait_for(lambda: cut(then, 0)[1] >= 60, 30, "60 frames on high")
        lo, hi = cut(then, 0)
        assert lo >= 0.8 * hi, (lo, hi)
        # Short of CPU, first step: the wall's rendition at a third, the commander's whole.
        gov.level = 1  # (the governor's decision is tests/test_overload.py's)
        assert gov.tile_divisor() == 3 and gov.fps_divisor() == 1 and "wall tiles" in gov.summary()
        then = counted()
        await wait_for(lambda: cut(then, 0)[1] >= 90, 30, "90 frames on high")
        lo, hi = cut(then, 0)
        assert 0.2 * hi <= lo <= 0.45 * hi, (lo, hi)  # a third (keyframe wishes aside)
        # A commander joins the wall's rendition: it is not the wall's alone, it is not cut.
        second = WhepViewer(relay.url, "d1", rendition="low", read_stamps=False)
        await second.start()
        await second.wait_frames(5, 30)
        assert not low.tiles_only
        then = counted()
        await wait_for(lambda: cut(then, 0)[1] >= 60, 30, "60 more frames on high")
        lo, hi = cut(then, 0)
        assert lo >= 0.8 * hi, (lo, hi)
        await second.close()
    finally:
        await tile.close()
        await commander.close()
        await drone.stop()
        await relay.runner.cleanup()


async def test_a_screen_the_relay_does_not_know_is_refused() -> None:
    """Strict: ``screen`` is "wall" or absent; anything else is a 400 with its reason (the
    value cut short, as text), and no viewer is made."""
    relay = await start_relay()
    viewer = WhepViewer(relay.url, "d1", rendition="low", read_stamps=False)
    viewer.url += "&screen=%3Cb%3Ewall"
    try:
        with pytest.raises(AssertionError, match="WHEP answered 400: screen must be 'wall' or absent"):
            await viewer.start()
        assert relay.viewers("d1") == {}
    finally:
        await viewer.close()
        await relay.runner.cleanup()


async def test_extra_rungs_close_their_viewers_move_down_and_come_back() -> None:
    """The ``rungs`` step: a commander on "high" and another on "low" of one drone — short of
    CPU, "high" closes (no reader left, its encoder idles out), its viewer is moved to "low"
    on the same session (its page told why) and keeps its picture; an auto viewer is capped
    where it is. Given back, the viewer returns to "high"."""
    relay = await start_relay({**SMALL, "overload": {"enabled": True, "shed": ["rungs"]}})
    gov, shed = relay.services.governor, relay.services.rung_shed
    gov.tick = lambda t, wall=None: None  # type: ignore[method-assign]  # (the test sets the level)
    drone = Drone(f"{relay.url}/whip/d1")
    high = WhepViewer(relay.url, "d1", rendition="high", read_stamps=False, channel=True)
    low = WhepViewer(relay.url, "d1", rendition="low", read_stamps=False)
    auto = WhepViewer(relay.url, "d1", read_stamps=False)
    try:
        await wait_for(lambda: relay.entry("d1") is not None, 15, "the drone publishing")
        for v in (high, low, auto):
            await v.start()
            await v.wait_frames(10, 30)
        entry = relay.entry("d1")
        info = {v.rendition: v for v in relay.viewers("d1").values() if not v.auto}
        assert set(info) == {"high", "low"} and shed.applies()
        gov.level = 1  # (the governor's decision is tests/test_overload.py's)
        shed.tick()
        await wait_for(lambda: info["high"].rendition == "low", 15, "the high viewer moved to low")
        assert not entry.renditions["high"].readers  # the rung is closed: nobody reads it
        assert info["high"].rendition_reason.startswith("down: relay short of CPU")
        # The page is told on its channel; the message is on the wire when the relay's state
        # changes, so the test waits for it to arrive.
        await wait_for(lambda: any(m.get("type") == "rendition" for m in high.messages), 10,
                       "the page told of its new rendition")
        said = [m for m in high.messages if m.get("type") == "rendition"]
        assert said[-1]["name"] == "low" and "short of CPU" in said[-1]["reason"], said
        n = high.seen.frames
        await high.wait_frames(n + 30, 20)  # its picture goes on, from the low rung
        autos = [v for v in relay.services.whep.viewers.values() if v.info.auto]
        assert autos and all(v.adapter.ctl.ceiling is not None for v in autos)
        assert not shed.applies() and "fewer qualities" in gov.summary()
        # Given back: the viewer returns to the rung it chose; the auto viewer's cap lifts.
        gov.level = 0
        shed.tick()
        await wait_for(lambda: info["high"].rendition == "high", 15, "the viewer back on high")
        assert all(v.adapter.ctl.ceiling is None for v in autos)
        n = high.seen.frames
        await high.wait_frames(n + 30, 20)
    finally:
        for v in (high, low, auto):
            await v.close()
        await drone.stop()
        await relay.runner.cleanup()
