"""Weak links: per link profile, a Chromium viewer on "auto" beside one on today's fixed
rendition ("high", what a viewer got without choosing), each behind its own shaped link,
and a clean aiortc viewer of "high" whose keyframe rate must not rise.

    sudo .venv/bin/python -m bench.weaklink [--profiles all|clean,lte,...] [--seconds 30]

The lab is made of network namespaces this benchmark creates (tests/netlab.py): the relay
and the feed (Debian's ffmpeg, 1280x720@30 over RTMP, the simulator's stamped picture) in
the benchmark's own namespace, a router, and one namespace per weak viewer. Each viewer's
downlink is shaped with ``tc tbf`` (20 KB bucket, 150 ms queue) and loses a share of its
UDP by ``nft ... numgen random`` (this kernel has no netem). Everything is deleted at the end.

A third viewer is a WHEP player we did not write: aiortc decoding every frame, on "auto",
without the view page's data channels (bench/loadviewer.py --player), behind a link of its
own: its fps over the measured window, its first frame after the answer, and its gaps over
a second (freezes) are printed in a line of their own (``--runs N`` repeats each profile).

Per profile and viewer it prints decoded fps, freezes (> 200 ms) per minute, glass-to-glass
p95 (drone capture -> presented, from the RTP timestamp map), the renditions seen, the time
to adapt down (to a rung that fits) and up (back to "high"): from the link's change to
the first frame presented at such a height (the page notes when the size changed), and
the clean viewer's keyframe rate against its rate with no weak viewer (same run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.browser import CHROMIUM, chromium
from tests.e2e.test_ingest import StampedFfmpeg
from tests.helpers import WhepViewer, start_relay, wait_for
from tests.netlab import Lab, sh

LADDER = [
    {"name": "high", "height": 720, "bitrate_kbps": 2500},
    {"name": "mid", "height": 540, "bitrate_kbps": 1200},
    {"name": "low", "height": 360, "bitrate_kbps": 600},
    {"name": "floor", "height": 360, "bitrate_kbps": 250, "max_fps": 10},
]
KBPS = {r["name"]: int(r["bitrate_kbps"]) for r in LADDER}  # type: ignore[call-overload]
HEIGHT = {r["name"]: int(r["height"]) for r in LADDER}  # type: ignore[call-overload]
# name -> [(at second, rate kbit/s, loss %)]
PROFILES: dict[str, list[tuple[float, int, int]]] = {
    "10M clean": [(0, 10000, 0)],
    "1.5M 5%": [(0, 1500, 5)],
    "800k 2%": [(0, 800, 2)],
    "300k 1%": [(0, 300, 1)],
    "5M>800k>5M": [(0, 5000, 0), (25, 800, 0), (50, 5000, 0)],
}
VIEWERS = {"auto": ("10.204.2", None), "fixed": ("10.204.3", "high"), "player": ("10.204.4", None)}
PAGES = ("auto", "fixed")  # Chromium with the view page; "player": a WHEP player without its channels


@dataclass
class Track:
    samples: list[dict[str, Any]] = field(default_factory=list)  # every 0.5 s


def shape(router: str, dev: str, kbps: int) -> None:
    sh("tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{kbps}kbit", "burst", "20kb",
       "latency", "150ms", ns=router)


def set_loss(lab: Lab, router: str, pct: int) -> None:
    sh("nft", "delete", "table", "inet", "weak", ns=router, check=False)
    if pct:
        rules = "\n".join(f"ip daddr {net}.2 meta l4proto udp numgen random mod 100 < {pct} drop;"
                          for net, _ in VIEWERS.values())
        lab.nft(router, "table inet weak { chain fwd_loss { type filter hook forward priority 0; "
                        f"policy accept;\n{rules}\n}}\n}}\n")


def pct(values: list[float], q: float) -> float | None:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))] if s else None


async def keyframe_rate(viewer: WhepViewer, seconds: float) -> float:
    k0 = viewer.seen.keyframes
    await asyncio.sleep(seconds)
    return (viewer.seen.keyframes - k0) / seconds


async def run_profile(lab: Lab, router: str, devs: dict[str, str], relay: Any, name: str,
                      steps: list[tuple[float, int, int]], seconds: float, clean: WhepViewer,
                      base_kf: float) -> dict[str, dict[str, Any]]:
    total = max(seconds, steps[-1][0] + 25)
    warm = 10.0 if len(steps) == 1 else 0.0
    rate0, loss0 = steps[0][1], steps[0][2]
    for dev in devs.values():
        shape(router, dev, rate0)
    set_loss(lab, router, loss0)
    tracks = {v: Track() for v in PAGES}
    player = lab.spawn(f"{lab.tag}-player", sys.executable, "-m", "bench.loadviewer", "--player",
                       "--whep", f"{relay.url}/whep/d1", "--ice-address", f"{VIEWERS['player'][0]}.2",
                       log=f"player-{name}.log")
    async with chromium(executable=lab.wrapper(f"{lab.tag}-auto", CHROMIUM)) as ca, \
            chromium(executable=lab.wrapper(f"{lab.tag}-fixed", CHROMIUM)) as cf:
        pages = {}
        for v, ctx in (("auto", ca), ("fixed", cf)):
            page = await ctx.new_page()
            rend = VIEWERS[v][1]
            await page.goto(f"{relay.url}/view/d1" + (f"?rendition={rend}" if rend else ""))
            pages[v] = page
        t0 = time.monotonic()
        k0 = clean.seen.keyframes
        step_i = 1
        walls: dict[int, float] = {}  # step -> when the link changed (wall clock)
        kf_start: int | None = None
        t_warm = t0 + warm
        while (t := time.monotonic()) - t0 < total + warm:
            if step_i < len(steps) and t - t0 >= steps[step_i][0] + warm:
                _, r, loss = steps[step_i]
                for dev in devs.values():
                    shape(router, dev, r)
                set_loss(lab, router, loss)
                walls[step_i] = time.time()
                if os.environ.get("WEAKLINK_VERBOSE"):
                    print(f"   link {walls[step_i] % 1000:.1f} -> {r} kbit/s, {loss} %", flush=True)
                step_i += 1
            if kf_start is None and t >= t_warm:
                kf_start, k0 = clean.seen.keyframes, clean.seen.keyframes
            for v, page in pages.items():
                try:
                    st = await page.evaluate("() => window.__player ? window.__player.stats : null")
                except Exception:
                    st = None
                if st:
                    st["t"] = t - t0 - warm
                    tracks[v].samples.append(st)
            await asyncio.sleep(0.5)
        kf = (clean.seen.keyframes - k0) / total
        if os.environ.get("WEAKLINK_VERBOSE"):
            for info in relay.viewers("d1").values():
                if info.auto:
                    for sw in info.switches:
                        print(f"   switch {sw['t'] % 1000:.1f} {sw['from']} -> {sw['to']}: {sw['reason']}")
                    for pr in info.probes:
                        print(f"   probe {pr['t'] % 1000:.1f} {pr}")
                    for smp in info.samples:
                        print("   ", {**smp, "t": round(smp["t"] % 1000, 1)})
        for page in pages.values():  # leave as a commander's tab does: the session ends
            await page.close(run_before_unload=True)
        player.send_signal(signal.SIGINT)
        player.wait(10)
        await wait_for(lambda: len(relay.viewers("d1")) == 1, 30, "weak viewers gone")
    out: dict[str, dict[str, Any]] = {}
    for v, tr in tracks.items():
        meas = [s for s in tr.samples if s["t"] >= 0]
        if not meas:
            out[v] = {"error": "no samples"}
            continue
        fps = [float(s.get("fps") or 0) for s in meas[2:]]
        # The page counts a freeze when the picture comes back; one still going at the end
        # (a viewer at 0 fps) counts too, and the seconds without a picture are said.
        still_frozen = float(meas[-1].get("fps") or 0) == 0
        freezes = (meas[-1].get("freezes", 0) - meas[0].get("freezes", 0) + still_frozen) / (total / 60)
        lats = [float(s["latency"]) for s in meas if s.get("latency") is not None]
        rends = Counter(s.get("rendition") for s in meas if s.get("rendition"))
        row: dict[str, Any] = {
            "fps": sum(fps) / len(fps) if fps else 0.0,
            "freezes_min": freezes,
            "frozen_s": sum(1 for f in fps if f == 0),
            "p95_ms": meas[-1].get("p95") if len(steps) == 1 else pct(lats, 95),
            "renditions": dict(rends),
        }
        # Time to adapt: to a rung that fits after each fall, back to "high" after each rise.
        down, up = [], []
        marks = [(steps[0][0], steps[0][1])] + [(a, r) for a, r, _ in steps[1:]]
        prev_rate = 10 ** 9
        playing = next((s["t"] for s in tr.samples if s.get("state") == "playing"), 0.0)
        for i, (at, r) in enumerate(marks):
            end = marks[i + 1][0] if i + 1 < len(marks) else total
            if i == 0:
                at = playing  # from the first picture: how long until a rung that fits
            window = [s for s in tr.samples if at <= s["t"] < end]
            # By the picture on screen (its height; the page's rendition label comes over the
            # reliable data channel, which a collapsed link delays by a second or more).
            fit_h = {h for n, h in HEIGHT.items() if KBPS[n] <= r}
            big_h = {h for n, h in HEIGHT.items() if KBPS[n] > r}
            if r < prev_rate and r < KBPS["high"]:
                seen = next((s for s in window if s.get("height") in fit_h - big_h), None)
                down.append(None if seen is None else since(seen, at, walls.get(i)))
            elif r > prev_rate:
                seen = next((s for s in window if s.get("height") == HEIGHT["high"]), None)
                up.append(None if seen is None else since(seen, at, walls.get(i)))
            prev_rate = r
        row["down_s"], row["up_s"] = down, up
        out[v] = row
    out["player"] = player_row(lab.log(f"player-{name}.log"), warm, total)
    out["clean"] = {"kf_per_s": kf, "ratio": kf / base_kf if base_kf else None}
    return out


def player_row(log: str, warm: float, total: float) -> dict[str, Any]:
    """The player's lines (bench/loadviewer.py --player): its fps over the measured window,
    gaps (freezes) over a second after its first frame, its first frame after the answer."""
    docs = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    if not docs:
        return {"error": "no report"}
    last = docs[-1]
    first = last.get("first_frame_s")
    window = [d["fps"] for d in docs if warm + 2 <= d.get("since_answer_s", 0) <= warm + total]
    long_gaps = [g for at, g in last.get("gaps", []) if first is not None and at > first and g > 1.0]
    worst = max((g for _, g in last.get("gaps", [])), default=0.0)
    return {"fps": sum(window) / len(window) if window else 0.0, "min_fps": min(window) if window else 0,
            # A gap still open at the end (the player stopped getting frames) is a freeze too.
            "freezes_min": (len(last.get("gaps", [])) + ((last.get("open_gap_s") or 0) > 0.2)) / (total / 60),
            "first_frame_s": first, "gaps_over_1s": len(long_gaps), "worst_gap_s": worst,
            "gaps": [g for g in last.get("gaps", []) if g[1] > 0.5],
            "p95_ms": None, "renditions": {}, "down_s": [], "up_s": []}


def since(sample: dict[str, Any], at: float, wall: float | None) -> float:
    """From the link's change to the first frame presented at the sample's height: the
    page notes when the picture's size changed (its wall clock, this machine's), so the
    half-second polling adds nothing."""
    if wall is not None and sample.get("heightAt"):
        return max(0.0, float(sample["heightAt"]) / 1000 - wall)
    return float(sample["t"]) - at


def fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    if isinstance(x, list):
        return ",".join(fmt(v) for v in x) or "—"
    return str(x)


async def main_async(args: argparse.Namespace) -> None:
    names = list(PROFILES) if args.profiles == "all" else [n.strip() for n in args.profiles.split(",")]
    # Stopped with SIGTERM (kill, timeout): unwind, so the lab's namespaces are deleted.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    lab = Lab("wl")
    pusher: StampedFfmpeg | None = None
    relay = None
    try:
        router = lab.host("router")
        for v in VIEWERS:
            lab.host(v)
        lab.link(router, "10.204.1.1/24", None, "10.204.1.2/24")
        devs = {}
        for v, (net, _) in VIEWERS.items():
            dev, _ = lab.link(router, f"{net}.1/24", f"{lab.tag}-{v}", f"{net}.2/24")
            devs[v] = dev
            lab.route(f"{lab.tag}-{v}", "default", f"{net}.1")
            lab.route(None, f"{net}.0/24", "10.204.1.1")
        lab.forward(router)
        relay = await start_relay({
            "renditions": LADDER, "webrtc": {"ice_addresses": ["10.204.1.2"]},
            "rtmp": {"enabled": True, "host": "127.0.0.1", "port": 19350},
            "media": {"keyframe_interval_s": args.keyframe_interval},
            "abr": {"queue_watch": not args.no_queue_watch},
        }, host="10.204.1.2")
        # The feed: Debian's ffmpeg, 1280x720@30 over RTMP, the simulator's stamped scene.
        pusher = StampedFfmpeg("flv", "rtmp://127.0.0.1:19350/live/d1", ["-b:v", "3000k"], size="1280x720")
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 30, 30, "feed")
        clean = WhepViewer(relay.url, "d1", rendition="high", read_stamps=False)
        await clean.start()
        await clean.wait_frames(30, timeout=20)
        base_kf = await keyframe_rate(clean, 20)
        print(f"clean viewer alone: {base_kf:.2f} keyframes/s", flush=True)
        results = {}
        for n in names:
            for run in range(args.runs):
                key = n if args.runs == 1 else f"{n} #{run + 1}"
                print(f"-- {key}", flush=True)
                results[key] = await run_profile(lab, router, devs, relay, n, PROFILES[n], args.seconds,
                                                 clean, base_kf)
                print(results[key], flush=True)
                await asyncio.sleep(3)
        await clean.close()
        print("\n| link | viewer | fps | freezes/min | p95 ms | renditions | down s | up s "
              "| clean kf ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n, res in results.items():
            p = res["player"]
            print(f"   {n}: player without channels: {fmt(p.get('fps'))} fps (least second "
                  f"{p.get('min_fps')}), first frame {p.get('first_frame_s')} s, gaps over 1 s "
                  f"{p.get('gaps_over_1s')}, worst gap {p.get('worst_gap_s')} s")
        for n, res in results.items():
            for v in VIEWERS:
                r = res[v]
                rends = " ".join(f"{k}:{c}" for k, c in sorted(r.get("renditions", {}).items(),
                                                               key=lambda kv: -KBPS.get(kv[0], 0)))
                print(f"| {n} | {v} | {fmt(r.get('fps'))} | {fmt(r.get('freezes_min'))} | "
                      f"{fmt(r.get('p95_ms'), 0)} | {rends} | {fmt(r.get('down_s'))} | "
                      f"{fmt(r.get('up_s'))} | "
                      f"{fmt(res['clean']['ratio'], 2) if v == 'auto' else ''} |")
    finally:
        if pusher is not None:
            pusher.kill()
        if relay is not None:
            await relay.runner.cleanup()
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # (argparse formats help with %: the "%" in "5%" must be doubled)
    ap.add_argument("--profiles", default="all",
                    help=f"comma-separated: {', '.join(PROFILES)}".replace("%", "%%"))
    ap.add_argument("--fixed", default="high", help="the fixed viewer's rendition (today's default: high)")
    ap.add_argument("--keyframe-interval", type=float, default=2.0, help="media.keyframe_interval_s")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per static profile")
    ap.add_argument("--runs", type=int, default=1, help="each profile this many times (default 1)")
    ap.add_argument("--no-queue-watch", action="store_true",
                    help="abr.queue_watch = false: step down on the estimate, loss and freezes only")
    args = ap.parse_args()
    if os.environ.get("WEAKLINK_NETNS") != "1":
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            sys.exit("the weak-link lab needs root and unshare(1)")
        env = {**os.environ, "WEAKLINK_NETNS": "1"}
        cmd = ["unshare", "-n", "bash", "-c",
               'ip link set lo up && exec "$0" -m bench.weaklink "$@"', sys.executable, *sys.argv[1:]]
        sys.exit(subprocess.call(cmd, env=env))
    VIEWERS["fixed"] = (VIEWERS["fixed"][0], args.fixed)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
