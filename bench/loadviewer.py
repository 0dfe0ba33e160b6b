"""Load viewers in one process: K aiortc peers that count completed frames without decoding.

    python -m bench.loadviewer --whep URL --count K
    python -m bench.loadviewer --janus http://127.0.0.1:8088/janus --mountpoint 1 --count K

aiortc's receiver assembles frames in its jitter buffer and hands them to a decoder thread;
we replace the decoder with a counter, so a load viewer costs the network/SRTP/jitter-buffer
work a real viewer costs, without the decode (which would swamp two cores). Prints one JSON
line per second: {"counts": [frames per viewer so far], "connected": n}.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from typing import Any

import aiohttp
import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from relay.webrtc import use_marker_jitter_buffer

COUNTERS: list[list[int]] = []


class CountingDecoder:
    def __init__(self) -> None:
        self.count = [0]
        COUNTERS.append(self.count)

    def decode(self, encoded_frame: Any) -> list[Any]:
        self.count[0] += 1
        return []


STAMPS: list[tuple[int, float]] = []  # (frame number, age ms) seen by a checking viewer
FRAMES: list[float] = []  # --player: when each frame was decoded (monotonic)


def fixed_ice(address: str) -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address] if use_ipv4 else []


async def read_stamps(track: Any) -> None:
    from drone_sim.stamp import decode

    while True:
        frame = await track.recv()
        stamp = decode(frame.to_ndarray(format="gray"))
        if stamp is not None:
            STAMPS.append((stamp.frame, time.time() * 1000 - stamp.capture_ms))


async def play(track: Any) -> None:
    """--player: decode every frame, as a player we did not write would, and note when."""
    while True:
        await track.recv()
        FRAMES.append(time.monotonic())


def player_doc(answered: float) -> dict[str, Any]:
    """Frames decoded in the last second, the first frame's delay after the answer, and the
    gaps over 0.2 s between frames after the first (seconds from the answer, length)."""
    t = time.monotonic()
    gaps = [[round(b - answered, 2), round(b - a, 3)] for a, b in itertools.pairwise(FRAMES)
            if b - a > 0.2]
    return {"fps": sum(1 for f in FRAMES if t - f <= 1.0), "frames": len(FRAMES),
            "open_gap_s": round(t - FRAMES[-1], 3) if FRAMES else None,
            "first_frame_s": round(FRAMES[0] - answered, 3) if FRAMES else None, "gaps": gaps,
            "since_answer_s": round(t - answered, 2)}


MARKER = [True]  # release each frame on its RTP marker bit, as browsers do (not --aiortc-jitter-buffer)


async def whep_viewer(http: aiohttp.ClientSession, url: str, channels: bool = False) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    if MARKER[0]:
        # aiortc's own buffer hands a frame on when the next one's first packet comes: one
        # frame interval more (33 ms at 30 fps, 200 ms at a shed 5 fps) than a browser shows.
        use_marker_jitter_buffer(transceiver.receiver)
    if channels:  # as the view page opens them: frame times and telemetry in, echoes back
        pc.createDataChannel("relay")
        echo = pc.createDataChannel("echo", ordered=False, maxRetransmits=0)

        @echo.on("message")  # type: ignore[untyped-decorator]
        def on_echo(message: Any) -> None:
            if isinstance(message, str) and len(message) <= 16 and echo.readyState == "open":
                echo.send(message)
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp,
                         headers={"Content-Type": "application/sdp"}) as r:
        if r.status != 201:
            raise RuntimeError(f"WHEP {r.status}: {await r.text()}")
        answer = await r.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc


async def janus_viewer(http: aiohttp.ClientSession, base: str, mountpoint: int) -> RTCPeerConnection:
    async def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": str(time.monotonic_ns())}
        async with http.post(base + path, json=body) as r:
            doc: dict[str, Any] = await r.json()
        return doc

    session = (await call("", {"janus": "create"}))["data"]["id"]
    attach = {"janus": "attach", "plugin": "janus.plugin.streaming"}
    handle = (await call(f"/{session}", attach))["data"]["id"]
    await call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "watch", "id": mountpoint}})
    offer = None
    for _ in range(20):
        async with http.get(f"{base}/{session}?maxev=1") as r:
            ev = await r.json()
        if isinstance(ev, list):
            ev = ev[0] if ev else {}
        if "jsep" in ev:
            offer = ev["jsep"]["sdp"]
            break
    if offer is None:
        raise RuntimeError("Janus sent no offer")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "start"},
                                        "jsep": {"type": "answer", "sdp": pc.localDescription.sdp}})

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(20)
            await call(f"/{session}", {"janus": "keepalive"})

    pc._bench_keepalive = asyncio.ensure_future(keepalive())  # type: ignore[attr-defined]
    return pc


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--whep")
    p.add_argument("--janus")
    p.add_argument("--mountpoint", type=int, default=1)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--ice-address", default="127.0.0.1")
    p.add_argument("--check", action="store_true", help="one decoding viewer that reads stamps")
    p.add_argument("--channels", action="store_true", help="open the view page's relay and echo channels")
    p.add_argument("--aiortc-jitter-buffer", action="store_true",
                   help="aiortc's own jitter buffer (a frame leaves when the next begins: one frame "
                        "interval late) instead of releasing on the marker bit as browsers do")
    p.add_argument("--player", action="store_true",
                   help="one viewer that decodes every frame, no data channels (a WHEP player we did not "
                        "write): prints its fps, first frame and gaps")
    args = p.parse_args()
    fixed_ice(args.ice_address)
    MARKER[0] = not args.aiortc_jitter_buffer
    if not args.check and not args.player:
        rtcrtpreceiver.get_decoder = lambda codec: CountingDecoder()
    answered = 0.0
    pcs: list[RTCPeerConnection] = []
    tasks: list[asyncio.Future[None]] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(args.count):
            if args.whep:
                pc = await whep_viewer(http, args.whep, args.channels)
            else:
                pc = await janus_viewer(http, args.janus, args.mountpoint)
            pcs.append(pc)
            answered = time.monotonic()
            if args.player:
                tasks.extend(asyncio.ensure_future(play(r.track))
                             for r in pc.getReceivers() if r.track is not None)
            if args.check:
                tasks.extend(asyncio.ensure_future(read_stamps(r.track))
                             for r in pc.getReceivers() if r.track is not None)
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            connected = sum(pc.connectionState == "connected" for pc in pcs)
            doc: dict[str, Any] = {"t": time.time(), "counts": [c[0] for c in COUNTERS],
                                   "connected": connected}
            if args.check:
                frames = [f for f, _ in STAMPS]
                ages = sorted(a for _, a in STAMPS[-300:])
                doc.update(counts=[len(STAMPS)], stamps=len(STAMPS),
                           advancing=frames == sorted(frames),
                           age_p50=ages[len(ages) // 2] if ages else None,
                           ages=[round(a, 1) for _, a in STAMPS[-300:]])
            if args.player:
                doc.update(player_doc(answered))
            print(json.dumps(doc), flush=True)
            await asyncio.sleep(1.0)
    for pc in pcs:
        await pc.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
