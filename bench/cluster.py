"""A cluster of relays on Redis: what an edge costs the origin, what a node's death costs
its viewers, what the extra hop adds to the picture's age.

    .venv/bin/python -m bench.cluster [--seconds 8] [--viewers 3]

Four relay processes (nodes a-d) on loopback and Debian's redis-server (no persistence);
the simulated drone (640x360@30, stamped) publishes to a. Load viewers (aiortc peers that
count frames without decoding: bench/loadviewer.py) watch the passthrough rung.

1. **The origin's CPU** (cores, from /proc): idle with the drone; with 1..N viewers on a
   itself; with 1..N edges (b, c, d: each with two load viewers), each edge one pull from a.
   Target: an extra edge costs the origin no more than one viewer, whatever it serves.
2. **The edge's added delay**: two stamp-reading viewers at once, one on a, one on b (both
   passthrough): glass-to-glass p50/p95 (drone capture → decoded, from the pixels).
   Target: an edge adds ≤ 15 ms p95.
3. **A node's death**: a viewer on c, a SIGKILL of a; the drone (two addresses, a then b)
   redials; time to b's claim and to c's picture again.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import PY, ROOT, LoadGroup, cpu_seconds, free_port, get_json, stop_processes, wait_until
from relay.webrtc import use_host_addresses
from tests.helpers import Drone, WhepViewer, wait_for

NODES = "abcd"


def node_toml(name: str, port: int, redis_port: int) -> str:
    return f"""
[server]
host = "127.0.0.1"
port = {port}
name = "{name}"
log_level = "warning"

[[renditions]]
name = "high"
height = 360
bitrate_kbps = 1200

[media]
default_mode = "both"

[webrtc]
ice_addresses = ["127.0.0.1"]

[limits]
sessions_per_client = 1000
offers_per_client_per_min = 10000
viewers_per_stream = 1000
viewers_total = 1000

[cluster]
redis = "redis://127.0.0.1:{redis_port}/0"
url = "http://127.0.0.1:{port}"
linger_s = 2

[streams.drone1]
"""


class Bench:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
        self.redis_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports = {n: free_port() for n in NODES}
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, n: str) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    def start(self) -> None:
        assert shutil.which("redis-server"), "redis-server is missing: scripts/setup.sh --dev installs it"
        redis = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                 "--appendonly", "no"]
        self.procs.append(subprocess.Popen(redis, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for n in NODES:
            cfg = self.dir / f"{n}.toml"
            cfg.write_text(node_toml(n, self.ports[n], self.redis_port))
            proc = subprocess.Popen([PY, "-m", "relay", "--config", str(cfg)], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.nodes[n] = proc
            self.procs.append(proc)
        for n in NODES:
            wait_until(lambda n=n: len(get_json(self.url(n) + "/api/streams")["nodes"]) == len(NODES),
                       30, f"node {n} in the cluster")

    def stop(self) -> None:
        stop_processes(self.procs)
        shutil.rmtree(self.dir, ignore_errors=True)


async def cores(pid: int, seconds: float) -> float:
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


async def settle(group: LoadGroup, want: int) -> None:
    deadline = time.monotonic() + 30
    while group.connected() < want or min(group.counts() or [0]) < 30:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{group.connected()} of {want} load viewers connected")
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)


async def origin_cost(b: Bench, seconds: float, n: int) -> list[tuple[str, float]]:
    pid = b.nodes["a"].pid
    rows = [("idle (drone only)", await cores(pid, seconds))]
    for k in range(1, n + 1):
        group = LoadGroup()
        group.spawn(["--whep", f"{b.url('a')}/whep/drone1?rendition=source", "--channels"], k)
        try:
            await settle(group, k)
            rows.append((f"{k} viewer(s) on the origin", await cores(pid, seconds)))
        finally:
            group.stop()
    await gone(b)
    for k in range(1, min(n, len(NODES) - 1) + 1):
        group = LoadGroup()
        for edge in NODES[1:1 + k]:
            group.spawn(["--whep", f"{b.url(edge)}/whep/drone1?rendition=source"], 2)
        try:
            await settle(group, 2 * k)
            pulls = len(get_json(b.url("a") + "/api/streams/drone1/stats")["viewers"])
            what = f"{k} edge(s), 2 viewers each ({pulls} pull(s) at the origin)"
            rows.append((what, await cores(pid, seconds)))
        finally:
            group.stop()
        await gone(b)
    return rows


async def gone(b: Bench) -> None:
    """Until the origin serves nobody (load viewers end without a goodbye; edges linger 2 s)."""
    await wait_for(lambda: not get_json(b.url("a") + "/api/streams/drone1/stats")["viewers"], 60,
                   "the origin's sessions to end")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def edge_delay(b: Bench, seconds: float) -> tuple[list[float], list[float]]:
    direct = WhepViewer(b.url("a"), "drone1", rendition="source")
    edge = WhepViewer(b.url("b"), "drone1", rendition="source")
    await direct.start()
    await edge.start()
    try:
        await asyncio.sleep(3)
        n0, m0 = len(direct.seen.stamps), len(edge.seen.stamps)
        await asyncio.sleep(seconds)
        ages = [[t * 1000 - s.capture_ms for s, t in v.seen.stamps[k:]]
                for v, k in ((direct, n0), (edge, m0))]
        return ages[0], ages[1]
    finally:
        await direct.close()
        await edge.close()


async def longest_freeze(watcher: WhepViewer, seconds: float) -> float:
    """The longest time (s) in ``seconds`` without a new frame at ``watcher``, sampled each 20 ms."""
    n, since, worst = watcher.seen.frames, time.monotonic(), 0.0
    end = since + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.02)
        t = time.monotonic()
        if watcher.seen.frames != n:
            n, since = watcher.seen.frames, t
        worst = max(worst, t - since)
    return worst


async def death(b: Bench, drone: Drone, rendition: str) -> tuple[float, float, float, float]:
    watcher = WhepViewer(b.url("c"), "drone1", rendition=rendition, read_stamps=False)
    await watcher.start()
    try:
        deadline = time.monotonic() + 20
        while watcher.seen.frames < 30:
            assert time.monotonic() < deadline, "no picture on c"
            await asyncio.sleep(0.1)
        b.nodes["a"].send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        t_claim = None
        n = watcher.seen.frames
        last, t_pic = n, None
        while time.monotonic() - t_kill < 40:
            await asyncio.sleep(0.05)
            if t_claim is None:
                doc = get_json(b.url("b") + "/api/streams/drone1")
                if doc.get("publisher") and doc["publisher"]["kind"] == "whip" and doc["state"] == "live":
                    t_claim = time.monotonic()
            if t_claim is not None and watcher.seen.frames > last + 5:
                t_pic = time.monotonic()
                break
            if t_claim is None:
                last = watcher.seen.frames
        assert t_claim is not None and t_pic is not None, "the stream did not come back"
        freeze = await longest_freeze(watcher, 6.0)
        return t_claim - t_kill, t_pic - t_claim, t_pic - t_kill, freeze
    finally:
        await watcher.close()


async def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="each CPU and delay window (default 8)")
    p.add_argument("--parts", default="123", help="which parts to run, e.g. 3 (default 123)")
    p.add_argument("--rendition", default="source", help="what c's viewer watches in part 3 (source, high)")
    p.add_argument("--viewers", type=int, default=3,
                   help="viewers and edges added, at most 3 edges (default 3)")
    args = p.parse_args()
    use_host_addresses(["127.0.0.1"])
    b = Bench()
    drone = None
    try:
        b.start()
        drone = Drone([f"{b.url('a')}/whip/drone1", f"{b.url('b')}/whip/drone1"])
        await wait_for(lambda: get_json(b.url("a") + "/api/streams/drone1")["state"] == "live", 30,
                       "drone live on a")
        if "1" in args.parts:
            await cost_part(b, args)
        if "2" in args.parts:
            await delay_part(b, args)
        if "3" in args.parts:
            await death_part(b, drone, args.rendition)
    finally:
        if drone is not None:
            await drone.stop()
        b.stop()


async def cost_part(b: Bench, args: argparse.Namespace) -> None:
    rows = await origin_cost(b, args.seconds, args.viewers)
    idle = rows[0][1]
    print("\n1. The origin's CPU (cores)")
    print(f"   {'':52s} {'cores':>6s} {'added':>6s}")
    for what, c in rows:
        print(f"   {what:52s} {c:6.3f} {c - idle:+6.3f}")
    per_viewer = (rows[args.viewers][1] - idle) / args.viewers
    k = min(args.viewers, len(NODES) - 1)
    per_edge = (rows[-1][1] - idle) / k
    ratio = per_edge / per_viewer if per_viewer > 0 else float("nan")
    print(f"   per viewer on the origin {per_viewer:.3f} cores; per edge (2 viewers each) "
          f"{per_edge:.3f} cores; ratio edge/viewer {ratio:.2f} (target <= 1)")


async def delay_part(b: Bench, args: argparse.Namespace) -> None:
    direct, edge = await edge_delay(b, args.seconds)
    print("\n2. Glass-to-glass (drone capture -> decoded), passthrough, at once")
    for what, ages in (("direct on the origin:", direct), ("through an edge:     ", edge)):
        print(f"   {what} p50 {pct(ages, .5):6.1f} ms  p95 {pct(ages, .95):6.1f} ms  "
              f"({len(ages)} frames)")
    print(f"   added by the edge:    p50 {pct(edge, .5) - pct(direct, .5):+6.1f} ms  "
          f"p95 {pct(edge, .95) - pct(direct, .95):+6.1f} ms (target <= 15 ms p95)")


async def death_part(b: Bench, drone: Drone, rendition: str) -> None:
    claim, picture, total, freeze = await death(b, drone, rendition)
    print(f"\n3. SIGKILL of the origin (drone with two addresses, a then b), {rendition} on c")
    print(f"   drone live on b after {claim:.2f} s (its silence watchdog 3 s; a's claim lapses "
          "within 3 s)")
    print(f"   c's viewer has the picture again {picture:.2f} s later; death to picture "
          f"{total:.2f} s")
    print(f"   then the longest freeze in 6 s: {freeze:.2f} s (target <= 0.5 s)")

if __name__ == "__main__":
    asyncio.run(main())
