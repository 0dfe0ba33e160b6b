"""Fan-out benchmark: one 1280x720@30 feed, N viewers; our relay side by side with Janus.

    sudo .venv/bin/python -m bench.fanout [--viewers 1,10,25,50] [--window 10]

Per N (once the relay's overload governor sheds nothing: N viewers joining at once are a burst
of handshakes it may shed frame rate for; the wait is printed as settle_s) it prints the
server's CPU (cores), frames delivered per viewer (min and median %
of the frames the source produced in the window), server memory, the marginal CPU per
added viewer, and the CPU of the load viewers and of the whole machine (two cores: the
load viewers saturate first). The relay transcodes (decode, overlay, one libx264 encode)
and fans out; Janus forwards ffmpeg's RTP. Both on one baseline: the share of the frames the
server received (the relay's frames_in; for Janus, the frames FFmpeg sent it, from its
-progress count, so a saturated FFmpeg does not count against Janus), and one extra viewer
that decodes (and, for the relay, checks stamps) beside both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    ROOT,
    LoadGroup,
    cpu_seconds,
    frames_sent,
    get_json,
    relay_config,
    rss_mb,
    start_drone,
    start_ffmpeg_rtp,
    start_janus,
    start_relay,
    wait_until,
)
from bench.netns import ADDRESS, ensure_netns

RELAY_CONFIG = relay_config()


def measure(server_pid: int, group: LoadGroup, n: int, window: float, warmup: float,
            source_frames: Any, settled: Any = None) -> dict[str, Any]:
    wait_until(lambda: group.connected() >= n, 60, f"{n} viewers connected")
    time.sleep(warmup)
    t_settle = time.monotonic()
    if settled is not None:  # (the relay: N peers' handshakes at once are a burst it sheds for)
        while not settled() and time.monotonic() - t_settle < 40:
            time.sleep(0.5)
    settle_s = round(time.monotonic() - t_settle, 1)
    c0, l0, f0 = cpu_seconds(server_pid), group.cpu_seconds(), source_frames()
    counts0 = group.counts()
    psutil.cpu_percent(None)
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    machine = psutil.cpu_percent(None) / 100 * psutil.cpu_count()
    c1, l1, f1 = cpu_seconds(server_pid), group.cpu_seconds(), source_frames()
    counts1 = group.counts()
    produced = max(1, f1 - f0)
    pct = [100.0 * (b - a) / produced for a, b in zip(counts0, counts1, strict=False)][:n]
    return {
        "viewers": n,
        "server_cores": round((c1 - c0) / dt, 3),
        "delivered_min_pct": round(min(pct), 1) if pct else 0.0,
        "delivered_median_pct": round(statistics.median(pct), 1) if pct else 0.0,
        "server_rss_mb": round(rss_mb(server_pid), 1),
        "load_viewer_cores": round((l1 - l0) / dt, 2),
        "machine_cores": round(machine, 2),
        "settle_s": settle_s,
    }


def run_relay(ns: list[int], window: float, warmup: float) -> list[dict[str, Any]]:
    relay, base = start_relay(RELAY_CONFIG)
    drone = start_drone(base)
    url = f"{base}/whep/drone1?rendition=high"

    def frames_in() -> int:
        return int(get_json(base + "/api/streams/drone1")["frames_in"])

    rows = []
    check = LoadGroup()
    check.spawn(["--whep", url, "--check"], 1)
    try:
        for n in ns:
            g = LoadGroup()
            g.spawn(["--whep", url], n)
            try:
                row = measure(relay.pid, g, n, window, warmup, frames_in, lambda: not (
                    get_json(base + "/api/streams/drone1").get("overload") or {}).get("overloaded"))
                doc = get_json(base + "/api/streams/drone1")
                row["encoders"] = doc["encoders"]
                # The governor's word: short of CPU the relay halves its frame rate rather than
                # send late pictures, and "delivered" (of the frames it received) falls with it.
                row["shed"] = (doc.get("overload") or {}).get("shed_steps") or []
                check.poll()
                last = next(iter(check.last.values()), {})
                row["check_stamps"] = last.get("stamps")
                row["check_advancing"] = last.get("advancing")
                row["check_age_p50_ms"] = last.get("age_p50")
                rows.append(row)
                print("relay", json.dumps(row), flush=True)
            finally:
                g.stop()
            time.sleep(2)
    finally:
        check.stop()
        drone.terminate()
        relay.terminate()
        relay.wait(10)
    return rows


def run_janus(ns: list[int], window: float, warmup: float) -> list[dict[str, Any]]:
    janus, base, rtp_port = start_janus()
    progress = Path(tempfile.mkdtemp(prefix="bench-fanout-")) / "ffmpeg-progress"
    ffmpeg = start_ffmpeg_rtp(rtp_port, progress)
    rows = []
    check = LoadGroup()  # the same decoding viewer as beside the relay
    check.spawn(["--janus", base, "--mountpoint", "1", "--ice-address", ADDRESS, "--check"], 1)
    try:
        for n in ns:
            g = LoadGroup()
            g.spawn(["--janus", base, "--mountpoint", "1", "--ice-address", ADDRESS], n)
            try:
                row = measure(janus.pid, g, n, window, warmup, lambda: frames_sent(progress))
                rows.append(row)
                print("janus", json.dumps(row), flush=True)
            finally:
                g.stop()
            time.sleep(2)
    finally:
        check.stop()
        for proc in (ffmpeg, janus):
            proc.terminate()
            try:
                proc.wait(5)
            except Exception:
                proc.kill()
    return rows


def marginal(rows: list[dict[str, Any]]) -> list[float | None]:
    out: list[float | None] = [None]
    for a, b in itertools.pairwise(rows):
        out.append(round((b["server_cores"] - a["server_cores"]) / (b["viewers"] - a["viewers"]), 4))
    return out


def table(name: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"### {name}", "",
             "| viewers | server cores | marginal cores/viewer | delivered min % | median % "
             "| server MB | load-viewer cores | machine cores |",
             "|---|---|---|---|---|---|---|---|"]
    for r, m in zip(rows, marginal(rows), strict=False):
        lines.append(f"| {r['viewers']} | {r['server_cores']} | {m if m is not None else '—'} | "
                     f"{r['delivered_min_pct']} | {r['delivered_median_pct']} | "
                     f"{r['server_rss_mb']} | {r['load_viewer_cores']} | {r['machine_cores']} |")
    return "\n".join(lines)


def main() -> None:
    ensure_netns()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--viewers", default="1,10,25,50")
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--skip-janus", action="store_true")
    args = p.parse_args()
    ns = [int(x) for x in args.viewers.split(",")]
    results = {"relay": run_relay(ns, args.window, args.warmup)}
    if not args.skip_janus:
        results["janus"] = run_janus(ns, args.window, args.warmup)
    print()
    print(table("relay (transcode 720p, encode once, fan out)", results["relay"]))
    if "janus" in results:
        print()
        print(table("Janus streaming plugin (RTP forward)", results["janus"]))
        # Compare slopes only where both servers still deliver >= 99 % (not saturated).
        ok = [i for i, (r, j) in enumerate(zip(results["relay"], results["janus"], strict=False))
              if min(r["delivered_min_pct"], j["delivered_min_pct"]) >= 99.0]
        if len(ok) >= 2:
            a, b = ok[0], ok[-1]

            def slope(rows: list[dict[str, Any]]) -> float:
                return float((rows[b]["server_cores"] - rows[a]["server_cores"])
                             / (rows[b]["viewers"] - rows[a]["viewers"]))

            rs, js = slope(results["relay"]), slope(results["janus"])
            print(f"\nmarginal CPU per viewer, N={ns[a]}..{ns[b]} (both >= 99 % delivered): "
                  f"relay {rs:.4f}, Janus {js:.4f} cores -> relay/Janus = {rs / js:.2f}x")
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    (out / "bench-fanout.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
