"""CLI: ``python -m drone_sim --whip http://127.0.0.1:8080/whip/<stream> [--token T]``
or ``python -m drone_sim --protocol rtmp|udp|rtp|raw --to URL``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, got {text!r}") from None
    if w % 2 or h % 2 or not (64 <= w <= 3840 and 64 <= h <= 2160):
        raise argparse.ArgumentTypeError("width and height must be even, 64..3840 x 64..2160")
    return w, h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m drone_sim",
        description="A simulated drone: pushes a stamped synthetic aerial scene to the relay.",
    )
    p.add_argument("--whip", metavar="URL", help="WHIP endpoint, e.g. http://127.0.0.1:8080/whip/drone1")
    p.add_argument("--protocol", choices=["whip", "rtmp", "rtsp", "udp", "rtp", "raw"], default="whip",
                   help="how to push (default whip); raw writes I420 frames to stdout")
    p.add_argument("--to", metavar="URL", help="where to push: rtmp://HOST:1935/live/STREAM, "
                   "rtsp://HOST:8554/STREAM (push), udp://HOST:5600, rtp://HOST:5600, or a WHIP URL")
    p.add_argument("--token", default=None, help="bearer token for the relay")
    p.add_argument("--ca-file", default=None, help="PEM CA bundle that signed the relay's TLS certificate")
    p.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--bitrate", type=int, default=2500, help="kbit/s (default 2500)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--telemetry", metavar="URL", default=None,
                   help="also send MAVLink telemetry, e.g. mavlink+udp://127.0.0.1:14550")
    p.add_argument("--location", default="52.5200,13.4050",
                   help="the incident point LAT,LON the drone flies over (default Berlin centre)")
    p.add_argument("--pattern", choices=["orbit", "lawnmower"], default="orbit",
                   help="orbit the incident point, or survey around it (default orbit)")
    p.add_argument("--altitude", type=float, default=80.0, help="metres above ground (default 80)")
    p.add_argument("--no-klv", action="store_true",
                   help="MPEG-TS (udp) without the MISB ST 0601 KLV data stream")
    p.add_argument("--fallback", metavar="URL", action="append", default=[],
                   help="WHIP: another relay's URL for the stream (a cluster's second node), "
                        "dialled in turn when a session ends; may be given again")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    target = args.whip or args.to
    if args.protocol != "raw" and not target:
        p.error("give the relay's URL with --whip URL or --protocol P --to URL")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("drone_sim").setLevel(logging.INFO)
    import time

    from .flight import Flight, parse_location

    try:
        lat, lon = parse_location(args.location)
    except ValueError as exc:
        p.error(str(exc))
    flight = Flight(lat=lat, lon=lon, altitude=args.altitude, pattern=args.pattern, start=time.time())
    sender = None
    if args.telemetry:
        from .mavlink import MavlinkSender

        try:
            sender = MavlinkSender(flight, args.telemetry)
        except ValueError as exc:
            p.error(str(exc))
        sender.start()
    try:
        return _push(args, target, flight if not args.no_klv else None)
    finally:
        if sender is not None:
            sender.stop()


def _push(args: argparse.Namespace, target: str | None, flight: object) -> int:
    if args.protocol in ("rtmp", "rtsp", "udp", "rtp", "raw"):
        from .push import push_child, write_raw

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        if args.protocol == "raw":
            write_raw(args.size, args.fps, stop, args.duration)
            return 0
        if args.duration:
            threading.Timer(args.duration, stop.set).start()
        # FFmpeg may block inside a write to a target that vanished (no RST) while holding
        # the GIL: no Python code of ours runs then, a signal handler included. The pusher
        # runs in a child process, so SIGTERM and Ctrl-C always end us (and it).
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=push_child, name="push", daemon=True,
                            args=(args.protocol, target, args.size, args.fps, args.bitrate, flight,
                  os.getpid()))
        child.start()
        with contextlib.suppress(KeyboardInterrupt):
            while child.is_alive() and not stop.wait(0.5):
                pass
        failed = not child.is_alive() and bool(child.exitcode)  # it ended by itself, on an error
        child.terminate()
        child.join(3.0)
        if child.is_alive():
            child.kill()
            child.join()
        return 1 if failed else 0

    from .whip import publish_whip

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        assert target is not None
        await publish_whip([target, *args.fallback], args.token, args.size, args.fps, args.bitrate, stop,
                           ca_file=args.ca_file)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
