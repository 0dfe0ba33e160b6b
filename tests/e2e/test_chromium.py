"""Debian's Chromium plays the relay's pages over real WebRTC on loopback."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.browser import chromium
from tests.helpers import RelayHandle, wait_for

pytestmark = [pytest.mark.browser,
              pytest.mark.usefixtures("chromium_required")]


async def test_view_page_decodes_frames_and_reports_latency(live: RelayHandle) -> None:
    async with chromium() as ctx:
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{live.url}/view/drone1")
        await page.wait_for_function("window.__player && window.__player.stats.frames > 30",
                                     timeout=20000)
        f1 = await page.evaluate("window.__player.stats.frames")
        await asyncio.sleep(1.0)
        stats = await page.evaluate("window.__player.stats")
        assert stats["frames"] > f1, "frame counter advances"
        assert stats["state"] == "playing"
        assert stats["codec"] == "video/H264"
        # The burned-in drone stamp is read in the browser: glass-to-glass latency.
        await page.wait_for_function("window.__player.stats.stampsRead > 20", timeout=10000)
        stats = await page.evaluate("window.__player.stats")
        assert stats["kind"] == "glass-to-glass"
        assert 0 < stats["latency"] < 1000, stats
        # The viewer's reports reach the relay: stats endpoint and /metrics.
        await wait_for(lambda: any("latency_ms" in v.report for v in live.viewers("drone1").values()),
                       10, "a latency report")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{live.url}/api/streams/drone1/stats") as r:
                doc = await r.json()
            async with s.get(f"{live.url}/metrics") as r:
                metrics = await r.text()
        reps = [v["report"] for v in doc["viewers"] if "latency_ms" in v["report"]]
        assert reps and all(0 < rep["latency_ms"] < 1000 for rep in reps)
        # The page is on "auto": whichever rendition it plays reports the relay's latency.
        playing = {v["rendition"] for v in doc["viewers"]}
        assert any(doc["relay_latency"][r]["relay_ms"]["p95"] is not None
                   for r in playing if r in doc["relay_latency"]), doc["relay_latency"]
        assert 'relay_viewer_latency_ms{kind="glass-to-glass"' in metrics
        assert "relay_added_latency_ms" in metrics
        assert not errors, errors


async def test_view_page_reconnects_after_relay_drops_session(live: RelayHandle) -> None:
    async with chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(f"{live.url}/view/drone1?rendition=low")
        await page.wait_for_function("window.__player.stats.frames > 10", timeout=20000)
        # The relay ends the viewer's session (as on a network drop): the page comes back.
        whep = live.services.whep
        for s in tuple(whep.sessions.values()):
            await s.close("test drops the session")
        await page.wait_for_function("window.__player.stats.reconnects >= 1", timeout=15000)
        f = await page.evaluate("window.__player.stats.frames")
        await page.wait_for_function(f"window.__player.stats.frames > {f + 20}", timeout=15000)


async def test_index_and_wall_show_every_live_stream(live: RelayHandle) -> None:
    from tests.helpers import Drone

    second = Drone(f"{live.url}/whip/drone2", size=(640, 360))
    try:
        await wait_for(lambda: live.entry("drone2") is not None
                       and live.entry("drone2").frames_in > 5, 15, "drone2 live")
        async with chromium() as ctx:
            page = await ctx.new_page()
            await page.goto(f"{live.url}/")
            await page.wait_for_selector('.card[data-name="drone2"]', timeout=10000)
            names = await page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.name)")
            assert set(names) == {"drone1", "drone2"}
            wall = await ctx.new_page()
            await wall.goto(f"{live.url}/wall")
            await wall.wait_for_function(
                "[...window.__wall.values()].length === 2 && "
                "[...window.__wall.values()].every(t => t.player.stats.frames > 10)", timeout=25000)
            ages = await wall.eval_on_selector_all(".tile .age", "els => els.map(e => e.textContent)")
            assert len(ages) == 2
            await wall.wait_for_function(
                "[...document.querySelectorAll('.tile .age')].every(e => /age \\d+ ms/.test(e.textContent))",
                timeout=15000)
            await wall.screenshot(path="/tmp/wall.png")
    finally:
        await second.stop()


async def test_publish_page_sends_chromium_camera_over_whip(relay: RelayHandle) -> None:
    """Chromium's fake camera, published from /publish/<stream>, reaches an aiortc viewer."""
    from tests.helpers import WhepViewer

    fake = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    async with chromium(fake) as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/publish/phone1?autostart=1")
        await wait_for(lambda: relay.entry("phone1") is not None
                       and relay.entry("phone1").frames_in > 30, 20, "browser feed live")
        doc = (await relay.streams())["phone1"]
        assert doc["state"] == "live" and doc["publisher"]["kind"] == "whip"
        assert doc["width"] > 0 and doc["fps"] > 10
        viewer = WhepViewer(relay.url, "phone1", rendition="low", read_stamps=False)
        await viewer.start()
        try:
            await viewer.wait_frames(20)
        finally:
            await viewer.close()
        await page.click("#stop")
        await wait_for(lambda: relay.entry("phone1").state.value == "lost", 10, "DELETE on stop")
