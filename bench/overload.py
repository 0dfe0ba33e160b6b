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

``--forward``: the relay is a command vehicle forwarding the probe to a second relay (the
centre, not limited) over WHIP; a second stamped viewer watches the probe there, and its
age (capture → decoded at the centre's viewer) is printed beside the vehicle's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
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


def clip() -> Path:
    """20 s of 1280x720 at 30 fps, H.264 as a drone sends it (2.5 Mbit/s, a keyframe every 2 s)."""
    path = Path(tempfile.gettempdir()) / "bench-overload-720p30.flv"
    if not path.exists():
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=30", "-t", "20", "-c:v", "libx264", "-preset",
                        "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "60",
                        "-b:v", "2500k", "-f", "flv", str(path)], check=True)
    return path


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100 * len(v)))]


def run(n: int, seconds: float, cores: float | None, profile: str | None = None, extra: str = "",
        verbose: bool = False, screenshots: str = "", forward: bool = False,
        also: str = "") -> dict[str, Any]:
    rtmp = free_port()
    procs: list[Any] = []
    centre_probe = None
    if forward:  # the centre: not limited, as the control centre's box
        quiet = 'log_level = "warning"'
        centre, centre_base = start_relay(relay_config(LADDER).replace(quiet, quiet + '\nname = "centre"'))
        procs.append(centre)
        extra = (f'[streams.probe]\nforward = ["{centre_base}/whip/probe"]\nforward_token = "bench-forward"\n'
                 + extra)
    text = relay_config(LADDER + f"[rtmp]\nenabled = true\nport = {rtmp}\n" + extra)
    text = text.replace('log_level = "warning"', 'log_level = "warning"\nname = "bench"')
    limit = CpuLimit(cores) if cores else None
    group = LoadGroup()
    relay, base = start_relay(text, on_start=limit.add if limit else None)
    try:
        procs.append(subprocess.Popen([PY, "-m", "drone_sim", "--whip", f"{base}/whip/probe"],
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i in range(n):  # a pre-encoded 720p30 clip, copied: the drones cost almost no CPU
            if i:  # started across one GOP (2 s): independent drones' keyframes do not coincide
                time.sleep(2.0 / n)
            procs.append(subprocess.Popen(
                ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip()),
                 "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/d{i}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        names = ["probe"] + [f"d{i}" for i in range(n)]
        wait_until(lambda: all(s["state"] == "live" for s in get_json(base + "/api/streams")["streams"]
                               if s["name"] in names)
                   and len([s for s in get_json(base + "/api/streams")["streams"]
                            if s["name"] in names]) == len(names), 60, "all live")
        probe = _checker(f"{base}/whep/probe?rendition=mid")
        procs.append(probe)
        if forward:
            wait_until(lambda: any(st["name"] == "probe" and st["state"] == "live" for st in
                                   get_json(centre_base + "/api/streams")["streams"]), 60, "forwarded")
            centre_probe = _checker(f"{centre_base}/whep/probe?rendition=mid")
            procs.append(centre_probe)
        for i in range(n):
            group.spawn(["--whep", f"{base}/whep/d{i}?rendition=mid"], 1)
            if also:  # a second viewer per drone, on another rung (two encoders per drone)
                group.spawn(["--whep", f"{base}/whep/d{i}?rendition={also}"], 1)
        per = 2 if also else 1
        wait_until(lambda: len(group.counts()) == per * n and _probe_doc(probe).get("stamps"), 60, "viewers")
        joined = time.monotonic()
        time.sleep(2)  # encoders started
        settle_s = _settle(base, 45.0, joined)  # the window starts at the governor's steady level
        spy = None
        if profile:  # where the relay's CPU goes (py-spy, every thread, native frames)
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(relay.pid), "-o", profile, "-d", str(int(seconds)),
                 "-f", "raw", "--nonblocking", "--threads"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        others = [p.pid for p in procs] + [p.pid for p in group.procs]
        o0 = sum(_cpu(pid) for pid in others)
        c0, t0 = cpu_seconds(relay.pid), time.monotonic()
        threads0 = thread_cpu(relay.pid)
        counts0 = group.counts()
        stamps0 = _probe_doc(probe)
        centre0 = _probe_doc(centre_probe) if centre_probe else {}
        deepest: list[str] = []  # the most the governor shed at any second of the window
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            listed = get_json(base + "/api/streams")["streams"]
            gov_now = next((s.get("overload") or {} for s in listed if s["name"] == "probe"), {})
            steps = gov_now.get("shed_steps") or []
            if verbose:
                print(f"   t+{time.monotonic() - t0:4.1f} s level {gov_now.get('level')} "
                      f"evidence {gov_now.get('evidence')}", flush=True)
            deepest = steps if len(steps) > len(deepest) else deepest
        dt = time.monotonic() - t0
        cpu = (cpu_seconds(relay.pid) - c0) / dt
        threads1 = thread_cpu(relay.pid)
        by_thread = {k: round((v - threads0.get(k, 0.0)) / dt, 3) for k, v in threads1.items()
                     if v - threads0.get(k, 0.0) > 0.005 * dt}
        others_cpu = (sum(_cpu(pid) for pid in others) - o0) / dt
        counts1 = group.counts()
        doc = _probe_doc(probe)
        centre_doc = _probe_doc(centre_probe) if centre_probe else {}
        streams = {s["name"]: s for s in get_json(base + "/api/streams")["streams"]}
        stats = {name: get_json(f"{base}/api/streams/{name}/stats") for name in names}
        if spy is not None:  # it writes the profile when its -d is over: before the relay stops
            spy.wait(30)
        if screenshots:  # what a commander and the wall see now (after the window's figures)
            asyncio.run(_screens(base, screenshots, n))
    finally:
        stop_processes([*procs, relay])
        group.stop()
        if limit:
            limit.remove()
    fresh = max(1, doc.get("stamps", 0) - stamps0.get("stamps", 0))
    ages = doc.get("ages", [])[-fresh:]
    # (each stream's worst rung: with --also a viewer may be moved from "mid" to the other)
    relay_p95 = [max((p for p in (((v.get("relay_ms") or {}).get("p95")) for v in
                                   stats[nm]["relay_latency"].values()) if p is not None), default=None)
                 for nm in names]
    drone_p95 = relay_p95[1:]
    delivered = [(b - a) / dt for a, b in zip(counts0, counts1, strict=False)]
    gov = streams.get("probe", {}).get("overload") or {}
    centre_n = centre_doc.get("stamps", 0) - centre0.get("stamps", 0)
    return {
        "centre_age_p95": pct(centre_doc.get("ages", [])[-max(1, centre_n):], 95) if forward else None,
        "centre_fps": round(centre_n / dt, 1) if forward else None,
        "drones": n, "cores": cores, "relay_cpu": round(cpu, 2), "others_cpu": round(others_cpu, 2),
        "probe_age_p50": pct(ages, 50), "probe_age_p95": pct(ages, 95), "probe_relay_p95": relay_p95[0],
        "stages": {nm: {st: v.get("p95") for st, v in
                        ((stats[nm]["relay_latency"].get("mid") or {}).get("stages_ms") or {}).items()}
                   for nm in names[:2]},
        "probe_skipped": streams.get("probe", {}).get("skipped_for_age"),
        "probe_fps": round((doc.get("stamps", 0) - stamps0.get("stamps", 0)) / dt, 1),
        "drones_relay_p95_worst": max((p for p in drone_p95 if p is not None), default=None),
        "drones_fps": [round(f, 1) for f in delivered],
        "overload": gov,
        "deepest": deepest,
        "threads": dict(sorted(by_thread.items(), key=lambda kv: -kv[1])),
        "settle_s": settle_s,
        "encoders": sum(sum(1 for r in s.get("renditions", []) if r.get("encoding"))
                        for s in streams.values() if s["name"] in names),
    }


def _settle(base: str, bound_s: float, joined: float, steady_s: float = 4.0) -> float:
    """Seconds until the governor has held one level for ``steady_s`` (at most ``bound_s``):
    what overload costs at first (the ramp while the relay sheds step by step) is this
    figure; the window's ages are those of the level it then holds."""
    t0 = time.monotonic()
    level, since = None, t0
    while time.monotonic() - t0 < bound_s:
        listed = get_json(base + "/api/streams")["streams"]
        now_level = next((s.get("overload") or {} for s in listed if s["name"] == "probe"), {}).get("level")
        if now_level != level:
            level, since = now_level, time.monotonic()
        elif time.monotonic() - since >= steady_s:
            break
        time.sleep(0.5)
    return round(time.monotonic() - joined - steady_s, 1)


async def _screens(base: str, prefix: str, n: int) -> None:
    """The view page (phone-sized) and the wall (1920x1080) of the overloaded relay, as PNGs."""
    from tests.browser import chromium

    async with chromium() as ctx:
        phone = await ctx.new_page()
        await phone.set_viewport_size({"width": 390, "height": 844})
        await phone.goto(f"{base}/view/probe")
        await phone.wait_for_function("window.__player && window.__player.stats.fps > 0", timeout=30_000)
        await asyncio.sleep(4)
        await phone.screenshot(path=f"{prefix}-view-{n}.png")
        wall = await ctx.new_page()
        await wall.set_viewport_size({"width": 1920, "height": 1080})
        await wall.goto(f"{base}/wall")
        await asyncio.sleep(8)
        await wall.screenshot(path=f"{prefix}-wall-{n}.png")
        # What the probe's age figures were, on the phone and on its wall tile, for 5 s
        pick = ("s => ({latency: s.latency, p95: s.p95, age: s.age, picture: s.picture, kind: s.kind, "
                "offset: s.offset === null ? null : Math.round(s.offset), fps: s.fps})")
        for _ in range(5):
            on_phone = await phone.evaluate(f"({pick})(window.__player.stats)")
            on_wall = await wall.evaluate(f"({pick})(window.__wall.get('probe').player.stats)")
            print(f"   probe's figures: phone {json.dumps(on_phone)}; wall tile {json.dumps(on_wall)}",
                  flush=True)
            await asyncio.sleep(1)


CHECKER_ARGS: list[str] = []  # --aiortc-jitter-buffer: the stamped viewers release frames late


def _checker(url: str) -> subprocess.Popen[str]:
    """A stamped viewer (decodes, reads each picture's capture stamp; one JSON line a second).
    It releases each frame on its RTP marker bit, as a browser does (aiortc's own buffer waits
    for the next frame's first packet: a frame interval more, 200 ms at a shed 5 fps)."""
    return subprocess.Popen([PY, "-m", "bench.loadviewer", "--check", "--whep", url, "--count", "1",
                             *CHECKER_ARGS], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per kind of thread of a process (the name without its stream and number:
    "pipe", "rtmp", "video-decoder", "MainThread"...), from /proc."""
    import re

    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            kind = re.sub(r"[-_].*$|\d+$", "", name) or name
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except Exception:
        return 0.0


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


def _settings(pairs: list[str]) -> str:
    tables: dict[str, list[str]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        table, _, name = key.partition(".")
        tables.setdefault(table, []).append(f"{name} = {value}")
    return "".join(f"[{t}]\n" + "\n".join(lines) + "\n" for t, lines in tables.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drones", default="0,2,4,6", help="comma-separated N")
    p.add_argument("--seconds", type=float, default=30,
                   help="the window (the drones' relay-held p95 is the relay's last 30 s: a shorter "
                        "window's figure includes what came before it)")
    p.add_argument("--cores", type=float, default=1.0, help="the relay's CPU limit")
    p.add_argument("--demand", action="store_true", help="also run each N without a limit")
    p.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                   help="a relay setting (TOML value), e.g. overload.worker_nice=0; may repeat")
    p.add_argument("--stages", action="store_true", help="also print the relay's stage p95s")
    p.add_argument("--screenshots", default="", metavar="PREFIX",
                   help="after each window, PNGs of the view page (phone) and the wall: PREFIX-view-N.png")
    p.add_argument("--verbose", action="store_true", help="the governor's level and evidence each second")
    p.add_argument("--aiortc-jitter-buffer", action="store_true",
                   help="the stamped viewers with aiortc's own jitter buffer (figures before 8 December)")
    p.add_argument("--forward", action="store_true",
                   help="forward the probe to a second relay (not limited) and watch it there too")
    p.add_argument("--profile", help="py-spy's raw profile of the relay during the window (one N)")
    p.add_argument("--also", default="", metavar="RENDITION",
                   help="a second viewer per drone on this rung (the governor's rungs step closes one)")
    args = p.parse_args()
    if args.aiortc_jitter_buffer:
        CHECKER_ARGS.append("--aiortc-jitter-buffer")
    print(f"{'N':>2} {'limit':>5} {'relay cores':>11} {'probe p50/p95 ms':>17} {'probe relay p95':>15} "
          f"{'probe fps':>9} {'drones relay p95':>16}  drones fps / shed")
    for n in (int(x) for x in args.drones.split(",")):
        for cores in ([None] if args.demand else []) + [args.cores]:
            r = run(n, args.seconds, cores, args.profile, _settings(args.set), args.verbose, args.screenshots,
                    args.forward, args.also)
            ages = f"{r['probe_age_p50']}/{r['probe_age_p95']}"
            gov = r["overload"]
            print(f"{n:>2} {cores or '-':>5} {r['relay_cpu']:>11} {ages:>17} {r['probe_relay_p95']!s:>15} "
                  f"{r['probe_fps']:>9} {r['drones_relay_p95_worst']!s:>16}  {r['drones_fps']} "
                  f"{gov.get('shed_steps')} (deepest {r['deepest']}) skipped {gov.get('skipped_total')} "
                  f"probe skipped {r['probe_skipped']} (clients' cores {r['others_cpu']}; "
                  f"steady {r['settle_s']} s after the viewers joined; {r['encoders']} encoders)",
                  flush=True)
            if args.forward:
                print(f"   at the centre: probe p95 {r['centre_age_p95']} ms, {r['centre_fps']} fps",
                      flush=True)
            if args.stages:
                print(f"   stage p95 ms (probe, d0): {json.dumps(r['stages'])}", flush=True)
                print(f"   the relay's cores by thread: {json.dumps(r['threads'])}", flush=True)


if __name__ == "__main__":
    main()
