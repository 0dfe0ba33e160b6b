"""Markers, measured in headless Chromium: how long from placing a marker (the HTTP answer)
to its pin in another viewer's picture, and what drawing the markers costs the page per
frame (the relay paints nothing for markers: each page projects them through the footprint
of its frame on screen).

    .venv/bin/python -m bench.markers [--placements 30] [--counts 0,10,100,500] [--seconds 5]

Same machine, same clock: the page stamps the first draw that holds the pin with Date.now()
and the bench compares it with the time it sent the POST. The per-frame cost is
the page's own measurement around each draw (performance.now()), per count of markers in
view, with the ratio to drawing none.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import socket
import statistics
import time
from typing import Any

import aiohttp

from drone_sim.flight import Flight
from drone_sim.mavlink import MavlinkSender
from tests.browser import chromium
from tests.helpers import Drone, start_relay, wait_for

INCIDENT = (52.3906, 13.0645)
WATCH = """() => { const pm = window.__marks.marks; if (pm.__watched) return; pm.__watched = true;
  window.__firstDrawn = {}; const draw = pm.draw.bind(pm);
  pm.draw = () => { draw(); const now = Date.now();
    for (const d of pm.drawn) if (!(d.id in window.__firstDrawn)) window.__firstDrawn[d.id] = now; }; }"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, json=body) as r:
        assert r.status == 201, await r.text()
        doc: dict[str, Any] = await r.json()
        return doc


def near_incident(k: int) -> dict[str, Any]:
    rng = random.Random(k)
    return {"kind": rng.choice(["person", "hotspot", "hazard", "access", "water", "note"]),
            "label": f"marker {k}", "lat": INCIDENT[0] + rng.uniform(-25, 25) / 111_320,
            "lon": INCIDENT[1] + rng.uniform(-25, 25) / (111_320 * math.cos(math.radians(INCIDENT[0])))}


async def run(placements: int, counts: list[int], seconds: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = await start_relay({
        "renditions": [{"name": "low", "height": 360, "bitrate_kbps": 600}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "markers": {"rate_per_min": 10000, "max": 10000},
        "streams": {"d1": {"telemetry": f"mavlink+udp://127.0.0.1:{port}"}},
    })
    sender = MavlinkSender(Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10,
                                  start=time.time()), f"mavlink+udp://127.0.0.1:{port}")
    drone = Drone(f"{relay.url}/whip/d1", size=(640, 360))
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 20, "video")
        sender.start()
        async with chromium(viewport=(1280, 720)) as ctx, aiohttp.ClientSession() as http:
            page = await ctx.new_page()
            await page.goto(f"{relay.url}/view/d1")
            await page.wait_for_function("window.__player && window.__player.stats.frames > 30 && "
                                         "window.__player.telemetryShown() && window.__marks", timeout=30000)
            await page.evaluate(WATCH)
            url = f"{relay.url}/api/markers"
            delays: list[float] = []
            for k in range(placements):
                sent = time.time() * 1000
                m = await post(http, url, near_incident(k))
                await page.wait_for_function(f"window.__firstDrawn[{m['id']!r}] !== undefined", timeout=5000)
                delays.append(await page.evaluate(f"window.__firstDrawn[{m['id']!r}]") - sent)
                async with http.delete(f"{url}/{m['id']}") as r:
                    assert r.status == 200
                await asyncio.sleep(0.1)
            print(f"placed -> drawn in another viewer's picture ({placements} markers): "
                  f"p50 {pct(delays, 50):.0f} ms, p95 {pct(delays, 95):.0f} ms, max {max(delays):.0f} ms")
            print("\nmarkers in view | draws | mean ms per draw | p95-ish max ms | x none")
            base = None
            have = 0
            for n in counts:
                for k in range(have, n):
                    await post(http, url, near_incident(1000 + k))
                have = max(have, n)
                await asyncio.sleep(1.0)
                await page.evaluate("window.__marks.marks.cost = {draws: 0, ms: 0, max: 0}")
                await asyncio.sleep(seconds)
                cost = await page.evaluate("window.__marks.marks.cost")
                shown = await page.evaluate("window.__marks.marks.drawn.length")
                mean = cost["ms"] / max(1, cost["draws"])
                base = mean if base is None else base
                ratio = mean / base if base else float("nan")
                print(f"{n:>15} | {cost['draws']:>5} | {mean:>16.3f} | {cost['max']:>14.2f} | {ratio:>6.1f}"
                      f"   ({shown} drawn)")
            fps = await page.evaluate("window.__player.stats.fps")
            print(f"\nthe page still showed {fps:.0f} fps with {have} markers")
            print(f"mean of delays {statistics.mean(delays):.0f} ms")
    finally:
        sender.stop()
        await drone.stop()
        await relay.runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--placements", type=int, default=30, help="markers placed one by one (default 30)")
    ap.add_argument("--counts", default="0,10,100,500", help="markers in view for the drawing cost")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of drawing per count (default 5)")
    a = ap.parse_args()
    asyncio.run(run(a.placements, [int(x) for x in a.counts.split(",")], a.seconds))


if __name__ == "__main__":
    main()
