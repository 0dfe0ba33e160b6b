"""One hop against two: the control centre watching the vehicle's relay across the uplink
(one hop) against the centre's own relay fed by the vehicle's forward (two hops), per
uplink profile, on the same feed.

    sudo .venv/bin/python -m bench.cascade [--profiles all|clean,lte,...] [--seconds 30]

The lab (namespaces this benchmark makes, tests/netlab.py): the vehicle (the benchmark's
own namespace: the vehicle relay in-process, Debian's ffmpeg pushing the simulator's
stamped 1280x720@30 picture over RTMP), an LTE router, and the centre (the centre relay
as its own process, Chromium). The uplink (router → centre) is shaped with tc tbf and loses
UDP by nft; the way back is clean. Per profile and path: the centre viewer's decoded fps,
freezes a minute, glass-to-glass p95 (drone capture → presented, from the RTP timestamp
map), the rungs the uplink was on; for two hops also the time to catch the record up after
the outage, and what the backfill costs live (the same profile without recording).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.browser import CHROMIUM, chromium
from tests.e2e.test_cascade_record import keypair
from tests.e2e.test_ingest import StampedFfmpeg
from tests.helpers import start_relay, wait_for
from tests.netlab import Lab, sh

VEHICLE, ROUTER_V, ROUTER_C, CENTRE = "10.212.1.2", "10.212.1.1", "10.212.2.1", "10.212.2.2"
TOKEN, VIEW = "vehicle-one-publish-token", "centre-view-token-1234"
CENTRE_URL = f"http://{CENTRE}:8480"
LADDER = [
    {"name": "high", "height": 720, "bitrate_kbps": 2500},
    {"name": "mid", "height": 540, "bitrate_kbps": 1200},
    {"name": "low", "height": 360, "bitrate_kbps": 600},
    {"name": "floor", "height": 360, "bitrate_kbps": 250, "max_fps": 10},
]
# name -> [(at second, rate kbit/s, loss %, down)]
PROFILES: dict[str, list[tuple[float, int, int, bool]]] = {
    "clean 10M": [(0, 10000, 0, False)],
    "1.5M 5%": [(0, 1500, 5, False)],
    "5M>800k>5M": [(0, 5000, 0, False), (15, 800, 0, False), (35, 5000, 0, False)],
    "20 s outage": [(0, 10000, 0, False), (5, 10000, 0, True), (25, 10000, 0, False)],
}


def centre_toml(lab: Lab) -> str:
    return f"""
[server]
host = "{CENTRE}"
port = 8480
name = "centre"
log_level = "warning"

[media]
default_mode = "both"   # "source": the forwarded rung as it arrived
{
        "".join(
            f'''
[[renditions]]
name = "{r['name']}"
height = {r['height']}
bitrate_kbps = {r['bitrate_kbps']}
'''
            for r in LADDER[:1]
        )
    }
[webrtc]
ice_addresses = ["{CENTRE}"]

[auth]
enabled = true
view_token = "{VIEW}"

[record]
enabled = true
dir = "{lab.dir}/centre-rec"
min_free_mb = 1

[streams.d1]
record = false

[[vehicles]]
name = "vehicle"
token = "{TOKEN}"
public_key = "{lab.dir}/vehicle-key.pub.pem"
streams = ["d1"]
"""


def shape(router: str, dev: str, kbps: int, loss: int, down: bool) -> None:
    sh(
        "tc",
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "tbf",
        "rate",
        f"{kbps}kbit",
        "burst",
        "20kb",
        "latency",
        "150ms",
        ns=router,
    )
    sh("nft", "delete", "table", "inet", "uplink", ns=router, check=False)
    rules = []
    if loss:
        rules.append(f"ip daddr {CENTRE} meta l4proto udp numgen random mod 100 < {loss} drop;")
    if down:
        rules.append(f"ip daddr {CENTRE} drop; ip saddr {CENTRE} drop;")
    if rules:
        sh(
            "nft",
            "-f",
            "-",
            ns=router,
            stdin=(
                "table inet uplink {\n chain f { type filter hook forward priority 0; policy accept;\n"
                + "\n".join(rules)
                + "\n }\n}\n"
            ),
        )


def pct(values: list[float], q: float) -> float | None:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else None


def fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "—"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


async def run_profile(
    page: Any,
    router: str,
    dev: str,
    steps: list[tuple[float, int, int, bool]],
    seconds: float,
    rung: Any,
    backfill: Any,
) -> dict[str, Any]:
    """Apply the profile's steps, sample the page every 0.5 s; figures over the whole run."""
    total = max(seconds, steps[-1][0] + 20)
    shape(router, dev, *steps[0][1:])
    await asyncio.sleep(8)  # settle on the first step
    s0 = await page.evaluate("() => ({...window.__player.stats})")
    t0 = time.monotonic()
    fps: list[float] = []
    lat: list[float] = []
    rungs: Counter[str] = Counter()
    step_i, back_at, resumed_s, caught_s = 1, None, None, None
    last_frames = s0["frames"]
    while time.monotonic() - t0 < total:
        t = time.monotonic() - t0
        if step_i < len(steps) and t >= steps[step_i][0]:
            shape(router, dev, *steps[step_i][1:])
            if steps[step_i - 1][3] and not steps[step_i][3]:
                back_at = time.monotonic()
            step_i += 1
        await asyncio.sleep(0.5)
        st = await page.evaluate("() => ({...window.__player.stats})")
        fps.append(float(st["fps"]))
        if st["latency"] is not None and st["kind"] == "glass-to-glass":
            lat.append(float(st["latency"]))
        r = rung()
        if r:
            rungs[r] += 1
        if (
            back_at is not None
            and resumed_s is None
            and st["frames"] > last_frames + 10
            and st["state"] == "playing"
        ):
            resumed_s = time.monotonic() - back_at
        if (
            back_at is not None
            and backfill is not None
            and caught_s is None
            and backfill.status()["behind"] <= 1
        ):
            caught_s = time.monotonic() - back_at
        last_frames = st["frames"]
    s1 = await page.evaluate("() => ({...window.__player.stats})")
    minutes = (time.monotonic() - t0) / 60
    return {
        "fps": pct(fps, 0.5),
        # (a freeze still going at the end, the picture gone, counts too)
        "freezes_min": (s1["freezes"] - s0["freezes"] + (bool(fps) and fps[-1] == 0)) / minutes,
        "p95_ms": pct(lat, 0.95),
        "rungs": dict(rungs),
        "resumed_s": resumed_s,
        "caught_up_s": caught_s,
    }


async def measure(
    lab: Lab,
    centre_ns: str,
    router: str,
    dev: str,
    names: list[str],
    seconds: float,
    url: str,
    rung: Any,
    backfill: Any = None,
    forwarder: Any = None,
) -> dict[str, dict[str, Any]]:
    out = {}
    async with chromium(executable=lab.wrapper(centre_ns, CHROMIUM)) as ctx:
        page = await ctx.new_page()
        await page.goto(url)
        await page.wait_for_function("window.__player && window.__player.stats.frames > 60", timeout=60_000)
        for n in names:
            print(f"   {n}", flush=True)
            out[n] = await run_profile(page, router, dev, PROFILES[n], seconds, rung, backfill)
            if os.environ.get("CASCADE_VERBOSE") and forwarder is not None and forwarder.viewer is not None:
                info = forwarder.viewer.info
                print(f"   switches {[(x['from'], x['to'], x['reason']) for x in info.switches]}")
                for smp in info.samples[-30:]:
                    print(f"   {smp}")
            print(f"   {out[n]}", flush=True)
            shape(router, dev, 10000, 0, False)
            await asyncio.sleep(5)
    return out


async def vehicle(lab: Lab, forward: bool, record: bool, priv: Path, rung: str = "auto") -> Any:
    stream: dict[str, Any] = {"mode": "both"}
    if forward:
        stream.update(forward=[f"{CENTRE_URL}/whip/d1"], forward_token=TOKEN, forward_rendition=rung)
    cfg: dict[str, Any] = {
        "server": {"name": "vehicle"},
        "renditions": LADDER,
        "webrtc": {"ice_addresses": [VEHICLE]},
        "rtmp": {"enabled": True, "host": "127.0.0.1", "port": 19351},
        "streams": {"d1": stream},
    }
    if record:
        cfg["record"] = {
            "enabled": True,
            "dir": str(lab.dir / f"vehicle-rec-{time.time():.0f}"),
            "segment_s": 6,
            "min_free_mb": 1,
            "signing_key": str(priv),
        }
    return await start_relay(cfg, host=VEHICLE)


async def main_async(args: argparse.Namespace) -> None:
    names = list(PROFILES) if args.profiles == "all" else [n.strip() for n in args.profiles.split(",")]
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    lab = Lab("cb")
    pusher: StampedFfmpeg | None = None
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        router, centre_ns = lab.host("lte"), lab.host("ctr")
        lab.link(router, f"{ROUTER_V}/24", None, f"{VEHICLE}/24")
        dev, _ = lab.link(router, f"{ROUTER_C}/24", centre_ns, f"{CENTRE}/24")
        lab.route(centre_ns, "default", ROUTER_C)
        lab.route(None, "10.212.2.0/24", ROUTER_V)
        lab.forward(router)
        priv, _pub, _ = keypair(lab.dir)
        (lab.dir / "centre.toml").write_text(centre_toml(lab))
        lab.spawn(
            centre_ns,
            sys.executable,
            "-m",
            "relay",
            "--config",
            str(lab.dir / "centre.toml"),
            log="centre.log",
        )
        # (label, forward, record, the forward's rung, the page's rendition, profiles)
        plans: list[tuple[str, bool, bool, str, str, tuple[str, ...]]] = [
            ("one hop", False, False, "auto", "", tuple(PROFILES)),
            ("two hops", True, True, "auto", "high", tuple(PROFILES)),
            ("two hops, no record", True, False, "auto", "high", ("clean 10M", "1.5M 5%")),
            # The drone's own H.264 end to end: the vehicle forwards it untouched and the
            # centre serves it as it arrived (no decode-encode on the way).
            ("one hop, source", False, False, "auto", "source", ("clean 10M",)),
            ("two hops, source", True, False, "source", "source", ("clean 10M",)),
        ]
        for label, forward, record, fwd_rung, page_rung, which in plans:
            names_here = [n for n in names if n in which]
            if not names_here:
                continue
            print(f"-- {label}", flush=True)
            v = await vehicle(lab, forward, record, priv, fwd_rung)
            pusher = StampedFfmpeg(
                "flv", "rtmp://127.0.0.1:19351/live/d1", ["-b:v", "3000k"], size="1280x720"
            )
            try:
                await wait_for(
                    lambda v=v: v.entry("d1") is not None and v.entry("d1").frames_in > 30, 30, "feed"
                )
                fwd = v.services.forwards.forwarders[0] if forward else None
                backfill = v.services.forwards.backfills[0] if forward and record else None
                query = f"?rendition={page_rung}" if page_rung else ""
                if forward:
                    url = f"{CENTRE_URL}/view/d1{query}#token={VIEW}"

                    def rung(f: Any = fwd) -> str | None:
                        return f.viewer.info.rendition if f.viewer else None
                else:
                    url = f"http://{VEHICLE}:{v.url.rsplit(':', 1)[1]}/view/d1{query}"

                    def rung(v: Any = v) -> str | None:
                        vs = [x for x in v.viewers("d1").values() if x.auto]
                        return vs[0].rendition if vs else None

                results[label] = await measure(
                    lab, centre_ns, router, dev, names_here, args.seconds, url, rung, backfill, fwd
                )
            finally:
                pusher.kill()
                pusher = None
                await v.runner.cleanup()
        print(
            "\n| uplink | path | fps | freezes/min | p95 ms | uplink rungs | resumed s | record caught up s |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for n in names:
            for label, res in results.items():
                if n not in res:
                    continue
                r = res[n]
                rungs = " ".join(f"{k}:{c}" for k, c in sorted(r["rungs"].items()))
                print(
                    f"| {n} | {label} | {fmt(r['fps'])} | {fmt(r['freezes_min'])} | {fmt(r['p95_ms'], 0)} | "
                    f"{rungs or '—'} | {fmt(r['resumed_s'])} | {fmt(r['caught_up_s'])} |"
                )
    finally:
        if pusher is not None:
            pusher.kill()
        if os.environ.get("CASCADE_VERBOSE"):
            print(lab.log("centre.log")[-4000:])
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--profiles", default="all", help=f"comma-separated: {', '.join(PROFILES)}".replace("%", "%%")
    )
    ap.add_argument("--seconds", type=float, default=40.0, help="measured seconds per static profile")
    args = ap.parse_args()
    if os.environ.get("CASCADE_NETNS") != "1":
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            sys.exit("the cascade lab needs root and unshare(1)")
        env = {**os.environ, "CASCADE_NETNS": "1"}
        cmd = [
            "unshare",
            "-n",
            "bash",
            "-c",
            'ip link set lo up && exec "$0" -m bench.cascade "$@"',
            sys.executable,
            *sys.argv[1:],
        ]
        sys.exit(subprocess.call(cmd, env=env))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
