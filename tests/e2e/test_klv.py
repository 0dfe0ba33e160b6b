"""MISB ST 0601 KLV inside MPEG-TS: from the simulator, through Debian's ffmpeg copying the
KLV data stream (a muxer we did not write), and garbage KLV skipped without harming video."""

from __future__ import annotations

import asyncio
import bisect
import fractions
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import av
import numpy as np
import pytest

from drone_sim.flight import Flight
from drone_sim.klv import klv_packet
from tests.e2e.test_ingest import ROOT, free_port
from tests.helpers import WhepViewer, wait_for

pytestmark = pytest.mark.usefixtures("ffmpeg_required")


def ts_config(port: int) -> dict[str, Any]:
    # At the source's size: the viewer reads the drone's stamp in every frame.
    return {"renditions": [{"name": "low", "height": 240, "bitrate_kbps": 600}],
            "webrtc": {"ice_addresses": ["127.0.0.1"]},
            "streams": {"ts1": {"source": f"udp://127.0.0.1:{port}", "allow_senders": ["127.0.0.1/32"]}}}


def sim(to: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "drone_sim", "--protocol", "udp", "--to", to,
                             "--size", "320x240", "--location", "51.0504,13.7373"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def klv_samples(viewer: WhepViewer) -> list[dict[str, Any]]:
    return [s for m in viewer.messages if m.get("type") == "telemetry" for s in m["s"]]


@pytest.mark.parametrize("via_ffmpeg", [False, True], ids=["simulator", "ffmpeg-copy"])
async def test_klv_in_mpegts_reaches_the_viewer(relay_factory: Any, via_ffmpeg: bool) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(ts_config(port))
    procs: list[subprocess.Popen[bytes]] = []
    if via_ffmpeg:
        hop = free_port(socket.SOCK_DGRAM)
        procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", f"udp://127.0.0.1:{hop}", "-map", "0",
             "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await asyncio.sleep(0.5)
        procs.append(sim(f"udp://127.0.0.1:{hop}"))
    else:
        procs.append(sim(f"udp://127.0.0.1:{port}"))
    viewer = WhepViewer(relay.url, "ts1", channel=True)
    try:
        await wait_for(lambda: relay.entry("ts1").frames_in > 10, 25, "the TS feed")
        await viewer.start()
        await viewer.wait_frames(20)
        await wait_for(lambda: len(klv_samples(viewer)) >= 10 and len(viewer.seen.stamps) >= 30, 15,
                       "KLV telemetry on the data channel, stamped frames")
        tele = relay.entry("ts1").telemetry
        assert tele.source == "klv" and not tele.malformed
        got = klv_samples(viewer)
        flight = Flight(lat=51.0504, lon=13.7373)  # the simulator's orbit; its start is unknown here
        for s in got[-5:]:
            # On the orbit (radius 120 m) around the incident, looking at it, 80 m up.
            dn = (s["lat"] - 51.0504) * 111320
            de = (s["lon"] - 13.7373) * 111320 * 0.6293
            assert abs((dn * dn + de * de) ** 0.5 - flight.radius) < 2, s
            assert abs(s["rel_alt"] - 80) < 1 and abs(s["center_lat"] - 51.0504) < 1e-5, s
            assert abs(s["gimbal_pitch"] - (-33.69)) < 0.1 and s["hfov"] == pytest.approx(69, abs=0.01)
        # Stamped with the capture time of a frame: the KLV times are frames' stamp times.
        caps = sorted({st.capture_ms for st, _ in viewer.seen.stamps})
        assert caps, "no stamped frames read"
        # Judged where the viewer read the frames around the sample without a gap (two read
        # frames at most 70 ms apart around it): there the sample's frame was read unless it was
        # that one frame dropped, while a time that is not a capture time would fall within 1 ms
        # of one about one time in 16. Under load the viewer reads gaps of seconds; they say
        # nothing about the KLV.
        def dense(t_ms: float) -> bool:
            i = bisect.bisect_left(caps, t_ms - 1)
            return 0 < i < len(caps) and caps[min(i + 1, len(caps) - 1)] - caps[i - 1] <= 70
        during = [s for s in got if dense(s["t"] * 1000)]
        matched = [s for s in during if any(abs(s["t"] * 1000 - c) <= 1 for c in caps)]
        assert len(during) >= 3, (len(got), len(caps), caps[-5:])
        assert len(matched) >= 0.8 * len(during), (during[-3:], caps[-5:])
    finally:
        await viewer.close()
        for p in procs:
            p.kill()
            p.wait(5)


async def test_garbage_klv_is_skipped_and_video_goes_on(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(ts_config(port))
    stop = threading.Event()

    def push() -> None:
        out: Any = av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts")
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        v.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": "keyint=30:repeat-headers=1"}
        d = out.add_data_stream(codec_name="klv")
        flight = Flight(start=time.time())
        n = 0
        t0 = time.monotonic()
        while not stop.is_set() and n < 30 * 20:
            stop.wait(max(0.0, t0 + n / 30 - time.monotonic()))
            frame = av.VideoFrame.from_ndarray(np.full((180, 160), 100 + n % 50, np.uint8), format="yuv420p")
            frame.pts = n
            for pkt in v.encode(frame):
                out.mux(pkt)
            if n % 3 == 0:
                good = klv_packet(flight.at(time.time()), time.time(), flight.home_alt)
                body = good if n % 6 == 0 else os.urandom(60) if n % 12 == 3 else good[:-1] + b"\x00"
                meta = av.Packet(body)
                meta.stream, meta.time_base, meta.pts, meta.dts = d, fractions.Fraction(1, 30), n, n
                out.mux(meta)
            n += 1
        out.close()

    th = threading.Thread(target=push, daemon=True)
    th.start()
    try:
        await wait_for(lambda: relay.entry("ts1").frames_in > 10, 25, "the TS feed")
        tele = relay.entry("ts1").telemetry
        await wait_for(lambda: tele.malformed.get("klv", 0) >= 10 and tele.accepted.get("klv", 0) >= 10,
                       15, "good and bad KLV")
        frames = relay.entry("ts1").frames_in
        await asyncio.sleep(1)
        assert relay.entry("ts1").frames_in > frames + 15  # the video never noticed
        assert abs(tele.state["lat"] - 52.52) < 0.01  # only the good packets count
    finally:
        stop.set()
        th.join(5)


@pytest.mark.usefixtures("gst_rtsp_required")
async def test_klv_over_rtsp_from_gstreamer(relay_factory: Any) -> None:
    """GStreamer's RTSP server serves the simulator's MPEG-TS (video + KLV) as MP2T over RTP;
    the relay pulls it and reads the KLV as from a UDP feed."""
    from tests.e2e.test_ingest import GstRtspCamera

    rtsp_port, ts_port = free_port(), free_port(socket.SOCK_DGRAM)
    camera = GstRtspCamera(rtsp_port, ts_port, "mp2t")
    feed = sim(f"udp://127.0.0.1:{ts_port}")
    try:
        relay = await relay_factory({
            "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
            "webrtc": {"ice_addresses": ["127.0.0.1"]},
            "streams": {"cam": {"source": f"rtsp://127.0.0.1:{rtsp_port}/drone", "rtsp_transport": "tcp"}}})
        tele = relay.entry("cam").telemetry
        await wait_for(lambda: relay.entry("cam").frames_in > 10, 30, "the RTSP feed")
        await wait_for(lambda: tele.accepted.get("klv", 0) >= 10, 15, "KLV over RTSP")
        assert abs(tele.state["center_lat"] - 51.0504) < 1e-5 and not tele.malformed
        assert abs(tele.t - time.time()) < 5  # the Precision Time Stamp, not the RTP clock
    finally:
        feed.kill()
        feed.wait(5)
        camera.kill()
