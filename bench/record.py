"""What recording costs: relay CPU and relay-added latency with and without the record
(alternating runs in the same session), bytes per hour per stream, and the time to the
first byte of a 30 s clip.

    sudo .venv/bin/python -m bench.record [--window 40] [--rounds 2]

Feed: Debian's ffmpeg, H.264 1280x720@30 at 2.5 Mbit/s over RTMP (what a DJI app sends);
two load viewers on "source" (passthrough) and two on "high" (transcoded), so the latency
figures are those viewers see. The record keeps the source's H.264 (no re-encode).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    LoadGroup,
    cpu_seconds,
    free_port,
    get_json,
    relay_config,
    start_ffmpeg_feed,
    start_relay,
    wait_until,
)
from bench.netns import ensure_netns


def run(record: bool, window: float) -> dict[str, Any]:
    rtmp = free_port()
    rec_dir = Path(tempfile.mkdtemp(prefix="bench-record-"))
    extra = (f"[rtmp]\nenabled = true\nport = {rtmp}\n"
             f"[record]\nenabled = {'true' if record else 'false'}\ndir = \"{rec_dir}\"\n"
             "segment_s = 60\nmin_free_mb = 100\n")
    relay, base = start_relay(relay_config(extra))
    ff = start_ffmpeg_feed("flv", f"rtmp://127.0.0.1:{rtmp}/live/feed")
    group = LoadGroup()
    try:
        wait_until(lambda: get_json(base + "/api/streams/feed")["state"] == "live", 30, "feed live")
        group.spawn(["--whep", f"{base}/whep/feed?rendition=source"], 2)
        group.spawn(["--whep", f"{base}/whep/feed?rendition=high"], 2)
        wait_until(lambda: group.connected() >= 4, 60, "viewers connected")
        time.sleep(3)
        c0, t0 = cpu_seconds(relay.pid), time.monotonic()
        b0 = get_json(base + "/api/streams/feed").get("record", {}).get("bytes_written", 0)
        disk0 = _disk(rec_dir)
        time.sleep(window)
        dt = time.monotonic() - t0
        cores = (cpu_seconds(relay.pid) - c0) / dt
        doc = get_json(base + "/api/streams/feed")
        b1 = doc.get("record", {}).get("bytes_written", 0)
        stats = get_json(base + "/api/streams/feed/stats")
        lat = {r: stats["relay_latency"].get(r, {}).get("relay_ms", {}) for r in ("source", "high")}
        row: dict[str, Any] = {
            "record": record, "relay_cores": round(cores, 3),
            "source_p50_ms": lat["source"].get("p50"), "source_p95_ms": lat["source"].get("p95"),
            "high_p50_ms": lat["high"].get("p50"), "high_p95_ms": lat["high"].get("p95"),
            "dropped": doc.get("record", {}).get("dropped"),
        }
        if record:
            row["mb_per_hour"] = round((b1 - b0) / dt * 3600 / 1e6, 1)
            # What reached the disk over the same window (the open segment grows fragment by
            # fragment): the files' sizes at its end less at its start.
            row["disk_mb_per_hour"] = round((_disk(rec_dir) - disk0) / dt * 3600 / 1e6, 1)
            row["clip30_ttfb_ms"], row["clip30_total_ms"], row["clip30_mb"] = clip_times(base)
        print(json.dumps(row), flush=True)
        return row
    finally:
        group.stop()
        for p in (ff, relay):
            p.terminate()
        for p in (ff, relay):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(rec_dir, ignore_errors=True)


def _disk(rec_dir: Path) -> int:
    return sum(p.stat().st_size for p in rec_dir.rglob("*.mp4"))


def clip_times(base: str) -> tuple[float, float, float]:
    """Median time to first byte and to the last byte of a 30 s clip (5 requests)."""
    first, total, size = [], [], 0
    for _ in range(5):
        start = time.time() - 33
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{base}/api/recordings/feed/clip.mp4?start={start:.3f}&duration=30",
                                    timeout=30) as r:
            r.read(1)
            first.append((time.perf_counter() - t0) * 1000)
            size = 1 + len(r.read())
        total.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(first), 1), round(statistics.median(total), 1), round(size / 1e6, 2)


def main() -> None:
    ensure_netns()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=40.0, help="seconds measured per run (>= 35 for clips)")
    p.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    args = p.parse_args()
    rows = []
    for _ in range(args.rounds):
        rows += [run(False, args.window), run(True, args.window)]
    off = [r for r in rows if not r["record"]]
    on = [r for r in rows if r["record"]]

    def med(rs: list[dict[str, Any]], k: str) -> float:
        vals = [r[k] for r in rs if r.get(k) is not None]
        return statistics.median(vals) if vals else float("nan")

    print()
    print("| record | relay cores | source p50 / p95 ms | high p50 / p95 ms | MB/hour "
          "| clip 30 s TTFB / total ms |")
    print("|---|---|---|---|---|---|")
    for name, rs in (("off", off), ("on", on)):
        disk = (f"{med(rs, 'mb_per_hour'):.0f} | {med(rs, 'clip30_ttfb_ms'):.0f} / "
                f"{med(rs, 'clip30_total_ms'):.0f} |") if name == "on" else "— | — |"
        print(f"| {name} | {med(rs, 'relay_cores'):.3f} | {med(rs, 'source_p50_ms'):.1f} / "
              f"{med(rs, 'source_p95_ms'):.1f} | {med(rs, 'high_p50_ms'):.1f} / "
              f"{med(rs, 'high_p95_ms'):.1f} | {disk}")
    print(f"\nrecording CPU: {med(on, 'relay_cores') - med(off, 'relay_cores'):+.3f} cores "
          f"(ratio on/off {med(on, 'relay_cores') / med(off, 'relay_cores'):.3f}); "
          f"high p95 ratio on/off {med(on, 'high_p95_ms') / med(off, 'high_p95_ms'):.2f}; "
          f"source p95 ratio {med(on, 'source_p95_ms') / med(off, 'source_p95_ms'):.2f}")


if __name__ == "__main__":
    main()
