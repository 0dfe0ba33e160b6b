"""Frame-exact delivery on a clean link: every ingest x every mode delivers (nearly) every
frame the drone sent. The simulator stamps a frame counter into each picture; the viewer
decodes the stamps and counts which numbers arrived."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.test_ingest import ROOT, SIZE, StampedFfmpeg, config, free_port
from tests.helpers import Drone, WhepViewer, tcp_listening, wait_for

pytestmark = [pytest.mark.usefixtures("ffmpeg_required"), pytest.mark.slow, pytest.mark.quiet]
MEASURE_S = 6.0


def delivered_share(frames: list[int]) -> float:
    """Distinct stamped frame numbers seen, over the span they cover."""
    if len(frames) < 2:
        return 0.0
    return len(set(frames)) / (max(frames) - min(frames) + 1)


async def _measure(relay: Any, stream: str, rendition: str) -> tuple[float, int]:
    await wait_for(lambda: relay.entry(stream) is not None and relay.entry(stream).state.value == "live",
                   20, f"{stream} live")
    viewer = WhepViewer(relay.url, stream, rendition=rendition)
    try:
        await viewer.start()
        await wait_for(lambda: len(viewer.seen.stamps) >= 15, 20, "stamped frames")
        start = len(viewer.seen.stamps)
        await asyncio.sleep(MEASURE_S)
        frames = [s.frame for s, _ in viewer.seen.stamps[start:]]
        return delivered_share(frames), len(frames)
    finally:
        await viewer.close()


@pytest.mark.parametrize("protocol", ["whip", "rtmp", "rtsp", "udp", "rtp"])
@pytest.mark.parametrize("rendition", ["low", "source"])
async def test_every_ingest_and_mode_delivers_the_frames_sent(
        relay_factory: Any, protocol: str, rendition: str) -> None:
    mode = "both"
    sim: subprocess.Popen[bytes] | None = None
    drone: Drone | None = None
    ffmpeg: StampedFfmpeg | None = None
    if protocol == "whip":
        relay = await relay_factory(config(media={"default_mode": mode}))
        drone = Drone(f"{relay.url}/whip/sim1", size=(640, 360))
    else:
        if protocol == "rtmp":
            port = free_port()
            relay = await relay_factory(config(rtmp={"enabled": True, "port": port},
                                               media={"default_mode": mode}))
            url = f"rtmp://127.0.0.1:{port}/live/sim1"
            ffmpeg = StampedFfmpeg("flv", url)  # Debian's ffmpeg CLI, as a DJI-style pusher
        else:
            port = free_port(socket.SOCK_DGRAM if protocol in ("udp", "rtp") else socket.SOCK_STREAM) & ~1
            url = {"rtsp": f"rtsp://127.0.0.1:{port}/sim1", "udp": f"udp://127.0.0.1:{port}",
                   "rtp": f"rtp://127.0.0.1:{port}"}[protocol]
            relay = await relay_factory(config(streams={"sim1": {
                "source": url, "rtsp_listen": protocol == "rtsp", "mode": mode}}))
            if protocol == "rtsp":
                await wait_for(lambda: tcp_listening(port), 10, "the RTSP listener")
        if ffmpeg is None:
            sim = subprocess.Popen([sys.executable, "-m", "drone_sim", "--protocol", protocol, "--to", url,
                                    "--size", SIZE, "--fps", "30"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        share, n = await _measure(relay, "sim1", rendition)
        print(f"\n{protocol} -> {rendition}: {share * 100:.1f} % of frames delivered ({n} stamps)")
        assert share >= 0.98, f"{protocol} -> {rendition}: only {share * 100:.1f} % of the frames sent"
    finally:
        if sim is not None:
            sim.kill()
            sim.wait(5)
        if drone is not None:
            await drone.stop()
        if ffmpeg is not None:
            ffmpeg.kill()


async def test_source_viewer_keeps_a_picture_when_a_whip_publisher_takes_over(relay_factory: Any) -> None:
    """A "source" viewer of an RTMP feed: the drone's RTMP dies, the operator switches to WHIP
    (always decoded): the same viewer session goes on showing the WHIP picture."""
    port = free_port()
    relay = await relay_factory(config(rtmp={"enabled": True, "port": port}, media={"default_mode": "both"},
                                       webrtc={"ice_addresses": ["127.0.0.1"]}))
    rtmp = StampedFfmpeg("flv", f"rtmp://127.0.0.1:{port}/live/sim1")
    drone: Drone | None = None
    try:
        await wait_for(lambda: relay.entry("sim1") is not None and relay.entry("sim1").state.value == "live",
                       20, "RTMP live")
        viewer = WhepViewer(relay.url, "sim1", rendition="source")
        try:
            await viewer.start()
            await wait_for(lambda: len(viewer.seen.stamps) >= 15, 20, "RTMP stamps")
            rtmp.kill()
            await wait_for(lambda: relay.entry("sim1").state.value == "lost", 10, "signal lost")
            drone = Drone(f"{relay.url}/whip/sim1", size=(640, 360))
            await wait_for(lambda: relay.entry("sim1").publisher_kind == "whip", 15, "WHIP publisher")
            before = len(viewer.seen.stamps)
            await wait_for(lambda: len(viewer.seen.stamps) >= before + 60, 20, "WHIP stamps on 'source'")
            frames = [s.frame for s, _ in viewer.seen.stamps[before + 10:]]
            assert delivered_share(frames) >= 0.98, delivered_share(frames)
        finally:
            await viewer.close()
    finally:
        rtmp.kill()
        if drone is not None:
            await drone.stop()
