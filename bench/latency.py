"""Glass-to-glass latency: relay + simulator (1280x720@30, overlay transcode) + K headless
Chromium viewers and M aiortc viewers.

    sudo .venv/bin/python -m bench.latency [--chromium 1,5] [--aiortc 1] [--seconds 20]

Chromium reads the drone's burned-in stamp from presented frames (viewer/whep.js) and
corrects for the clock offset it measured over the data channel; the relay reports its own
stage histograms. Prints p50/p95/p99 of both, and where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from typing import Any

from bench.common import LoadGroup, get_json, relay_config, start_drone, start_relay
from bench.netns import ensure_netns

CONFIG = relay_config()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return math.nan
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def row(name: str, values: list[float]) -> str:
    return (f"| {name} | {len(values)} | {pct(values, 50):.1f} | {pct(values, 95):.1f} | "
            f"{pct(values, 99):.1f} |")


async def chromium_samples(base: str, k: int, seconds: float) -> tuple[list[float], dict[str, Any]]:
    sys.path.insert(0, ".")
    from tests.browser import chromium

    async with chromium() as ctx:
        pages = []
        for _ in range(k):
            page = await ctx.new_page()
            await page.goto(f"{base}/view/drone1?rendition=high")
            pages.append(page)
        for page in pages:
            await page.wait_for_function("window.__player && window.__player.stats.stampsRead > 30",
                                         timeout=60000)
        # Measure a fresh window: clear what warm-up collected.
        for page in pages:
            await page.evaluate("window.__player.window.v = []")
        await asyncio.sleep(seconds)
        samples: list[float] = []
        extra: dict[str, Any] = {"jitter_buffer_ms": [], "fps": []}
        for page in pages:
            samples += await page.evaluate("window.__player.window.v.map(e => e[1])")
            st = await page.evaluate("window.__player.stats")
            extra["jitter_buffer_ms"].append(st.get("jitterBufferMs"))
            extra["fps"].append(st.get("fps"))
        return samples, extra


def main() -> None:
    ensure_netns()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chromium", default="1,5")
    p.add_argument("--aiortc", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20)
    args = p.parse_args()
    relay, base = start_relay(CONFIG)
    drone = start_drone(base)
    lines = ["| viewers | samples | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|"]
    notes = []
    try:
        for k in [int(x) for x in args.chromium.split(",")]:
            group = LoadGroup()
            if args.aiortc:
                group.spawn(["--whep", f"{base}/whep/drone1?rendition=high", "--check"],
                            args.aiortc, per_proc=1)
            t0 = time.monotonic()
            samples, extra = asyncio.run(chromium_samples(base, k, args.seconds))
            stats = get_json(base + "/api/streams/drone1/stats")
            relay_ms = stats["relay_latency"]["high"]
            group.poll()
            aio: list[float] = []
            for doc in group.last.values():
                aio += doc.get("ages", [])
            group.stop()
            lines.append(row(f"{k} Chromium: glass-to-glass", samples))
            if aio:
                lines.append(row(f"{args.aiortc} aiortc (stock jitter buffer): glass-to-glass", aio))
            rm = relay_ms["relay_ms"]
            lines.append(f"| relay-added ({k} Chromium + {args.aiortc} aiortc) | {rm['n']} | "
                         f"{rm['p50']} | {rm['p95']} | {rm['p99']} |")
            stages = {s: v["p50"] for s, v in relay_ms["stages_ms"].items()}
            notes.append(f"K={k}: relay stages p50 {stages}; Chromium jitter buffer "
                         f"{[round(x, 1) if x else None for x in extra['jitter_buffer_ms']]} ms/frame, "
                         f"fps {[round(x or 0) for x in extra['fps']]} "
                         f"(window {time.monotonic() - t0:.0f} s)")
            print(lines[-1], flush=True)
    finally:
        drone.terminate()
        relay.terminate()
    print()
    print("\n".join(lines))
    print()
    print("\n".join(notes))
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
