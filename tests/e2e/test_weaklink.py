"""A commander's Chromium on a weak LTE-like link, in a lab of namespaces this test makes:
1.5 Mbit/s (tbf) with 5 % of the relay's UDP dropped (nft), then the limit lifts. The
viewer asks for no rendition ("auto"): the relay must move it to a rung that fits, and
back to the top when the link allows, with the picture going on through every switch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.browser import CHROMIUM, chromium
from tests.helpers import Drone, WhepViewer, wait_for
from tests.netlab import Lab, need_lab, sh

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("netlab"), pytest.mark.quiet]  # fps: alone
LABEL_AND_HEIGHT = "() => [window.__player.stats.rendition, window.__player.stats.height]"
LADDER = [
    {"name": "high", "height": 720, "bitrate_kbps": 2500},
    {"name": "mid", "height": 540, "bitrate_kbps": 1200},
    {"name": "low", "height": 360, "bitrate_kbps": 600},
    {"name": "floor", "height": 360, "bitrate_kbps": 250, "max_fps": 10},
]
KBPS = {r["name"]: r["bitrate_kbps"] for r in LADDER}
HEIGHT = {r["name"]: r["height"] for r in LADDER}


async def test_auto_viewer_fits_a_weak_link_and_climbs_back(relay_factory: Any) -> None:
    need_lab()
    lab = Lab("w")
    try:
        cmd, router, to_viewer = lab.behind_lte("cmd", "10.203", "1500kbit", 5)
        relay = await relay_factory({
            "renditions": LADDER,
            "webrtc": {"ice_addresses": ["10.203.2.2"]},
            "abr": {"start_kbps": 2500, "hold_s": 4, "max_hold_s": 12},
        }, host="10.203.2.2")
        drone = Drone(f"{relay.url}/whip/d1", size=(1280, 720))
        clean = WhepViewer(relay.url, "d1", rendition="low", read_stamps=False)
        try:
            await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 20, "d1")
            async with chromium(executable=lab.wrapper(cmd, CHROMIUM)) as ctx:
                page = await ctx.new_page()
                await page.goto(f"{relay.url}/view/d1")  # no rendition: auto
                await wait_for(lambda: any(v.auto for v in relay.viewers("d1").values()), 20, "auto viewer")
                viewer = next(v for v in relay.viewers("d1").values() if v.auto)
                assert viewer.rendition == "high"  # started at the top (abr.start_kbps)
                t_start = time.monotonic()
                # It must leave "high" quickly and settle where 1.5 Mbit/s with 5 % loss carries it.
                await wait_for(lambda: viewer.rendition != "high", 15, "a step down from 2.5 Mbit/s")
                t_down = time.monotonic() - t_start
                await clean.start()
                # Settling may take a detour: a freeze or two on a busy machine (two cores,
                # Chromium decoding in software) sends it to the floor, and a probe brings it
                # back 8-12 s later. Judged once it had 20 s.
                await asyncio.sleep(20)
                fps: list[float] = []
                seen: list[str] = []
                shown: list[tuple[str, int]] = []  # (the page's label, the picture's height)
                for _ in range(16):
                    await asyncio.sleep(1)
                    fps.append(float(viewer.report.get("fps", 0)))
                    seen.append(viewer.rendition)
                    shown.append(await page.evaluate(LABEL_AND_HEIGHT))
                rends = set(seen)
                stamps0 = await page.evaluate("() => window.__player.stats.stampsRead")
                t_stamps0 = time.monotonic()
                print(f"\nweak link: left 'high' after {t_down:.1f} s; settled on {sorted(rends)}, "
                      f"decoded fps {[round(f) for f in fps]}; estimate {viewer.estimate_kbps} kbit/s; "
                      f"switches {[(s['from'], s['to'], s['reason']) for s in viewer.switches]}")
                for smp in viewer.samples:
                    print(smp)
                # Where it stays fits the link; a step up to probe for room (which fails here
                # and is backed off) may fall in the window, so: most of the time, and the median.
                settled = max(rends, key=seen.count)
                assert KBPS[settled] <= 1500 and seen.count(settled) >= len(seen) // 2, seen
                assert sorted(fps)[len(fps) // 2] >= 20, fps
                # The page's label is the picture's: it changes at the new rung's first frame
                # (one sample may straddle a change).
                assert sum(HEIGHT.get(r) != h for r, h in shown) <= 1, shown
                # The limit lifts: back to the top rendition.
                lab.shape(router, to_viewer, "10mbit")
                sh("nft", "flush", "chain", "inet", "lte", "fwd_loss", ns=router)
                t_lift = time.monotonic()
                await wait_for(lambda: viewer.rendition == "high", 60, "the climb back to 'high'")
                t_up = time.monotonic() - t_lift
                for _ in range(50):  # the page labels it "high" once a 720-line picture shows
                    label, height = await page.evaluate(LABEL_AND_HEIGHT)
                    if label == "high":
                        break
                    await asyncio.sleep(0.1)
                assert (label, height) == ("high", 720)
                # Watch at least 6 s in all after the limit lifted, however fast the climb was.
                await asyncio.sleep(max(2.0, 6.0 - (time.monotonic() - t_stamps0)))
                stamps1 = await page.evaluate("() => window.__player.stats.stampsRead")
                watched = time.monotonic() - t_stamps0
                print(f"limit lifted: back on 'high' after {t_up:.1f} s; "
                      f"switches {[(s['from'], s['to'], s['reason']) for s in viewer.switches]}")
                # The picture went on through every switch: the drone's stamps kept being read.
                # (at least half the drone's 30 fps, over the whole time watched).
                assert stamps1 - stamps0 > 15 * watched, (stamps0, stamps1, round(watched, 1))
                n = clean.seen.frames
                await clean.wait_frames(n + 30, timeout=10)  # the clean viewer never stalled
        finally:
            await clean.close()
            await drone.stop()
    finally:
        lab.close()
