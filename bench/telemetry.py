"""Telemetry figures: end-to-end delay from the autopilot's measurement to the viewer's data
channel (MAVLink over UDP -> relay -> WHEP data channel), by viewer count; and what the
burned-in overlay costs per frame next to the rest of the frame's preparation.

    .venv/bin/python -m bench.telemetry [--seconds 10] [--viewers 1,10]

The delay is measured against the sample's own capture time (the simulator's clock is this
machine's), so it includes the 5 Hz batching of the data channel (0-200 ms by design)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import numpy as np

from drone_sim.flight import Flight
from drone_sim.mavlink import MavlinkSender
from tests.helpers import Drone, WhepViewer, start_relay, wait_for


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


async def delay_run(viewers: int, seconds: float) -> dict[str, float]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = await start_relay({
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "streams": {"d1": {"telemetry": f"mavlink+udp://127.0.0.1:{port}"}},
    })
    drone = Drone(f"{relay.url}/whip/d1", size=(320, 240))
    sender = MavlinkSender(Flight(start=time.time()), f"mavlink+udp://127.0.0.1:{port}")
    delays: list[float] = []
    peers = [WhepViewer(relay.url, "d1", channel=True, read_stamps=False) for _ in range(viewers)]
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 20, "video")
        for p in peers:
            await p.start()
        # Timestamp each telemetry message as it arrives (the helper keeps only the JSON).
        for p in peers:
            @p.channel.on("message")  # type: ignore[misc]
            def on_message(m: str, p: WhepViewer = p) -> None:
                if '"telemetry"' in m:
                    import json

                    now = time.time()
                    for smp in json.loads(m)["s"]:
                        delays.append((now - smp["t"]) * 1000)
        sender.start()
        await asyncio.sleep(2)
        delays.clear()
        await asyncio.sleep(seconds)
    finally:
        sender.stop()
        for p in peers:
            await p.close()
        await drone.stop()
        await relay.runner.cleanup()
    return {"viewers": viewers, "samples": len(delays), "p50": statistics.median(delays),
            "p95": pct(delays, 95), "max": max(delays)}


def overlay_cost(frames: int = 300) -> dict[str, float]:
    from relay.pipeline.overlay import draw_overlay, draw_telemetry

    w, h = 1280, 720
    img = np.full((h * 3 // 2, w), 100, np.uint8)
    state = {"hdg": 231.4, "rel_alt": 80.0, "lat": 52.520107, "lon": 13.405196, "battery": 87.0}
    out = {}
    for name, fn in (("live badge + clock (existing)", lambda: draw_overlay(img, w, h, "drone1")),
                     ("telemetry overlay", lambda: draw_telemetry(img, w, h, state, False))):
        t = time.perf_counter()
        for _ in range(frames):
            fn()
        out[name] = (time.perf_counter() - t) / frames * 1000
    t = time.perf_counter()
    for _ in range(frames):
        np.asarray(img).copy()  # a frame copy, for scale: the pipeline makes about one
    out["one 720p I420 copy (for scale)"] = (time.perf_counter() - t) / frames * 1000
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--viewers", default="1,10")
    args = ap.parse_args()
    print("telemetry delay, autopilot measurement -> viewer's data channel (ms)")
    print(f"{'viewers':>8} {'samples':>8} {'p50':>7} {'p95':>7} {'max':>7}")
    base = None
    for n in (int(x) for x in args.viewers.split(",")):
        r = await delay_run(n, args.seconds)
        base = base or r["p50"]
        print(f"{n:>8} {r['samples']:>8} {r['p50']:>7.1f} {r['p95']:>7.1f} {r['max']:>7.1f}"
              f"   p50 ratio to 1 viewer {r['p50'] / base:.2f}")
    print("\noverlay per 1280x720 frame (ms; a 30 fps frame has 33.3 ms)")
    for name, ms in overlay_cost().items():
        print(f"  {name:<34} {ms:7.3f} ms  ({ms / 33.3 * 100:.2f} % of a frame interval)")


if __name__ == "__main__":
    asyncio.run(main())
