"""The relay short of CPU: held to a share of one core (a cgroup), a stamped WHIP probe watched
beside N transcoded RTMP drones, each watched on "mid".

    python -m bench.overload --drones 0,2,4,6 --seconds 15 [--cores 1.0]

For each N, one run with the relay held to ``--cores`` (cgroup v1 cpu.cfs_quota_us, or v2
cpu.max). The demand is the relay's CPU over the same window in a run without a limit
(``--demand``; the overload factor is demand / cores). Printed per run: the probe's age
(drone capture → decoded at the viewer, read from the picture's stamp) p50/p95 and its frame
rate; for the drones, the relay-held age of what was sent (arrival → sent, the relay's own
histogram, p95 of the worst drone) and the frames delivered per second against the 30 sent;
what the relay's governor says (overloaded, what it shed). Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import (
    PY,
    ROOT,
    LoadGroup,
    cpu_seconds,
    free_port,
    get_json,
    relay_config,
    start_relay,
    stop_processes,
    wait_until,
)

LADDER = ('[[renditions]]\nname = "mid"\nheight = 540\nbitrate_kbps = 1200\n'
          '[[renditions]]\nname = "low"\nheight = 360\nbitrate_kbps = 600\n')


class CpuLimit:
    """A cgroup holding one process to ``cores`` of CPU (v1 cpu controller, else v2)."""

    def __init__(self, cores: float) -> None:
        name = f"bench-overload-{os.getpid()}"
        v1 = Path("/sys/fs/cgroup/cpu")
        if (v1 / "cpu.cfs_quota_us").exists():
            self.dir = v1 / name
            self.dir.mkdir(exist_ok=True)
            (self.dir / "cpu.cfs_period_us").write_text("100000")
            (self.dir / "cpu.cfs_quota_us").write_text(str(int(100000 * cores)))
        else:
            self.dir = Path("/sys/fs/cgroup") / name
            self.dir.mkdir(exist_ok=True)
            (self.dir / "cpu.max").write_text(f"{int(100000 * cores)} 100000")

    def add(self, pid: int) -> None:
        (self.dir / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.dir.rmdir()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100 * len(v)))]


def run(n: int, seconds: float, cores: float | None) -> dict[str, Any]:
    rtmp = free_port()
    text = relay_config(LADDER + f"[rtmp]\nenabled = true\nport = {rtmp}\n")
    text = text.replace('log_level = "warning"', 'log_level = "warning"\nname = "bench"')
    limit = CpuLimit(cores) if cores else None
    procs: list[Any] = []
    group = LoadGroup()
    relay, base = start_relay(text, on_start=limit.add if limit else None)
    try:
        procs.append(subprocess.Popen([PY, "-m", "drone_sim", "--whip", f"{base}/whip/probe"],
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i in range(n):
            procs.append(subprocess.Popen(
                [PY, "-m", "drone_sim", "--protocol", "rtmp", "--to",
                 f"rtmp://127.0.0.1:{rtmp}/live/d{i}"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        names = ["probe"] + [f"d{i}" for i in range(n)]
        wait_until(lambda: all(s["state"] == "live" for s in get_json(base + "/api/streams")["streams"]
                               if s["name"] in names)
                   and len([s for s in get_json(base + "/api/streams")["streams"]
                            if s["name"] in names]) == len(names), 60, "all live")
        probe = subprocess.Popen([PY, "-m", "bench.loadviewer", "--check", "--whep",
                                  f"{base}/whep/probe?rendition=mid", "--count", "1"],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(probe)
        for i in range(n):
            group.spawn(["--whep", f"{base}/whep/d{i}?rendition=mid"], 1)
        time.sleep(6)  # joined, encoders started, settled
        c0, t0 = cpu_seconds(relay.pid), time.monotonic()
        counts0 = group.counts()
        stamps0 = _probe_doc(probe)
        time.sleep(seconds)
        dt = time.monotonic() - t0
        cpu = (cpu_seconds(relay.pid) - c0) / dt
        counts1 = group.counts()
        doc = _probe_doc(probe)
        streams = {s["name"]: s for s in get_json(base + "/api/streams")["streams"]}
        stats = {name: get_json(f"{base}/api/streams/{name}/stats") for name in names}
    finally:
        stop_processes([*procs, relay])
        group.stop()
        if limit:
            limit.remove()
    fresh = max(1, doc.get("stamps", 0) - stamps0.get("stamps", 0))
    ages = doc.get("ages", [])[-fresh:]
    drone_p95 = [((stats[nm]["relay_latency"].get("mid") or {}).get("relay_ms") or {}).get("p95")
                 for nm in names[1:]]
    delivered = [(b - a) / dt for a, b in zip(counts0, counts1, strict=False)]
    gov = streams.get("probe", {}).get("overload") or {}
    return {
        "drones": n, "cores": cores, "relay_cpu": round(cpu, 2),
        "probe_age_p50": pct(ages, 50), "probe_age_p95": pct(ages, 95),
        "probe_fps": round((doc.get("stamps", 0) - stamps0.get("stamps", 0)) / dt, 1),
        "drones_relay_p95_worst": max((p for p in drone_p95 if p is not None), default=None),
        "drones_fps": [round(f, 1) for f in delivered],
        "overload": gov,
    }


def _probe_doc(p: subprocess.Popen[str]) -> dict[str, Any]:
    """The probe viewer's newest JSON line (it prints one a second)."""
    assert p.stdout is not None
    os.set_blocking(p.stdout.fileno(), False)
    last: dict[str, Any] = getattr(p, "_last", {})
    while True:
        line = p.stdout.readline()
        if not line:
            break
        with contextlib.suppress(ValueError):
            last = json.loads(line)
    p._last = last  # type: ignore[attr-defined]
    return last


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drones", default="0,2,4,6", help="comma-separated N")
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--cores", type=float, default=1.0, help="the relay's CPU limit")
    p.add_argument("--demand", action="store_true", help="also run each N without a limit")
    args = p.parse_args()
    print(f"{'N':>2} {'limit':>5} {'relay cores':>11} {'probe p50/p95 ms':>17} {'probe fps':>9} "
          f"{'drones relay p95':>16}  drones fps / overload")
    for n in (int(x) for x in args.drones.split(",")):
        for cores in ([None] if args.demand else []) + [args.cores]:
            r = run(n, args.seconds, cores)
            ages = f"{r['probe_age_p50']}/{r['probe_age_p95']}"
            print(f"{n:>2} {cores or '-':>5} {r['relay_cpu']:>11} {ages:>17} {r['probe_fps']:>9} "
                  f"{r['drones_relay_p95_worst']!s:>16}  {r['drones_fps']} {json.dumps(r['overload'])}",
                  flush=True)


if __name__ == "__main__":
    main()
