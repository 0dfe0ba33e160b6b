"""What an H.265 source costs the relay against an H.264 one: the same picture (FFmpeg's
testsrc2, 1280x720@30, 2.5 Mbit/s, GOP 2 s) sent as MPEG-TS over UDP, decoded once and
transcoded to one 720p H.264 rung that one viewer watches. Runs alternate between the
codecs (the machine is noisy: compare the ratio, not the absolute figures).

    .venv/bin/python -m bench.hevc [--runs 3] [--window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time

import psutil

from bench.common import free_port, get_json, relay_config, start_relay, wait_until
from tests.helpers import WhepViewer

ENCODERS = {
    "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
             "-x264-params", "keyint=60:repeat-headers=1"],
    "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-tune", "zerolatency",
             "-x265-params", "log-level=error:keyint=60:repeat-headers=1"],
}


def feed(codec: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-t", "900", "-re", "-f", "lavfi", "-i",
         "testsrc2=size=1280x720:rate=30", *ENCODERS[codec], "-pix_fmt", "yuv420p",
         "-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "1000k",
         "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def one(codec: str, window: float) -> dict[str, float]:
    udp = free_port()
    relay, base = start_relay(relay_config(f'[streams.feed]\nsource = "udp://127.0.0.1:{udp}"\n'))
    ff = feed(codec, udp)
    viewer = WhepViewer(base, "feed", rendition="high", read_stamps=False)
    try:
        wait_until(lambda: get_json(base + "/api/streams/feed")["state"] == "live", 30, "feed live")
        await viewer.start()
        await viewer.wait_frames(60, timeout=30)
        await asyncio.sleep(2.0)
        proc = psutil.Process(relay.pid)
        c0, f0, t0 = sum(proc.cpu_times()[:2]), viewer.seen.frames, time.monotonic()
        await asyncio.sleep(window)
        dt = time.monotonic() - t0
        cores = (sum(proc.cpu_times()[:2]) - c0) / dt
        fps = (viewer.seen.frames - f0) / dt
        doc = get_json(base + "/api/streams/feed")
        assert doc["source_codec"] == codec, doc["source_codec"]
        return {"cores": cores, "fps": fps}
    finally:
        await viewer.close()
        ff.terminate()
        relay.terminate()
        ff.wait(10)
        relay.wait(10)


async def run(runs: int, window: float) -> None:
    from relay.webrtc import use_host_addresses

    use_host_addresses(["127.0.0.1"])  # this process's viewer peer offers loopback (the relay is there)
    got: dict[str, list[dict[str, float]]] = {"h264": [], "hevc": []}
    for i in range(runs):
        for codec in (("h264", "hevc") if i % 2 == 0 else ("hevc", "h264")):
            row = await one(codec, window)
            got[codec].append(row)
            print(f"run {i + 1} {codec:>4}: relay {row['cores']:.3f} cores, viewer {row['fps']:.1f} fps",
                  flush=True)
    med = {c: statistics.median(r["cores"] for r in rows) for c, rows in got.items()}
    print(f"\nmedian relay cores per stream: H.264 source {med['h264']:.3f}, H.265 source {med['hevc']:.3f} "
          f"(H.265 / H.264 = {med['hevc'] / med['h264']:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per codec, alternating (default 3)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds measured per run (default 10)")
    a = ap.parse_args()
    asyncio.run(run(a.runs, a.window))


if __name__ == "__main__":
    main()
