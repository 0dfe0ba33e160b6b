"""Chromium: a commander places a marker by clicking on the live picture; another viewer (a
phone) sees it within a second on its map and in its picture, at the pixel where the
footprint of its frame on screen projects the ground point, and still there 10 s later
after the drone has flown on; the wall shows it in drone 2's picture where the two
footprints overlap; replay shows it after it was removed; a label with HTML stays text
under the enforced CSP."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from drone_sim.flight import Flight
from drone_sim.mavlink import MavlinkSender
from relay.geo import picture_point
from tests.browser import chromium
from tests.e2e.test_ingest import free_port
from tests.helpers import Drone, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("chromium_required")]
INCIDENT = (52.3906, 13.0645)
# What the page drew for a marker at its last draw, with the sample and sizes it drew with.
DRAWN = """(id) => (window.__marks ? window.__marks.marks.drawn : []).find((x) => x.id === id) || null"""


def config(ports: list[int], tmp_path: Path) -> dict[str, Any]:
    return {
        "renditions": [{"name": "low", "height": 360, "bitrate_kbps": 600}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "record": {"enabled": True, "dir": str(tmp_path / "rec"), "segment_s": 2, "min_free_mb": 1},
        "streams": {f"d{i + 1}": {"telemetry": f"mavlink+udp://127.0.0.1:{p}", "allow_senders": ["127.0.0.1/32"]}
                    for i, p in enumerate(ports)},
    }


def expected_xy(d: dict[str, Any], lat: float, lon: float) -> tuple[float, float]:
    """Where the marker belongs in the page's box: our Python geometry, the page's sample."""
    p = picture_point(d["s"], lat, lon)
    assert p is not None
    scale = min(d["W"] / d["w"], d["H"] / d["h"])
    pw, ph = d["w"] * scale, d["h"] * scale
    return (d["W"] - pw) / 2 + (p[0] + 1) / 2 * pw, (d["H"] - ph) / 2 + (1 - p[1]) / 2 * ph


def assert_on_ground_point(d: dict[str, Any], lat: float, lon: float) -> None:
    assert d is not None and d["inside"], d
    x, y = expected_xy(d, lat, lon)
    pw = min(d["W"], d["H"] * d["w"] / d["h"])
    assert abs(d["x"] - x) <= 0.02 * pw and abs(d["y"] - y) <= 0.02 * pw, (d["x"], d["y"], x, y)


async def until(page: Any, js: str, arg: Any = None, timeout: float = 20.0) -> Any:
    """Poll ``js`` (a function) in the page until it returns something truthy (no eval under CSP)."""
    end = time.monotonic() + timeout
    while True:
        got = await page.evaluate(js, arg)
        if got:
            return got
        assert time.monotonic() < end, f"page never satisfied: {js[:80]}"
        await asyncio.sleep(0.05)


async def test_marker_on_the_picture_reaches_every_viewer_and_stays_on_the_ground(
        relay_factory: Any, tmp_path: Path) -> None:
    ports = [free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)]
    relay = await relay_factory(config(ports, tmp_path))
    now = time.time()
    flights = [Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10, start=now),
               Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10, start=now - 12)]
    senders = [MavlinkSender(f, f"mavlink+udp://127.0.0.1:{p}") for f, p in zip(flights, ports, strict=True)]
    drones = [Drone(f"{relay.url}/whip/d1", size=(640, 360)), Drone(f"{relay.url}/whip/d2", size=(640, 360))]
    try:
        await wait_for(lambda: all(relay.entry(n) is not None and relay.entry(n).frames_in > 5
                                   for n in ("d1", "d2")), 20, "both drones live")
        for s in senders:
            s.start()
        async with chromium(viewport=(1280, 720)) as ctx, chromium(viewport=(390, 844)) as phone_ctx, \
                chromium(viewport=(1920, 1080)) as wall_ctx:
            commander, phone, wall = await ctx.new_page(), await phone_ctx.new_page(), await wall_ctx.new_page()
            errors: list[str] = []
            for p in (commander, phone, wall):
                p.on("pageerror", lambda e: errors.append(str(e)))
            await commander.goto(f"{relay.url}/view/d1")
            await phone.goto(f"{relay.url}/view/d1")
            await wall.goto(f"{relay.url}/wall")
            ready = "() => window.__player && window.__player.stats.frames > 10 && window.__player.telemetryShown() " \
                    "&& window.__marks && window.__marks.mayMark"
            await until(commander, ready)
            await until(phone, ready)
            # The commander clicks on the picture, right of and below the centre, and marks it.
            box = await commander.locator("#video").bounding_box()
            u, v = 0.25, -0.15
            scale = min(box["width"] / 640, box["height"] / 360)
            pw, ph = 640 * scale, 360 * scale
            cx = box["x"] + (box["width"] - pw) / 2 + (u + 1) / 2 * pw
            cy = box["y"] + (box["height"] - ph) / 2 + (1 - v) / 2 * ph
            await commander.mouse.click(cx, cy)
            await commander.wait_for_selector("#markform:not([hidden])")
            await commander.select_option("#mark-kind", "person")
            await commander.fill("#mark-label", "zwei Personen auf dem Dach")
            await commander.click("#mark-place")
            t_placed = time.monotonic()
            # Pushed on the phone's channel (the page polls nothing). How fast is bench/markers.py's
            # figure: beside the slow lane's load a fresh clone once took 3.2 s (a 1 s bound here).
            marker = await until(phone, "() => window.__marks.set.list().find((m) => m.kind === 'person')",
                                 timeout=10)
            seen_s = time.monotonic() - t_placed
            print(f"placed on the commander's page -> in the phone's set: {seen_s * 1000:.0f} ms")
            book = relay.services.markers.listing()
            assert [m["id"] for m in book] == [marker["id"]] and book[0]["stream"] == "d1"
            assert book[0]["label"] == "zwei Personen auf dem Dach"
            # In the phone's picture, where its frame's footprint projects the ground point...
            d = await until(phone, DRAWN, marker["id"], timeout=3)
            assert_on_ground_point(d, marker["lat"], marker["lon"])
            # ...and on its map.
            at = await phone.evaluate("(id) => { const m = window.__map && window.__map.marks.get(id); "
                                      "return m ? [m.getLatLng().lat, m.getLatLng().lng] : null; }", marker["id"])
            assert at == [marker["lat"], marker["lon"]]
            # The wall: on its map, and in drone 2's picture (both cameras look at the incident).
            wd = await until(wall, """(id) => { const t = window.__wall.get('d2'); if (!t) return null;
                const d = t.marks.drawn.find((x) => x.id === id);
                return d && d.inside && window.__map && window.__map.marks && window.__map.marks.has(id)
                  ? d : null; }""",
                             marker["id"], timeout=10)
            x, y = expected_xy(wd, marker["lat"], marker["lon"])
            assert abs(wd["x"] - x) <= 0.02 * wd["W"] and abs(wd["y"] - y) <= 0.02 * wd["W"], (wd, x, y)
            # Ten seconds on, the drone has flown ~100 m along its orbit: the marker moved in
            # the picture, and is still on its ground point.
            await asyncio.sleep(10)
            d2 = await until(phone, DRAWN, marker["id"], timeout=3)
            assert_on_ground_point(d2, marker["lat"], marker["lon"])
            assert abs(d2["s"]["lat"] - d["s"]["lat"]) + abs(d2["s"]["lon"] - d["s"]["lon"]) > 3e-4
            assert abs(d2["x"] - d["x"]) + abs(d2["y"] - d["y"]) > 10, (d["x"], d2["x"])
            await phone.screenshot(path=str(tmp_path / "phone.png"))
            await wall.screenshot(path=str(tmp_path / "wall.png"))
            # Removed on the commander's page: gone everywhere within a second.
            await commander.evaluate("(id) => window.__marks.pick(id)", marker["id"])
            await commander.click("#mi-remove")
            await until(phone, "(id) => !window.__marks.set.byId.has(id) && "
                               "!window.__marks.marks.drawn.some((d) => d.id === id)", marker["id"], timeout=1.5)
            await until(wall, "(id) => !window.__markers.byId.has(id)", marker["id"], timeout=1.5)
            # Replay on the phone: the moment before the removal shows the marker again.
            await phone.click("#back30")
            await until(phone, "(id) => window.__replay.playing && (window.__marks.replayed || [])"
                               ".some((m) => m.id === id) && window.__marks.marks.drawn.some((d) => d.id === id)",
                        marker["id"], timeout=30)
            assert errors == []
    finally:
        for s in senders:
            s.stop()
        for drone in drones:
            await drone.stop()


async def test_a_label_with_html_stays_text_under_the_csp(relay_factory: Any, tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(config([port], tmp_path))
    flight = Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10, start=time.time())
    sender = MavlinkSender(flight, f"mavlink+udp://127.0.0.1:{port}")
    drone = Drone(f"{relay.url}/whip/d1", size=(640, 360))
    evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        sender.start()
        # (the camera's ground point comes from another MAVLink message than the position)
        await wait_for(lambda: relay.entry("d1").telemetry.state.get("center_lat") is not None, 10,
                       "telemetry with the camera's ground point")
        s = relay.entry("d1").telemetry.state
        relay.services.markers.add({"kind": "hazard", "label": evil, "lat": s["center_lat"],
                                    "lon": s["center_lon"]}, "test")
        # 600 m north of the incident: off every picture of the orbit (which looks at it).
        far = relay.services.markers.add({"kind": "water", "label": "Löschteich", "lat": INCIDENT[0] + 600 / 111_320,
                                          "lon": INCIDENT[1]}, "test")
        async with chromium(viewport=(844, 390), bypass_csp=False) as ctx:
            page = await ctx.new_page()
            await page.goto(f"{relay.url}/view/d1")
            got = await until(page, """() => {
                const e = document.querySelector('#marklayer .mark .mlabel');
                const m = window.__map && document.querySelector('.map-mark .mlabel');
                return e && m ? {pic: e.textContent, map: m.textContent,
                  imgs: document.querySelectorAll('#marklayer img, .map-mark img, #marklayer script').length,
                  pwned: window.__pwned === undefined ? null : window.__pwned} : null; }""", timeout=20)
            assert got == {"pic": evil, "map": evil, "imgs": 0, "pwned": None}, got
            # The marker off the picture: an arrow on its edge, with the distance.
            edge = await until(page, """(id) => { const d = window.__marks.marks.drawn.find((x) => x.id === id);
                const e = document.querySelector(`#marklayer .mark[data-id="${id}"]`);
                return d && e ? {inside: d.inside, x: d.x, y: d.y, box: d.box, edge: e.classList.contains('edge'),
                                 text: e.textContent, dist: d.dist} : null; }""", far.id)
            b = edge["box"]
            assert edge["inside"] is False and edge["edge"] and 550 < edge["dist"] < 800, edge
            assert edge["text"].startswith("Löschteich · ") and edge["text"].endswith(" m"), edge
            near_edge = min(edge["x"] - b["left"], b["left"] + b["pw"] - edge["x"],
                            edge["y"] - b["top"], b["top"] + b["ph"] - edge["y"])
            assert 0 <= near_edge <= 30, edge  # on the picture, at its edge
            await page.screenshot(path=str(tmp_path / "landscape.png"))
            # The incident page lists it (as text) with the GIS exports.
            await page.goto(f"{relay.url}/incident")
            row = await until(page, """() => { const t = document.getElementById('markers-table');
                return t && t.rows.length > 1 ? [...t.rows[1].cells].map((c) => c.textContent) : null; }""")
            assert row[:2] == ["Hazard", evil] and row[3] == "test" and row[5] == "map", row
            assert await page.evaluate("() => document.querySelectorAll('#markers-table img').length") == 0
    finally:
        sender.stop()
        await drone.stop()


async def test_the_page_applies_each_change_once_and_in_order(relay_factory: Any, tmp_path: Path) -> None:
    """Changes come twice (the reliable channel and copies on the unordered one) and may cross:
    viewer/markers.js applies each once, never an older one after a newer, never an older
    full set over newer changes."""
    relay = await relay_factory(config([free_port(socket.SOCK_DGRAM)], tmp_path))
    async with chromium(viewport=(390, 844)) as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/static/view.html")
        got = await page.evaluate("""async () => {
            const { MarkerSet } = await import('/static/markers.js');
            const s = new MarkerSet(), ids = () => s.list().map((m) => `${m.id}:${m.label}`).sort().join(' ');
            const out = [];
            const A = (label) => ({ id: 'A', kind: 'note', label, lat: 1, lon: 1 });
            const B = (label) => ({ id: 'B', kind: 'note', label, lat: 1, lon: 1 });
            s.apply({ type: 'markers', all: [A('a2')], n: 3 }); out.push(ids());
            s.apply({ type: 'marker', op: 'add', m: B('b'), n: 4 }); out.push(ids());
            s.apply({ type: 'marker', op: 'change', m: A('a1'), n: 2 }); out.push(ids());   // older than the set
            s.apply({ type: 'marker', op: 'remove', m: { id: 'B' }, n: 5 }); out.push(ids());
            s.apply({ type: 'marker', op: 'add', m: B('b'), n: 4 }); out.push(ids());      // a late copy
            s.apply({ type: 'markers', all: [A('a2'), B('b')], n: 4 }); out.push(ids());   // an older full set
            s.apply({ type: 'marker', op: 'change', m: A('a3'), n: 7 }); out.push(ids());
            s.apply({ type: 'marker', op: 'change', m: A('a3'), n: 7 }); out.push(String(s.version));
            s.apply({ type: 'markers', all: [{ ...A('a3') }, { id: 'C', kind: 'note', label: 'c', lat: 1, lon: 1 }], n: 8 });
            out.push(ids());
            return out; }""")
        assert got == ["A:a2", "A:a2 B:b", "A:a2 B:b", "A:a2", "A:a2", "A:a2", "A:a3", "4", "A:a3 C:c"], got
