"""DJI drones over the DJI Cloud API, measured against the simulator's truth: a Pilot 2
emulator (drone_sim/dji.py) flies an orbit and reports OSD at DJI's 0.5 Hz and at a DRC-like
rate, through a Mosquitto of the bench's own, to a relay in this process.

    .venv/bin/python -m bench.dji [--seconds 20] [--rates 0.5,5] [--speed 10] [--radius 100]

Per OSD rate: OSD published -> in the stream's telemetry (ms, p50/p95: the broker hop and
the relay's reading), and the position error of what the relay holds for "now" (carried
forward between reports) against where the simulator flew at that moment (m, p50/p95/max),
sampled ten times a second. Once: live start -> first picture at the relay (s), lens switch
-> the IR lens's field of view in the telemetry (s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from drone_sim.dji import Pilot2
from drone_sim.flight import Flight
from relay.sources.gate import free_tcp_port
from tests.helpers import start_relay, wait_for
from tests.mosquitto import PILOT_PASS, PILOT_USER, RELAY_PASS, RELAY_USER, Mosquitto

INCIDENT = (52.3906, 13.0645)
CONTROL = "bench-control-token"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot((a[0] - b[0]) * 111_320, (a[1] - b[1]) * 111_320 * math.cos(math.radians(a[0])))


async def run_rate(broker: Mosquitto, rate: float, seconds: float, speed: float, radius: float,
                   control: bool) -> dict[str, Any]:
    cfg = {"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
           "webrtc": {"ice_addresses": ["127.0.0.1"]}, "rtmp": {"enabled": True, "port": free_tcp_port()},
           "auth": {"enabled": True, "jwt_secret": "bench-jwt-secret-0123456789abcdefgh",
                    "tokens": [{"token": CONTROL, "role": "control"}]},
           "dji": {"broker": broker.url, "username": RELAY_USER, "password_env": "P", "streams": ["dji1"],
                   "push_host": "127.0.0.1"}}
    relay = await start_relay(cfg, env={"P": RELAY_PASS})
    dji = relay.services.dji
    flight = Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=radius, speed=speed,
                    start=time.time())
    pilot = Pilot2(broker.url, PILOT_USER, PILOT_PASS, flight, osd_hz=rate)
    stop = asyncio.Event()
    task = asyncio.ensure_future(pilot.run(stop))
    out: dict[str, Any] = {"rate": rate}
    try:
        await wait_for(lambda: dji.aircraft and next(iter(dji.aircraft.values())).osd_count >= 2, 30, "OSD")
        tele = relay.entry("dji1").telemetry
        # OSD sent -> taken by the relay: the telemetry's measured time equals the OSD's stamp.
        hops, errors, held = [], [], []
        reckon = next(iter(dji.aircraft.values())).reckon
        seen_t = tele.t
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.01)
            if tele.t != seen_t and not tele.state.get("est_s"):
                hops.append((time.time() - tele.t) * 1000)
            seen_t = tele.t
            tick = int(time.monotonic() * 10) != int((time.monotonic() - 0.01) * 10)
            if len(errors) < seconds * 10 and tick:
                s, truth = tele.state, flight.at(time.time())  # what the relay holds now, against now
                errors.append(metres((s["lat"], s["lon"]), (truth["lat"], truth["lon"])))
                if reckon.last is not None:  # the last report held as it is (no carrying forward)
                    last = reckon.last[1]
                    held.append(metres((last["lat"], last["lon"]), (truth["lat"], truth["lon"])))
        out.update(hop_p50=statistics.median(hops) if hops else None, hop_p95=pct(hops, 95) if hops else None,
                   err_p50=statistics.median(errors), err_p95=pct(errors, 95), err_max=max(errors),
                   n=len(errors),
                   held_p50=statistics.median(held), held_p95=pct(held, 95))
        if control:
            headers = {"Authorization": f"Bearer {CONTROL}"}
            async with aiohttp.ClientSession(headers=headers) as s:
                t0 = time.monotonic()
                async with s.post(f"{relay.url}/api/dji/dji1", json={"action": "start"}) as r:
                    assert r.status == 200, await r.text()
                await wait_for(lambda: relay.entry("dji1").state.value == "live", 30, "picture")
                out["start_s"] = time.monotonic() - t0
                t0 = time.monotonic()
                async with s.post(f"{relay.url}/api/dji/dji1", json={"action": "lens", "lens": "ir"}) as r:
                    assert r.status == 200, await r.text()
                out["lens_reply_s"] = time.monotonic() - t0
                await wait_for(lambda: abs(tele.state.get("hfov", 0) - 49.4) < 0.01, 10, "IR field of view")
                out["lens_fov_s"] = time.monotonic() - t0
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        await pilot.stop_push()
        await relay.runner.cleanup()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rates", default="0.5,5")
    ap.add_argument("--speed", type=float, default=10)
    ap.add_argument("--radius", type=float, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mqtt")
        broker.start()
        try:
            rows = []
            for i, rate in enumerate(float(r) for r in args.rates.split(",")):
                rows.append(await run_rate(broker, rate, args.seconds, args.speed, args.radius,
                                           control=i == 0))
        finally:
            broker.stop()
    print(f"orbit r={args.radius:g} m at {args.speed:g} m/s, {args.seconds:g} s per rate")
    print("| OSD rate | OSD -> relay p50 / p95 (ms) | position error now p50 / p95 / max (m) "
          "| the last report held: p50 / p95 (m) | samples |")
    print("|---|---|---|---|---|")
    for r in rows:
        hop = "—" if r["hop_p50"] is None else f"{r['hop_p50']:.0f} / {r['hop_p95']:.0f}"
        print(f"| {r['rate']:g} Hz | {hop} | {r['err_p50']:.1f} / {r['err_p95']:.1f} / {r['err_max']:.1f} "
              f"| {r['held_p50']:.1f} / {r['held_p95']:.1f} | {r['n']} |")
    first = rows[0]
    print(f"live start -> picture at the relay: {first['start_s']:.1f} s; lens switch reply "
          f"{first['lens_reply_s']:.2f} s, IR field of view in the telemetry {first['lens_fov_s']:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
