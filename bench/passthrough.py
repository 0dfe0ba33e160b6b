"""Passthrough vs transcode: one H.264 1280x720@30 feed (ffmpeg → MPEG-TS/UDP), N viewers.

    sudo .venv/bin/python -m bench.passthrough [--viewers 10] [--window 10]

Per mode: relay CPU (cores), frames delivered per viewer, relay memory and relay-added
latency (arrival of the packet → first packet sent; for transcode it includes decode,
overlay and encode). Passthrough-only decodes nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from bench.common import (
    LoadGroup,
    free_port,
    get_json,
    relay_config,
    start_ffmpeg_feed,
    start_relay,
    wait_until,
)
from bench.fanout import measure
from bench.netns import ensure_netns

CONFIG = relay_config('[streams.feed]\nsource = "udp://127.0.0.1:{udp}"\nmode = "{mode}"\n')


def feed(port: int) -> subprocess.Popen[bytes]:
    return start_ffmpeg_feed("mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316")


def run(mode: str, rendition: str, n: int, window: float) -> dict[str, Any]:
    udp = free_port()
    relay, base = start_relay(CONFIG.replace("{udp}", str(udp)).replace("{mode}", mode))
    ff = feed(udp)
    try:
        wait_until(lambda: get_json(base + "/api/streams/feed")["state"] == "live", 30, "feed live")
        group = LoadGroup()
        group.spawn(["--whep", f"{base}/whep/feed?rendition={rendition}"], n)
        started = time.monotonic()
        try:
            row = measure(relay.pid, group, n, window, 3.0,
                          lambda: int((time.monotonic() - started) * 30))
        finally:
            group.stop()
        stats = get_json(base + "/api/streams/feed/stats")
        lat = stats["relay_latency"].get(rendition, {}).get("relay_ms", {})
        doc = get_json(base + "/api/streams/feed")
        row.update(mode=mode, rendition=rendition, encoders=doc["encoders"],
                   frames_decoded=doc["frames_in"], relay_p50_ms=lat.get("p50"),
                   relay_p95_ms=lat.get("p95"), relay_p99_ms=lat.get("p99"))
        print(json.dumps(row), flush=True)
        return row
    finally:
        ff.terminate()
        relay.terminate()
        for p in (ff, relay):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ensure_netns()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--viewers", type=int, default=10)
    p.add_argument("--window", type=float, default=10.0)
    args = p.parse_args()
    rows = [run("passthrough", "source", args.viewers, args.window),
            run("transcode", "high", args.viewers, args.window)]
    print()
    print("| mode | viewers | relay cores | delivered min % | relay MB | decoded frames | encoders "
          "| relay-added p50 / p95 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['viewers']} | {r['server_cores']} | {r['delivered_min_pct']} | "
              f"{r['server_rss_mb']} | {r['frames_decoded']} | {r['encoders']} | "
              f"{r['relay_p50_ms']} / {r['relay_p95_ms']} / {r['relay_p99_ms']} |")


if __name__ == "__main__":
    main()
