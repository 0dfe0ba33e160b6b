"""Real ingest clients: Debian's ffmpeg CLI (RTMP, MPEG-TS/UDP, RTP) and GStreamer's RTSP
server, each carrying the simulator's stamped scene, reach an aiortc WHEP viewer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import RelayHandle, WhepViewer, tcp_listening, wait_for

pytestmark = pytest.mark.usefixtures("ffmpeg_required")
ROOT = Path(__file__).resolve().parents[2]
SIZE = "640x360"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StampedFfmpeg:
    """``python -m drone_sim --protocol raw | ffmpeg ... -f FORMAT URL``: ffmpeg encodes and sends."""

    def __init__(self, fmt: str, url: str, extra: list[str] | None = None, size: str = SIZE) -> None:
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "drone_sim", "--protocol", "raw", "--size", size, "--fps", "30"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.ffmpeg = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
             "-s", size, "-r", "30", "-i", "-", "-c:v", "libx264", "-preset", "ultrafast",
             "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "30",
             "-x264-params", "repeat-headers=1", "-b:v", "800k", *(extra or []), "-f", fmt, url],
            stdin=self.sim.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert self.sim.stdout is not None
        self.sim.stdout.close()

    def kill(self) -> None:
        for p in (self.ffmpeg, self.sim):
            p.kill()
        for p in (self.ffmpeg, self.sim):
            p.wait(5)


async def stamps_advance(viewer: WhepViewer, n: int = 30, timeout: float = 20) -> None:
    start = len(viewer.seen.stamps)
    await wait_for(lambda: len(viewer.seen.stamps) >= start + n, timeout, f"{n} stamped frames")
    # The newest run of stamps advances (a restarted pusher starts again at frame 0).
    frames = [s.frame for s, _ in viewer.seen.stamps[start:]][-(n - 5):]
    assert frames == sorted(frames) and frames[-1] > frames[0], frames


@contextlib.asynccontextmanager
async def watching(relay: RelayHandle, stream: str) -> AsyncIterator[WhepViewer]:
    await wait_for(lambda: relay.entry(stream) is not None, 10, f"stream {stream}")
    viewer = WhepViewer(relay.url, stream, rendition="low")
    await viewer.start()
    try:
        yield viewer
    finally:
        await viewer.close()


def config(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"renditions": [{"name": "low", "height": 360, "bitrate_kbps": 800}]}
    doc.update(extra)
    return doc


async def test_rtmp_push_from_ffmpeg_reaches_viewer(relay_factory: Any) -> None:
    port = free_port()
    relay = await relay_factory(config(rtmp={"enabled": True, "port": port}))
    pusher = StampedFfmpeg("flv", f"rtmp://127.0.0.1:{port}/live/rtmp1")
    try:
        await wait_for(lambda: relay.entry("rtmp1") is not None
                       and relay.entry("rtmp1").state.value == "live", 20, "RTMP stream live")
        async with watching(relay, "rtmp1") as viewer:
            await stamps_advance(viewer)
        assert (await relay.streams())["rtmp1"]["publisher"]["kind"] == "rtmp"
    finally:
        pusher.kill()


async def test_two_rtmp_publishers_on_one_port_with_tokens(relay_factory: Any) -> None:
    port = free_port()
    relay = await relay_factory(config(
        rtmp={"enabled": True, "port": port}, auth={"enabled": True, "view_token": "view-token-1"},
        streams={"alpha": {"publish_token": "alpha-secret"}, "bravo": {"publish_token": "bravo-secret"}}))
    lavfi = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i"]
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
           "-g", "30", "-f", "flv"]
    procs = [
        # token as the stream key (what a DJI app's single URL field allows)
        subprocess.Popen([*lavfi, "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine",
                          *enc[:-2], "-c:a", "aac", "-f", "flv",
                          f"rtmp://127.0.0.1:{port}/live/alpha-secret"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        # token as a query parameter
        subprocess.Popen([*lavfi, "testsrc=size=320x240:rate=25", *enc,
                          f"rtmp://127.0.0.1:{port}/live/bravo?token=bravo-secret"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        # wrong token: refused, changes nothing
        subprocess.Popen([*lavfi, "testsrc=size=320x240:rate=25", *enc,
                          f"rtmp://127.0.0.1:{port}/live/bravo?token=wrong"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        await wait_for(lambda: relay.entry("alpha").state.value == "live"
                       and relay.entry("bravo").state.value == "live", 20, "both live")
        a, b = relay.entry("alpha"), relay.entry("bravo")
        # Each at its own rate (30 and 25 fps: two publishers never mixed): waited for, as a
        # loaded machine's FFmpeg may stutter a moment (the rate is a window of arrivals).
        await wait_for(lambda: 27 < a.fps < 33 and 22 < b.fps < 28, 15, "each stream at its own frame rate")
        assert (a.width, a.height) == (640, 360) and (b.width, b.height) == (320, 240)
        await wait_for(lambda: procs[2].poll() is not None, 10, "wrong-token push refused")
        assert b.state.value == "live"
    finally:
        for p in procs:
            p.kill()
            p.wait(5)


async def test_mpegts_udp_survives_garbage_and_pusher_restart(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(config(
        media={"signal_lost_after_s": 1.0},
        streams={"udp1": {"source": f"udp://127.0.0.1:{port}"}}))
    url = f"udp://127.0.0.1:{port}?pkt_size=1316"
    pusher = StampedFfmpeg("mpegts", url)
    try:
        async with watching(relay, "udp1") as viewer:
            await stamps_advance(viewer)
            # Random bytes and truncated TS packets into the same port.
            rng = random.Random(7)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(300):
                    junk = (rng.randbytes(rng.randint(1, 1400)) if i % 2
                            else b"\x47" + rng.randbytes(rng.randint(10, 180)))
                    s.sendto(junk, ("127.0.0.1", port))
                    if i % 20 == 0:
                        await asyncio.sleep(0.02)
            await stamps_advance(viewer)
            assert relay.entry("udp1").state.value == "live"
            # The drone vanishes: the viewer keeps its session and sees the slate.
            pusher.kill()
            await wait_for(lambda: relay.entry("udp1").state.value == "lost", 10, "signal lost")
            n = viewer.seen.frames
            await viewer.wait_frames(n + 3, timeout=5)  # slate frames
            pusher = StampedFfmpeg("mpegts", url)
            await wait_for(lambda: relay.entry("udp1").state.value == "live", 15, "back live")
            await stamps_advance(viewer)  # same session, live picture again
    finally:
        pusher.kill()


async def test_rtp_h264_like_qgroundcontrol(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM) & ~1
    relay = await relay_factory(config(streams={"rtp1": {"source": f"rtp://127.0.0.1:{port}"}}))
    pusher = StampedFfmpeg("rtp", f"rtp://127.0.0.1:{port}?pkt_size=1200", ["-payload_type", "96"])
    try:
        async with watching(relay, "rtp1") as viewer:
            await stamps_advance(viewer)
        assert (await relay.streams())["rtp1"]["publisher"]["kind"] == "rtp"
    finally:
        pusher.kill()


class GstRtspCamera:
    """GStreamer's RTSP server re-serving the stamped scene (tests/fixtures/rtsp_server.py)."""

    def __init__(self, port: int, rtp_port: int, mode: str = "h264") -> None:
        self.server = subprocess.Popen(
            ["/usr/bin/python3", str(ROOT / "tests/fixtures/rtsp_server.py"), str(port), str(rtp_port),
             mode],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        self.server.kill()
        self.server.wait(5)


def have_gst_rtsp() -> bool:
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")
    return os.path.exists("/usr/bin/python3") and subprocess.run(
        ["/usr/bin/python3", "-c", probe], capture_output=True).returncode == 0


@pytest.mark.usefixtures("gst_rtsp_required")
async def test_rtsp_pull_from_gstreamer_server_and_reconnect(relay_factory: Any) -> None:
    rtsp_port, rtp_port = free_port(), free_port(socket.SOCK_DGRAM) & ~1
    camera = GstRtspCamera(rtsp_port, rtp_port)
    # One slice per frame: GStreamer's rtph264depay ! h264parse ! rtph264pay chain in the
    # fixture mangles x264's multi-slice P-frames (ffmpeg's own CLI decodes them damaged too).
    feed = StampedFfmpeg("rtp", f"rtp://127.0.0.1:{rtp_port}?pkt_size=1200",
                         ["-payload_type", "96", "-threads", "1"])
    try:
        relay = await relay_factory(config(streams={"cam1": {
            "source": f"rtsp://127.0.0.1:{rtsp_port}/drone", "rtsp_transport": "tcp"}}))
        async with watching(relay, "cam1") as viewer:
            await stamps_advance(viewer, timeout=30)
            assert (await relay.streams())["cam1"]["publisher"]["kind"] == "rtsp"
            # The camera drops: the viewer keeps its session (slate); it comes back: reconnect.
            camera.kill()
            await wait_for(lambda: relay.entry("cam1").state.value == "lost", 15, "camera lost")
            n = viewer.seen.frames
            await viewer.wait_frames(n + 3, timeout=5)
            camera = GstRtspCamera(rtsp_port, rtp_port)
            await wait_for(lambda: relay.entry("cam1").state.value == "live", 30, "reconnected")
            await stamps_advance(viewer, timeout=20)
    finally:
        feed.kill()
        camera.kill()


@pytest.mark.parametrize("protocol", ["rtmp", "rtsp", "udp", "rtp"])
async def test_simulator_pushes_every_protocol(relay_factory: Any, protocol: str) -> None:
    """``python -m drone_sim --protocol P --to URL`` reaches a viewer with advancing stamps."""
    if protocol == "rtmp":
        port = free_port()
        relay = await relay_factory(config(rtmp={"enabled": True, "port": port}))
        url, stream = f"rtmp://127.0.0.1:{port}/live/sim1", "sim1"
    else:
        port = free_port(socket.SOCK_DGRAM if protocol in ("udp", "rtp") else socket.SOCK_STREAM)
        port &= ~1
        source = {"rtsp": f"rtsp://127.0.0.1:{port}/sim1", "udp": f"udp://127.0.0.1:{port}",
                  "rtp": f"rtp://127.0.0.1:{port}"}[protocol]
        relay = await relay_factory(config(streams={"sim1": {
            "source": source, "rtsp_listen": protocol == "rtsp"}}))
        url, stream = source, "sim1"
        if protocol == "rtsp":
            await wait_for(lambda: tcp_listening(port), 10, "the RTSP listener")
    sim = subprocess.Popen([sys.executable, "-m", "drone_sim", "--protocol", protocol, "--to", url,
                            "--size", SIZE, "--fps", "30"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: relay.entry(stream) is not None
                       and relay.entry(stream).state.value == "live", 20, f"{protocol} live")
        async with watching(relay, stream) as viewer:
            await stamps_advance(viewer, n=20)
    finally:
        sim.kill()
        sim.wait(5)
