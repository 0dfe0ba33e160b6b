"""Chromium shows where the drone is: the marker moves on the map with the frame on screen,
the footprint polygon covers what the camera sees, a click on the picture gives the ground
point, a silent autopilot shows STALE; the wall puts every drone on one map."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from typing import Any

import aiohttp
import pytest

from drone_sim.flight import Flight
from drone_sim.mavlink import MavlinkSender
from tests.browser import chromium
from tests.e2e.test_ingest import free_port
from tests.e2e.test_telemetry import tele_config
from tests.helpers import Drone, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("chromium_required")]
INCIDENT = (52.3906, 13.0645)


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dn = (a[0] - b[0]) * 111320
    de = (a[1] - b[1]) * 111320 * math.cos(math.radians(a[0]))
    return math.hypot(dn, de)


def inside(p: tuple[float, float], poly: list[tuple[float, float]]) -> bool:
    x, y, hit = p[1], p[0], False
    for (ay, ax), (by, bx) in zip(poly, poly[1:] + poly[:1], strict=True):
        if (ay > y) != (by > y) and x < (bx - ax) * (y - ay) / (by - ay) + ax:
            hit = not hit
    return hit


async def test_map_marker_footprint_click_and_stale(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(tele_config(port))
    flight = Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10, start=time.time())
    sender = MavlinkSender(flight, f"mavlink+udp://127.0.0.1:{port}")
    drone = Drone(f"{relay.url}/whip/d1", size=(640, 360))
    drone2 = Drone(f"{relay.url}/whip/d2", size=(320, 240))
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        sender.start()
        async with chromium(viewport=(1280, 720)) as ctx:
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{relay.url}/view/d1")
            await page.wait_for_function("window.__map && window.__map.drones.get('d1') && "
                                         "window.__player.stats.frames > 10", timeout=20000)
            # geo.js on a case worked by hand: straight down from 100 m with a 90° x 90° view
            # sees 100 m to each side.
            corners = await page.evaluate("""async () => {
                const g = await import('/static/geo.js');
                return g.footprint({lat: 50, lon: 8, rel_alt: 100, gimbal_pitch: -90, gimbal_yaw: 0,
                                    hfov: 90, vfov: 90});
            }""")
            assert corners is not None
            for (lat, lon), (e, n) in zip(corners, ((-100, 100), (100, 100), (100, -100), (-100, -100)),
                                          strict=True):
                assert abs((lat - 50) * 111320 - n) < 0.5 and abs((lon - 8) * 111320 * math.cos(math.radians(50)) - e) < 0.5
            where = "() => { const d = window.__map.drones.get('d1'); const p = d.marker.getLatLng(); " \
                    "return {p: [p.lat, p.lng], foot: d.foot.getLatLngs()[0].map((q) => [q.lat, q.lng])}; }"
            a = await page.evaluate(where)
            await asyncio.sleep(2.0)
            b = await page.evaluate(where)
            moved = metres(tuple(a["p"]), tuple(b["p"]))
            assert 5 < moved < 60, moved  # 10 m/s for about 2 s (more on a busy machine), along the orbit
            assert abs(metres(tuple(b["p"]), INCIDENT) - 100) < 3  # on the orbit
            foot = [tuple(q) for q in b["foot"]]
            assert len(foot) == 4 and inside(INCIDENT, foot), foot  # the camera looks at the incident
            assert not inside(tuple(b["p"]), foot)  # oblique view: not below the drone
            # The HUD and the map show the sample of the frame on screen, not the newest packet.
            shown = await page.evaluate("() => [window.__player.telemetryShown().t * 1000, "
                                        "window.__player.shownCaptureMs, "
                                        "window.__player.telemetry[window.__player.telemetry.length - 1].t * 1000]")
            assert shown[0] <= shown[1] + 1 and shown[1] - shown[0] < 1000, shown
            assert "N" in await page.text_content("#tele-pos")
            # A click in the middle of the picture: the ground point the camera centre sees.
            box = await page.locator("#video").bounding_box()
            assert box is not None
            await page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            await page.wait_for_selector("#groundinfo:not([hidden])", timeout=5000)
            ground = await page.evaluate("() => window.__ground")
            assert metres(tuple(ground), INCIDENT) < 3, ground
            assert "52.390" in await page.text_content("#ground-text")
            # The autopilot goes quiet: STALE on the HUD and the marker, no footprint.
            sender.stop()
            await page.wait_for_selector("#tele.stale", timeout=8000)
            assert "STALE" in await page.text_content("#tele-age")
            assert await page.evaluate("() => window.__map.drones.get('d1').marker.getElement()"
                                       ".classList.contains('stale')")
            assert await page.evaluate("() => window.__map.drones.get('d1').foot.getLatLngs()[0].length") == 0
            # The wall: every drone on one map (d2 reports over HTTP).
            async with aiohttp.ClientSession() as s, s.post(
                f"{relay.url}/api/streams/d2/telemetry",
                json={"lat": INCIDENT[0] + 0.002, "lon": INCIDENT[1], "rel_alt": 40, "battery": 55}) as r:
                assert r.status == 204
            wall = await ctx.new_page()
            await wall.goto(f"{relay.url}/wall")
            await wall.wait_for_function("window.__map && window.__map.drones.size === 2", timeout=15000)
            # (d2 reported once: under load the wall may open after it went stale; report again)
            async with aiohttp.ClientSession() as s, s.post(
                f"{relay.url}/api/streams/d2/telemetry",
                json={"lat": INCIDENT[0] + 0.002, "lon": INCIDENT[1], "rel_alt": 40, "battery": 55}) as r:
                assert r.status == 204
            await wall.wait_for_function("document.querySelector('#grid').textContent.includes('bat 55 %')",
                                         timeout=10000)
            text = await wall.text_content("#grid")
            assert "bat 55 %" in text and "TELEMETRY STALE" in text
            assert not errors, errors
    finally:
        sender.stop()
        await drone.stop()
        await drone2.stop()


async def test_tiles_from_the_configured_server_only(relay_factory: Any) -> None:
    """With a tile server configured the map fetches tiles from it (the CSP allows exactly that
    origin, and Chromium enforces it here); without one, the page asks nothing of anyone."""
    from aiohttp import web

    hits: list[str] = []
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5d2e2b30000000049454e44ae426082")

    async def tile(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=png, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{z}/{x}/{y}.png", tile)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    tiles = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        for tile_url in (f"{tiles}/{{z}}/{{x}}/{{y}}.png", ""):
            hits.clear()
            relay = await relay_factory({
                "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
                "webrtc": {"ice_addresses": ["127.0.0.1"]},
                "telemetry": {"tile_url": tile_url, "tile_attribution": "Tiles: <b>test</b>"},
                "streams": {"d1": {}},
            })
            async with aiohttp.ClientSession() as s:
                async with s.post(f"{relay.url}/api/streams/d1/telemetry",
                                  json={"lat": 50.1, "lon": 8.6, "rel_alt": 50}) as r:
                    assert r.status == 204
                async with s.get(f"{relay.url}/view/d1") as r:
                    csp = r.headers["Content-Security-Policy"]
            assert (f"img-src 'self' {tiles} " in csp) == bool(tile_url), csp
            async with chromium(viewport=(1280, 720), bypass_csp=False) as ctx:
                page = await ctx.new_page()
                requests: list[str] = []
                page.on("request", lambda req, seen=requests: seen.append(req.url))
                violations: list[str] = []
                page.on("console", lambda m, v=violations: v.append(m.text)
                        if "Content Security Policy" in m.text else None)
                await page.goto(f"{relay.url}/view/d1")
                for _ in range(100):
                    if await page.evaluate("() => Boolean(window.__map)"):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.5)
                attribution = await page.evaluate(
                    "() => { const a = document.querySelector('.leaflet-control-attribution'); "
                    "return a ? [a.textContent, a.querySelectorAll('b').length] : null; }")
            foreign = [u for u in requests if not u.startswith(relay.url)]
            if tile_url:
                assert hits and all(u.startswith(tiles) for u in foreign), foreign
                assert not violations, violations
                assert attribution is not None and "<b>test</b>" in attribution[0] and attribution[1] == 0
            else:
                assert not hits and not foreign, foreign
                assert attribution is None  # no tiles, no attribution control
    finally:
        await runner.cleanup()
