"""Chromium: a replayed clip shows where the drone was then (the record's telemetry track),
and the wall fills a 1920x1080 screen with 1 to 9 feeds plus the map."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drone_sim.flight import Flight
from drone_sim.mavlink import MavlinkSender
from tests.browser import chromium
from tests.e2e.test_ingest import free_port
from tests.helpers import Drone, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("chromium_required")]


async def test_replay_shows_where_the_drone_was(relay_factory: Any, tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory({
        "renditions": [{"name": "low", "height": 240, "bitrate_kbps": 400}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "record": {"enabled": True, "dir": str(tmp_path / "rec"), "segment_s": 2, "min_free_mb": 1},
        "streams": {"d1": {"telemetry": f"mavlink+udp://127.0.0.1:{port}"}},
    })
    flight = Flight(lat=47.0, lon=8.0, speed=12, radius=80, start=time.time())
    sender = MavlinkSender(flight, f"mavlink+udp://127.0.0.1:{port}")
    drone = Drone(f"{relay.url}/whip/d1", size=(640, 360))
    sender.start()
    try:
        rec = relay.services.record
        await wait_for(lambda: len(rec.segments("d1", kind="telemetry")) >= 2, 30, "recorded tracks")
        await asyncio.sleep(2)
        async with chromium(viewport=(1280, 720)) as ctx:
            page = await ctx.new_page()
            await page.goto(f"{relay.url}/view/d1")
            await page.wait_for_function("window.__map && window.__player.stats.frames > 10", timeout=20000)
            await page.click("#back30")
            await page.wait_for_function("window.__replay.playing && window.__replay.track && "
                                         "window.__replay.track.length > 10 && "
                                         "document.getElementById('replay').currentTime > 0.5", timeout=20000)
            await page.wait_for_function("document.getElementById('tele-age').textContent.includes('REPLAY')",
                                         timeout=10000)  # the HUD follows every 200 ms
            got = await page.evaluate("""() => {
                const r = window.__replay, s = r.telemetryAt();
                const at = r.clipStart + document.getElementById('replay').currentTime * 1000;
                const m = window.__map.drones.get('d1').marker.getLatLng();
                const live = window.__player.telemetry[window.__player.telemetry.length - 1];
                return {t: s.t, at, lat: s.lat, lon: s.lon, mlat: m.lat, mlon: m.lng, live_t: live.t,
                        hud: document.getElementById('tele-age').textContent,
                        cls: window.__map.drones.get('d1').marker.getElement().className};
            }""")
            # The replayed frame's sample: measured at or just before the frame on screen,
            # seconds behind the live one, and it is what the map shows.
            assert got["t"] * 1000 <= got["at"] + 1 and got["at"] - got["t"] * 1000 < 1500, got
            assert got["live_t"] - got["t"] > 2, got
            assert "REPLAY" in got["hud"] and "replay" in got["cls"], got
            truth = flight.at(got["t"])
            assert abs(truth["lat"] - got["lat"]) < 3e-6 and abs(got["mlat"] - got["lat"]) < 1e-4, got
            await page.click("#live")
            await page.wait_for_function("!document.getElementById('tele-age').textContent.includes('REPLAY')",
                                         timeout=10000)
            assert "REPLAY" not in await page.text_content("#tele-age")
    finally:
        sender.stop()
        await drone.stop()


@pytest.mark.parametrize("feeds", [1, 4, 9])
async def test_wall_fills_the_screen_with_feeds_and_the_map(relay_factory: Any, feeds: int) -> None:
    names = [f"drone{i}" for i in range(1, feeds + 1)]
    relay = await relay_factory({
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "streams": {n: {"title": f"Drohne {n[-1]}"} for n in names},
    })
    async with aiohttp.ClientSession() as s:
        for i, n in enumerate(names):
            async with s.post(f"{relay.url}/api/streams/{n}/telemetry",
                              json={"lat": 50.0 + i * 0.001, "lon": 8.0, "rel_alt": 60, "battery": 70}) as r:
                assert r.status == 204
    async with chromium(viewport=(1920, 1080)) as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/wall")
        await page.wait_for_function(f"document.querySelectorAll('.tile:not(.maptile)').length === {feeds} "
                                     f"&& window.__map && window.__map.drones.size === {feeds}", timeout=20000)
        await asyncio.sleep(0.5)
        boxes = await page.evaluate("""() => [...document.querySelectorAll('.tile')].map((t) => {
            const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, t.id]; })""")
        scroll = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        await page.screenshot(path=f"/tmp/wall-{feeds}.png")
    assert scroll[0] <= 1920 and scroll[1] <= 1080, scroll  # no scrolling: everything on screen
    feeds_boxes = [b for b in boxes if b[4] != "maptile"]
    mapbox = next(b for b in boxes if b[4] == "maptile")
    for b in boxes:
        assert b[0] >= 0 and b[1] >= 0 and b[2] <= 1920 and b[3] <= 1080, b
    for i, a in enumerate(boxes):  # no two tiles overlap
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] + 1 or b[2] <= a[0] + 1 or a[3] <= b[1] + 1 or b[3] <= a[1] + 1, (a, b)
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    assert area > 0.55 * 1920 * 1080, area / (1920 * 1080)  # the screen is used, not a corner
    w = feeds_boxes[0][2] - feeds_boxes[0][0]
    assert all(abs((b[2] - b[0]) - w) < 2 for b in feeds_boxes)  # same size
    assert (mapbox[3] - mapbox[1]) > 0.8 * (feeds_boxes[0][3] - feeds_boxes[0][1])
