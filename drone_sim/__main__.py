"""CLI: ``python -m drone_sim --whip http://127.0.0.1:8080/whip/<stream> [--token T]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys


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
    p.add_argument("--token", default=None, help="bearer token for the relay")
    p.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--bitrate", type=int, default=2500, help="kbit/s (default 2500)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.whip:
        p.error("give the relay's WHIP URL with --whip")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("drone_sim").setLevel(logging.INFO)

    from .whip import publish_whip

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        await publish_whip(args.whip, args.token, args.size, args.fps, args.bitrate, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
