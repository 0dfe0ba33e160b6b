"""The screens as the people at an incident see them, in Chromium at a phone held upright
(390x844) and sideways (844x390), a tablet (768x1024) and a desktop (1920x1080):

- the view page, live, placing a marker, in replay and in full screen: the picture as large
  as the layout allows and never under the map, the HUD or the controls (only the HUD's one
  line over it, sideways and in full screen); every control inside the screen and the one a
  tap there reaches (the ● Live button in replay on a phone above all); one tap to the
  picture alone and one back; marker labels that never overlap, in the picture and on the map;
  the kinds' symbols and a legend;
- the wall with four live feeds and a lost one: each tile on the rung that fits its size
  (the relay's own record of the wall's sessions says which), a lost tile said as lost, and
  the header's count;
- /incident and /share: nothing wider than the screen.

Screenshots of each go to $SCREENS_DIR when it is set (the issue's before/after), else to the
test's temporary folder."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from drone_sim.flight import Flight
from drone_sim.mavlink import MavlinkSender
from tests.browser import chromium
from tests.e2e.test_ingest import free_port
from tests.e2e.test_markers_browser import until
from tests.helpers import Drone, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.usefixtures("chromium_required")]
INCIDENT = (52.3906, 13.0645)
SIZES = [(390, 844), (844, 390), (768, 1024), (1920, 1080)]

# The boxes the checks need, and for each visible control whether a tap at its centre reaches it.
BOXES = """() => {
  const box = (e) => { if (!e || e.hidden) return null; const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 ? {x: r.x, y: r.y, w: r.width, h: r.height} : null; };
  const v = window.__replay && window.__replay.playing ? document.getElementById('replay') : document.getElementById('video');
  const stage = box(document.getElementById('stage'));
  // The picture itself: the video's box less its bands (object-fit: contain).
  let pic = null;
  if (stage && v.videoWidth) {
    const r = v.getBoundingClientRect(), s = Math.min(r.width / v.videoWidth, r.height / v.videoHeight);
    pic = {x: r.x + (r.width - v.videoWidth * s) / 2, y: r.y + (r.height - v.videoHeight * s) / 2,
           w: v.videoWidth * s, h: v.videoHeight * s};
  }
  const controls = [...document.querySelectorAll('#bar button, #bar select, #bar a, #hudtoggle, #fullscreen')]
    .filter((e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden')
    .map((e) => { const b = box(e); if (!b) return null;
      const hit = document.elementFromPoint(b.x + b.w / 2, b.y + b.h / 2);
      return {id: e.id || e.textContent.trim(), box: b, reached: Boolean(hit && (hit === e || e.contains(hit)))}; })
    .filter(Boolean);
  return {W: innerWidth, H: innerHeight, stage, pic, hud: box(document.getElementById('hud')),
          map: box(document.getElementById('mapbox')), bar: box(document.getElementById('bar')),
          side: box(document.getElementById('side')), legend: box(document.getElementById('legend')),
          full: document.body.classList.contains('full'), controls,
          folded: document.getElementById('hud').classList.contains('folded')};
}"""


def overlap(a: dict[str, float] | None, b: dict[str, float] | None) -> float:
    """The area two boxes share (0 when either is absent)."""
    if not a or not b:
        return 0.0
    w = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
    return max(0.0, w) * max(0.0, h)


def inside(b: dict[str, float], W: float, H: float, slack: float = 1.0) -> bool:
    return b["x"] >= -slack and b["y"] >= -slack and b["x"] + b["w"] <= W + slack and b["y"] + b["h"] <= H + slack


def sideways(W: int, H: int) -> bool:
    return H <= 500 and W / H >= 4 / 3


def check_layout(L: dict[str, Any], where: str) -> None:
    """The view page's rules at any size, as boxes."""
    W, H = L["W"], L["H"]
    assert L["stage"] and inside(L["stage"], W, H), (where, L["stage"])
    assert L["pic"] and inside(L["pic"], W, H), (where, L["pic"])
    for c in L["controls"]:
        assert inside(c["box"], W, H) and c["reached"], (where, c)
    # Nothing but the HUD's one line ever sits on the picture; the map and the bar never do.
    assert overlap(L["map"], L["pic"]) == 0 and overlap(L["bar"], L["pic"]) == 0, (where, L)
    if sideways(W, H) or L["full"]:
        assert L["folded"] and L["hud"]["h"] <= 0.3 * L["pic"]["h"] + 40, (where, L["hud"])
    else:
        assert overlap(L["hud"], L["pic"]) == 0 and overlap(L["side"], L["pic"]) == 0, (where, L)
    # The picture as large as the layout allows: the whole width upright; most of it otherwise.
    if W / H <= 4 / 5:
        assert L["pic"]["w"] >= W - 2, (where, L["pic"])
    elif L["full"]:
        assert L["pic"]["w"] >= W - 2 or L["pic"]["h"] >= H - 2, (where, L["pic"])
    else:
        assert L["pic"]["w"] * L["pic"]["h"] >= 0.45 * W * H, (where, L["pic"])


def labels_apart(boxes: list[dict[str, float] | None], where: str) -> None:
    shown = [b for b in boxes if b]
    for i, a in enumerate(shown):
        for b in shown[i + 1:]:
            assert overlap(a, b) < 1.0, (where, a, b)


# Each label shown on the map (its rendered box, in the map's coordinates) and where the
# declutter put it: they must agree, inside the map.
MAP_LABELS = """() => { const m = document.getElementById('map').getBoundingClientRect();
  return [...document.querySelectorAll('.map-mark')].filter((e) => e.dataset.lp !== 'none').map((e) => {
    const r = e.querySelector('.mlabel').getBoundingClientRect();
    const d = window.__map.labels.find((x) => x.id === e.dataset.id);
    return {id: e.dataset.id, shown: {x: r.x - m.x, y: r.y - m.y, w: r.width, h: r.height}, planned: d && d.label,
            W: m.width, H: m.height}; }); }"""


def map_labels_as_planned(got: list[dict[str, Any]], where: str) -> None:
    for x in got:
        b, p = x["shown"], x["planned"]
        assert p and abs(b["x"] - p["x"]) <= 2 and abs(b["w"] - p["w"]) <= 2, (where, x)
        assert inside(b, x["W"], x["H"], slack=2), (where, x)
    labels_apart([x["shown"] for x in got], f"{where} map")


def config(port: int, tmp_path: Path) -> dict[str, Any]:
    return {
        # Two rungs: the wall's small tiles play "low", its large ones "high".
        "renditions": [{"name": "high", "height": 360, "bitrate_kbps": 800},
                       {"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "record": {"enabled": True, "dir": str(tmp_path / "rec"), "segment_s": 2, "min_free_mb": 1},
        "streams": {"d1": {"telemetry": f"mavlink+udp://127.0.0.1:{port}", "allow_senders": ["127.0.0.1/32"],
                           "title": "Brand Hauptstraße 5"}},
    }


async def shot(page: Any, out: Path, name: str) -> None:
    await page.screenshot(path=str(out / f"{name}.png"))


async def view_page(ctx: Any, url: str, W: int, H: int, out: Path, errors: list[str]) -> None:
    page = await ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{url}/view/d1")
    await until(page, "() => window.__player && window.__player.stats.frames > 10 && window.__marks "
                      "&& window.__marks.mayMark && window.__map && window.__marks.marks.drawn.length >= 3"
                      if not sideways(W, H) else
                      "() => window.__player && window.__player.stats.frames > 10 && window.__marks "
                      "&& window.__marks.mayMark && window.__marks.marks.drawn.length >= 3", timeout=30)
    where = f"{W}x{H} live"
    await asyncio.sleep(0.5)
    L = await page.evaluate(BOXES)
    check_layout(L, where)
    # The kinds' symbols (drawn, not letters) and the legend beside the map, inside the screen.
    syms = await page.evaluate("() => [...document.querySelectorAll('#marklayer .mark')].map((e) => "
                               "[e.dataset.kind, e.querySelectorAll('.pin svg path').length, e.querySelector('.pin').textContent])")
    assert syms and all(n >= 1 and text == "" for _, n, text in syms), syms
    if not sideways(W, H):
        legend = await page.evaluate("() => [...document.querySelectorAll('#legend .item')].map((e) => e.textContent)")
        assert legend[:3] == ["Person", "Hazard", "Hot spot"] and L["legend"] and inside(L["legend"], W, H), legend
        # On the map too, no two labels overlap, each where it was planned, inside the map.
        map_labels_as_planned(await page.evaluate(MAP_LABELS), where)
    labels_apart([d.get("label") for d in await page.evaluate("() => window.__marks.marks.drawn")], where)
    # Pins a few metres apart overlap: the person's is on top (a tap there reaches it).
    top = await page.evaluate("""() => { const l = document.getElementById('marklayer').getBoundingClientRect();
        const d = window.__marks.marks.drawn.find((x) => x.kind === 'person');
        const hit = d && document.elementFromPoint(l.x + d.x, l.y + d.y);
        const m = hit && hit.closest('.mark'); return m ? m.dataset.kind : null; }""")
    assert top == "person", top
    await shot(page, out, f"view-live-{W}x{H}")
    # Placing a marker: a tap on the picture opens the form, its button inside the screen.
    p = L["pic"]
    await page.mouse.click(p["x"] + p["w"] * 0.5, p["y"] + p["h"] * 0.6)
    await page.wait_for_selector("#markform:not([hidden])")
    form = await page.evaluate("""() => { const b = document.getElementById('mark-place').getBoundingClientRect();
        const hit = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
        return {x: b.x, y: b.y, w: b.width, h: b.height, reached: hit && hit.id === 'mark-place'}; }""")
    assert inside(form, W, H) and form["reached"], (W, H, form)
    await shot(page, out, f"view-marking-{W}x{H}")
    await page.click("#ground-close")
    # Replay: the ● Live button is on screen and a tap on it goes back to live.
    await page.click("#back30")
    await until(page, "() => window.__replay.playing && !document.getElementById('live').hidden", timeout=30)
    await asyncio.sleep(1)
    L = await page.evaluate(BOXES)
    check_layout(L, f"{W}x{H} replay")
    live = next(c for c in L["controls"] if c["id"] == "live")
    assert inside(live["box"], W, H) and live["reached"], live
    inset = await page.evaluate("() => { const r = document.getElementById('video').getBoundingClientRect();"
                                " return {x: r.x, y: r.y, w: r.width, h: r.height}; }")
    assert inside(inset, W, H) and overlap(inset, L["stage"]) > 0.9 * inset["w"] * inset["h"], inset  # in the stage
    badge = await page.evaluate("() => { const r = document.getElementById('replay-badge').getBoundingClientRect();"
                                " return {x: r.x, y: r.y, w: r.width, h: r.height}; }")
    # The badge saying which moment this is: whole, off the live inset and the full-screen button.
    button = next(c for c in L["controls"] if c["id"] == "fullscreen")["box"]
    assert inside(badge, W, H) and overlap(badge, inset) == 0 and overlap(badge, button) == 0, (badge, inset)
    await shot(page, out, f"view-replay-{W}x{H}")
    await page.click("#live")
    await until(page, "() => !window.__replay.playing", timeout=10)
    # One tap: the picture alone; one tap back.
    await page.click("#fullscreen")
    await until(page, "() => document.body.classList.contains('full')", timeout=5)
    await asyncio.sleep(0.3)
    L = await page.evaluate(BOXES)
    check_layout(L, f"{W}x{H} full")
    assert L["stage"]["w"] >= W - 2 and L["stage"]["h"] >= H - 2 and not L["bar"] and not L["map"], L
    await shot(page, out, f"view-full-{W}x{H}")
    await page.click("#fullscreen")
    await until(page, "() => !document.body.classList.contains('full')", timeout=5)
    await asyncio.sleep(0.3)
    check_layout(await page.evaluate(BOXES), f"{W}x{H} back from full")
    await page.close()


async def wall_page(ctx: Any, relay: Any, W: int, H: int, out: Path, errors: list[str]) -> None:
    page = await ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{relay.url}/wall")
    tiles = await until(page, """() => { const t = [...window.__wall.values()];
        return t.length === 5 && t.every((x) => x.rung && x.state && x.playing === x.rung && !x.next) &&
          t.filter((x) => x.state === 'live' || x.state === 'degraded').length === 4
          ? t.map((x) => ({name: x.doc.name, rung: x.rung, h: x.el.clientHeight, state: x.state,
                           dpr: devicePixelRatio})) : null; }""", timeout=40)
    # Every live tile says how old its picture is (the figure needs the channel's clock first).
    await until(page, """() => [...window.__wall.values()].filter((t) => t.doc.name !== 'd5')
        .every((t) => /^age [0-9]/.test(t.el.querySelector('.age').textContent))""", timeout=20)
    for t in tiles:
        px = t["h"] * t["dpr"]
        want = "low" if px <= 180 / 0.9 else "high"
        near = 180 / 0.9 / 1.15 <= px <= 180 / 0.9 * 1.15  # (near the edge a tile keeps its rung)
        assert t["rung"] == want or near, (W, H, t)
    assert [t["state"] for t in tiles if t["name"] == "d5"] == ["lost"], tiles
    # The relay's own record: each of the wall's sessions is on the tile's rung, marked "wall".
    rungs = {t["name"]: t["rung"] for t in tiles if t["state"] != "lost"}
    for name, rung in rungs.items():
        await wait_for(lambda name=name, rung=rung: rung in [v.rendition for v in relay.viewers(name).values()
                                                             if v.tile], 15, f"{name}'s wall session on {rung}")
    await until(page, "() => window.__map && window.__map.labels && window.__map.labels.length === 3", timeout=10)
    await asyncio.sleep(0.5)
    map_labels_as_planned(await page.evaluate(MAP_LABELS), f"{W}x{H} wall")
    counts = await page.evaluate("() => document.getElementById('counts').textContent")
    assert "1 lost" in counts, counts
    no_overflow = await page.evaluate("() => document.documentElement.scrollWidth <= innerWidth + 1")
    assert no_overflow
    await shot(page, out, f"wall-{W}x{H}")
    if W == 1920:
        await wall_shrinks_without_going_black(page, relay)
    await page.close()


async def wall_shrinks_without_going_black(page: Any, relay: Any) -> None:
    """The window shrinks (a laptop's wall, a drone more): each tile moves to the smaller rung
    in a second session, swapped in once it has a picture; in the end one video a tile and one
    wall session a stream (the old one ended). Sampled every 100 ms, the tile's visible <video>
    always holds a picture (Chromium also keeps the last frame of a stopped session, so this
    bound holds for a stop-then-start too: what the swap saves is the freeze in between)."""
    await page.set_viewport_size({"width": 844, "height": 390})
    dark: list[Any] = []
    for _ in range(150):
        got = await page.evaluate("""() => [...window.__wall.values()].filter((t) => t.doc.name !== 'd5')
            .map((t) => [t.doc.name, t.rung, t.video.readyState >= 2 && t.video.videoWidth > 0,
                         t.el.querySelectorAll('video').length, t.playing])""")
        dark += [g for g in got if not g[2]]
        if all(g[1] == "low" and g[4] == "low" and g[3] == 1 for g in got):
            break
        await asyncio.sleep(0.1)
    assert all(g[1] == "low" and g[4] == "low" and g[3] == 1 for g in got), got
    assert dark == [], dark
    for name in ("d1", "d2", "d3", "d4"):
        await wait_for(lambda name=name: sorted(v.rendition for v in relay.viewers(name).values() if v.tile) == ["low"],
                       15, f"{name}: one wall session, on low")


async def plain_pages(ctx: Any, url: str, W: int, H: int, out: Path) -> None:
    page = await ctx.new_page()
    for name in ("incident", "share"):
        await page.goto(f"{url}/{name}")
        await asyncio.sleep(1.0)
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= W + 1, (name, W, width)
        await shot(page, out, f"{name}-{W}x{H}")
    await page.close()


async def test_every_screen_at_phone_tablet_and_desktop_sizes(relay_factory: Any, tmp_path: Path) -> None:
    out = Path(os.environ.get("SCREENS_DIR") or tmp_path / "screens")
    os.makedirs(out, exist_ok=True)
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(config(port, tmp_path))
    sender = MavlinkSender(Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10,
                                  start=time.time()), f"mavlink+udp://127.0.0.1:{port}")
    drones = [Drone(f"{relay.url}/whip/d{i}", size=(640, 360), fps=15) for i in range(1, 6)]
    try:
        await wait_for(lambda: all(relay.entry(f"d{i}") is not None and relay.entry(f"d{i}").frames_in > 5
                                   for i in range(1, 6)), 30, "five drones live")
        await drones[4].stop()  # d5: its signal lost
        sender.start()
        await wait_for(lambda: relay.entry("d1").telemetry.state.get("center_lat") is not None, 10,
                       "telemetry with the camera's ground point")
        s = relay.entry("d1").telemetry.state
        # Three markers a few metres apart where the camera looks: their labels would overlap.
        for kind, label, d in (("person", "zwei Personen auf dem Dach", 0.0), ("hazard", "Gasflaschen", 4e-5),
                               ("hotspot", "Glutnest Dachstuhl", -4e-5)):
            relay.services.markers.add({"kind": kind, "label": label, "lat": s["center_lat"] + d,
                                        "lon": s["center_lon"] + d}, "test")
        await wait_for(lambda: relay.entry("d5").state.value == "lost", 15, "d5 lost")
        errors: list[str] = []
        for W, H in SIZES:
            async with chromium(viewport=(W, H)) as ctx:
                await view_page(ctx, relay.url, W, H, out, errors)
                await wall_page(ctx, relay, W, H, out, errors)
                await plain_pages(ctx, relay.url, W, H, out)
        assert errors == []
    finally:
        sender.stop()
        for d in drones:
            await d.stop()


async def test_kinds_speak_the_brigades_language(relay_factory: Any, tmp_path: Path) -> None:
    """``[markers] lang = "de"`` and a brigade's own word: the legend, the form and the
    incident record say "Glutnest", "Hydrant"; a name from the config stays text."""
    relay = await relay_factory({"markers": {"lang": "de", "names": {"water": "Hydrant", "note": "<i>Notiz</i>"}},
                                 "webrtc": {"ice_addresses": ["127.0.0.1"]}})
    relay.services.markers.add({"kind": "hotspot", "label": "", "lat": 52.39, "lon": 13.06}, "test")
    relay.services.markers.add({"kind": "water", "label": "H2", "lat": 52.391, "lon": 13.06}, "test")
    async with chromium(viewport=(1280, 720)) as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/view/d1")
        legend = await until(page, "() => { const l = [...document.querySelectorAll('#legend .item')]"
                                   ".map((e) => e.textContent); return l.length ? l : null; }")
        assert legend == ["Person", "Gefahr", "Glutnest", "Zugang", "Hydrant", "<i>Notiz</i>"], legend
        assert await page.evaluate("() => document.querySelectorAll('#legend i').length") == 0
        form = await page.evaluate("() => [...document.querySelectorAll('#mark-kind option')].map((o) => o.textContent)")
        assert "Glutnest" in form and "Hydrant" in form, form
        await page.goto(f"{relay.url}/incident")
        kinds = await until(page, """() => { const t = document.getElementById('markers-table');
            return t && t.rows.length > 2 ? [...t.rows].slice(1).map((r) => r.cells[0].textContent).sort() : null; }""")
        assert kinds == ["Glutnest", "Hydrant"], kinds
