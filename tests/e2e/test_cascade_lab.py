"""The two places in a lab of namespaces: the command vehicle (this test's namespace: the
vehicle relay, the drone, a viewer at the scene), an LTE router, and the control centre
(its own namespace: the centre relay as a separate process, a Chromium viewer there). The
uplink (router → centre) is clean, then 1.5 Mbit/s with 5 % loss, then down for 20 s."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from typing import Any

import aiohttp
import pytest

from tests.browser import CHROMIUM, chromium
from tests.e2e.test_cascade_record import keypair
from tests.helpers import Drone, WhepViewer, wait_for
from tests.netlab import Lab, need_lab, sh

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("netlab")]
VEHICLE, ROUTER_V, ROUTER_C, CENTRE = "10.211.1.2", "10.211.1.1", "10.211.2.1", "10.211.2.2"
TOKEN, VIEW = "vehicle-one-publish-token", "centre-view-token-1234"
CENTRE_URL = f"http://{CENTRE}:8480"
LADDER = [
    {"name": "high", "height": 360, "bitrate_kbps": 1800},
    {"name": "mid", "height": 360, "bitrate_kbps": 900},
    {"name": "low", "height": 270, "bitrate_kbps": 450},
    {"name": "floor", "height": 180, "bitrate_kbps": 200, "max_fps": 10},
]
KBPS = {r["name"]: r["bitrate_kbps"] for r in LADDER}
CENTRE_TOML = f"""
[server]
host = "{CENTRE}"
port = 8480
name = "centre"
log_level = "info"

[[renditions]]
name = "high"
height = 360
bitrate_kbps = 1500

[webrtc]
ice_addresses = ["{CENTRE}"]

[overload]
enabled = false  # the test counts frames delivered; the governor is tests/e2e/test_overload.py's

[auth]
enabled = true
view_token = "{VIEW}"

[record]
enabled = true
dir = "{{dir}}/centre-rec"
min_free_mb = 1

[streams.drone1]
record = false

[[vehicles]]
name = "vehicle"
token = "{TOKEN}"
public_key = "{{dir}}/vehicle.pub.pem"
streams = ["drone1"]
"""


async def centre_doc(stream: str = "drone1") -> dict[str, Any] | None:
    try:
        async with aiohttp.ClientSession() as s, s.get(
                f"{CENTRE_URL}/api/streams/{stream}", headers={"Authorization": f"Bearer {VIEW}"},
                timeout=aiohttp.ClientTimeout(total=2)) as r:
            return await r.json() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def page_stats(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate("() => ({...window.__player.stats})"))


# Quiet lane (alone): it counts the frames the centre's browser shows over a shaped uplink;
# beside the slow lane's other two workers the forward fell to its floor rung (10 fps) in
# fresh-clone runs before and after this change (issue "Fresh and honest under pressure").
@pytest.mark.quiet
@pytest.mark.timeout(300)  # four phases of a real uplink (~2.5 min), not one hang
async def test_vehicle_forwards_to_the_centre_over_a_weak_uplink(relay_factory: Any) -> None:
    need_lab()
    lab = Lab("c")
    try:
        router, centre_ns = lab.host("lte"), lab.host("ctr")
        lab.link(router, f"{ROUTER_V}/24", None, f"{VEHICLE}/24")
        uplink, _ = lab.link(router, f"{ROUTER_C}/24", centre_ns, f"{CENTRE}/24")
        lab.route(centre_ns, "default", ROUTER_C)
        lab.route(None, "10.211.2.0/24", ROUTER_V)
        lab.forward(router)
        lab.shape(router, uplink, "10mbit")
        (lab.dir / "centre.toml").write_text(CENTRE_TOML.replace("{dir}", str(lab.dir)))
        priv, _pub, _ = keypair(lab.dir)
        (lab.dir / "vehicle-key.pub.pem").rename(lab.dir / "vehicle.pub.pem")
        lab.spawn(centre_ns, sys.executable, "-m", "relay", "--config", str(lab.dir / "centre.toml"),
                  log="centre.log")
        vehicle = await relay_factory({
            "server": {"name": "vehicle"}, "renditions": LADDER,
            "webrtc": {"ice_addresses": [VEHICLE]}, "abr": {"start_kbps": 1800, "hold_s": 4, "max_hold_s": 12},
            "record": {"enabled": True, "dir": str(lab.dir / "vehicle-rec"), "segment_s": 4, "min_free_mb": 1,
                       "signing_key": str(priv)},
            "streams": {"drone1": {"title": "Brand Hauptstrasse 5", "forward": [f"{CENTRE_URL}/whip/drone1"],
                                   "forward_token": TOKEN, "forward_backfill_kbps": 6000}},
        }, host=VEHICLE)
        drone = Drone(f"{vehicle.url}/whip/drone1")
        local = WhepViewer(vehicle.url, "drone1", rendition="low", read_stamps=False)
        forward = vehicle.services.forwards.forwarders[0]
        try:
            await wait_for(lambda: forward.state == "up", 30, "the forward to the centre")
            await local.start()
            async with chromium(executable=lab.wrapper(centre_ns, CHROMIUM)) as ctx:
                page = await ctx.new_page()
                await page.goto(f"{CENTRE_URL}/view/drone1?verify=1#token={VIEW}")
                await page.wait_for_function("window.__player && window.__player.verifyLog.length > 90",
                                             timeout=30_000)
                await clean_uplink(page)
                await weak_uplink(lab, router, uplink, page, local, forward)
                await outage(lab, router, uplink, page, local, forward)
        finally:
            await local.close()
            await drone.stop()
        await record_caught_up(lab, vehicle)
        await wrong_token(relay_factory)
    finally:
        print(lab.log("centre.log")[-3000:])
        lab.close()


async def clean_uplink(page: Any) -> None:
    """The centre's picture, glass to glass: its figure (from the capture times that
    crossed both hops) is the drone's stamp read from the pixels, within a frame."""
    await asyncio.sleep(4)
    log = await page.evaluate("window.__player.verifyLog.slice(-90)")
    diffs = sorted(abs(e["rtp"] - e["pixel"]) for e in log if e["pixel"] is not None)
    stats = await page_stats(page)
    doc = await centre_doc()
    print(f"\nclean uplink: centre fps {stats['fps']}, latency {stats['latency']} ms ({stats['kind']}), "
          f"figure vs pixels median {diffs[len(diffs) // 2] if diffs else None} ms; path {doc and doc['path']} "
          f"hops {doc and doc['hops']}")
    assert len(diffs) > 45, log[-5:]
    assert diffs[len(diffs) // 2] <= 34, diffs  # within one frame at 30 fps
    assert stats["kind"] == "glass-to-glass" and stats["latency"] < 1000, stats
    assert stats["fps"] >= 20, stats
    assert doc is not None and doc["path"] == ["drone", "vehicle", "centre"], doc


async def weak_uplink(lab: Lab, router: str, uplink: str, page: Any, local: WhepViewer, forward: Any) -> None:
    """1.5 Mbit/s with 5 % loss on the uplink: the forward moves to a rung that fits, the
    centre keeps a picture, the vehicle's viewer on its LAN is untouched."""
    lab.shape(router, uplink, "1500kbit")
    lab.nft(router, f"""
table inet lte {{
  chain fwd_loss {{ type filter hook forward priority 0; policy accept;
    ip daddr {CENTRE} meta l4proto udp numgen random mod 100 < 5 counter drop; }}
}}
""")
    await wait_for(lambda: KBPS.get(forward.viewer.info.rendition if forward.viewer else "high", 9999) <= 1500,
                   30, "the forward to step down to a rung that fits 1.5 Mbit/s")
    await asyncio.sleep(12)
    fps: list[float] = []
    n0 = local.seen.frames
    t0 = time.monotonic()
    for _ in range(8):
        await asyncio.sleep(1)
        fps.append(float((await page_stats(page))["fps"]))
    local_fps = (local.seen.frames - n0) / (time.monotonic() - t0)
    rung = forward.viewer.info.rendition if forward.viewer else None
    print(f"weak uplink: forward on {rung}, switches "
          f"{[(s['from'], s['to'], s['reason']) for s in (forward.viewer.info.switches if forward.viewer else [])]}; "
          f"centre fps {fps}; vehicle viewer {local_fps:.1f} fps")
    if os.environ.get("CASCADE_DEBUG") and forward.viewer:
        tap = forward.viewer.tap
        print("tap", tap.plis, tap.nacks, tap.nacks_new, tap.nacks_refused, tap.nacks_stale, tap.nacks_repeat,
              forward.viewer.reader_stats())
        for smp in forward.viewer.info.samples[-40:]:
            print(smp)
    assert rung is not None and KBPS[rung] <= 1500, rung
    # A picture keeps coming (the 25 fps is measured by bench/cascade.py: with the
    # slow lane's other tests on the same two cores this phase has shown 11-30 fps).
    assert sorted(fps)[len(fps) // 2] >= 10, fps
    assert local_fps >= 25, local_fps
    sh("nft", "delete", "table", "inet", "lte", ns=router)
    lab.shape(router, uplink, "10mbit")


async def outage(lab: Lab, router: str, uplink: str, page: Any, local: WhepViewer, forward: Any) -> None:
    """The uplink is down for 20 s: the vehicle's viewer never stalls, the centre shows
    the slate and resumes by itself once the link is back."""
    lab.nft(router, f"""
table inet cut {{
  chain outage {{ type filter hook forward priority 0; policy accept;
    ip daddr {CENTRE} drop; ip saddr {CENTRE} drop; }}
}}
""")
    t_cut = time.monotonic()
    worst_gap = 0.0
    last_n, last_t = local.seen.frames, time.monotonic()
    states: set[str] = set()
    shot = os.environ.get("CASCADE_SHOTS")
    while time.monotonic() - t_cut < 20:
        await asyncio.sleep(0.5)
        if local.seen.frames > last_n:
            last_n, last_t = local.seen.frames, time.monotonic()
        worst_gap = max(worst_gap, time.monotonic() - last_t)
        states.add(str((await page_stats(page)).get("state")))
        if shot and 12 < time.monotonic() - t_cut < 13:
            await page.screenshot(path=f"{shot}/centre-outage.png")
    sh("nft", "delete", "table", "inet", "cut", ns=router)
    t_back = time.monotonic()
    stamps0 = (await page_stats(page))["stampsRead"]

    async def resumed() -> bool:
        s = await page_stats(page)
        return bool(s["stampsRead"] > stamps0 + 15 and s["state"] == "playing")

    deadline = time.monotonic() + 30
    while not await resumed():
        assert time.monotonic() < deadline, "the centre did not resume within 30 s of the link's return"
        await asyncio.sleep(0.25)
    resume_s = time.monotonic() - t_back
    if shot:
        await page.screenshot(path=f"{shot}/centre-resumed.png")
    print(f"outage: vehicle viewer's worst gap {worst_gap:.1f} s; centre page states {sorted(states)}; "
          f"resumed {resume_s:.1f} s after the link returned; forward {forward.status()}")
    assert worst_gap < 1.5, worst_gap
    assert resume_s < 10, resume_s
    assert forward.sessions >= 2


async def record_caught_up(lab: Lab, vehicle: Any) -> None:
    """After the outage the backfill catches up: the centre holds every line of the
    vehicle's manifest, its segments cover the flight without a gap, and verify passes."""
    rec = vehicle.services.record
    backfill = vehicle.services.forwards.backfills[0]
    await wait_for(lambda: not rec.recorders["drone1"].writer.stats.open_path, 15, "the last segment sealed")
    t0 = time.monotonic()
    await wait_for(lambda: backfill.state == "idle" and backfill.centre_seq == rec.chain("drone1").length,
                   120, "the record to catch up at the centre")
    print(f"record: caught up {time.monotonic() - t0:.1f} s after the drone landed; {backfill.status()}")
    mirror_dir = lab.dir / "centre-rec" / "vehicles" / "vehicle"
    segs = sorted((s.start_ms, s.end_ms) for s in rec.index["drone1"] if s.kind == "segment")
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(segs) if b[0] - a[1] > 400]
    assert len(segs) >= 10 and not gaps, (len(segs), gaps)
    out = sh(sys.executable, "-m", "relay", "verify", str(lab.dir / "centre-rec"))
    assert "record intact" in out and "vehicle vehicle: drone1" in out, out
    held = len(list(mirror_dir.glob("drone1/*/*.mp4")))
    assert held == len(segs), (held, len(segs))


async def wrong_token(relay_factory: Any) -> None:
    """A second vehicle with a wrong token, across the same router: refused by the centre,
    logged once, retried with a growing delay; the centre never lists its stream."""
    other = await relay_factory({
        "server": {"name": "vehicle-2"}, "renditions": LADDER[-1:], "webrtc": {"ice_addresses": [VEHICLE]},
        "streams": {"drone2": {"forward": [f"{CENTRE_URL}/whip/drone2"], "forward_token": "not-the-token"}},
    }, host=VEHICLE)
    drone = Drone(f"{other.url}/whip/drone2")
    try:
        fwd = other.services.forwards.forwarders[0]
        await wait_for(lambda: fwd.refusals >= 1, 20, "the wrong token refused")
        t0, first = time.monotonic(), fwd.refusals
        await asyncio.sleep(7)
        # 2 s, then 4 s: at most two more tries in 7 s, never a tight loop.
        assert fwd.refusals - first <= 2 and fwd.state == "refused", fwd.status()
        assert "403" in fwd.last_error, fwd.status()
        print(f"wrong token: {fwd.refusals} refusals in {time.monotonic() - t0 + 2:.0f} s: {fwd.last_error}")
        assert await centre_doc("drone2") is None
    finally:
        await drone.stop()
