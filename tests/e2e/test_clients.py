"""Senders we did not write, against the relay as a drone's ground app would use it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.e2e.test_ingest import ROOT, free_port
from tests.helpers import WhepViewer, wait_for

pytestmark = pytest.mark.usefixtures("gst_launch_required")


def gst_rtmp(url: str) -> subprocess.Popen[bytes]:
    """GStreamer's rtmp2sink (it checks that onStatus arrives on the stream it published on)."""
    return subprocess.Popen(
        ["gst-launch-1.0", "-q", "videotestsrc", "is-live=true", "!",
         "video/x-raw,width=320,height=180,framerate=30/1", "!",
         "x264enc", "tune=zerolatency", "speed-preset=ultrafast", "key-int-max=30", "!",
         "h264parse", "!", "flvmux", "streamable=true", "!", "rtmp2sink", f"location={url}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_gstreamer_rtmp2sink_goes_live_and_plays(relay_factory: Any) -> None:
    port = free_port()
    relay = await relay_factory({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
                                 "rtmp": {"enabled": True, "port": port},
                                 "webrtc": {"ice_addresses": ["127.0.0.1"]}})
    t0 = time.monotonic()
    gst = gst_rtmp(f"rtmp://127.0.0.1:{port}/live/gst")
    viewer = WhepViewer(relay.url, "gst", rendition="low", read_stamps=False)
    try:
        await wait_for(lambda: relay.entry("gst") is not None and relay.entry("gst").state.value == "live",
                       15, "rtmp2sink's stream to go live")
        live_s = time.monotonic() - t0
        await viewer.start()
        await viewer.wait_frames(10, timeout=10)
        n0, t1 = viewer.seen.frames, time.monotonic()
        await viewer.wait_frames(n0 + 40, timeout=10)
        fps = (viewer.seen.frames - n0) / (time.monotonic() - t1)
    finally:
        await viewer.close()
        gst.terminate()
        gst.wait(10)
    # Live and playing, not a slideshow of keyframes (the frame rate itself is a figure: on a
    # loaded 2-core machine a decoding test viewer falls below the source's 30).
    assert live_s < 10 and fps > 10, (live_s, fps)
    assert relay.entry("gst").publisher_kind == "rtmp"


def ffmpeg9() -> str:
    """FFmpeg 9 from the imageio-ffmpeg wheel (OpenSSL, libx265, Enhanced RTMP)."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def test_vp9_over_enhanced_rtmp_is_said_not_silent(relay_factory: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """FFmpeg 9 pushes VP9 over Enhanced RTMP (vp09), which the relay does not take: the
    stream is never "live", and the API, /metrics and one log line say why."""
    import logging

    import aiohttp

    caplog.set_level(logging.INFO)
    port = free_port()
    relay = await relay_factory({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
                                 "rtmp": {"enabled": True, "port": port},
                                 "webrtc": {"ice_addresses": ["127.0.0.1"]}})
    ff = subprocess.Popen([ffmpeg9(), "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                           "testsrc2=size=320x180:rate=30", "-c:v", "libvpx-vp9", "-deadline", "realtime",
                           "-cpu-used", "8", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/vp9"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: relay.entry("vp9") is not None and relay.entry("vp9").source_info.problem,
                       20, "the unsupported codec to be said")
        await asyncio.sleep(2.0)  # it keeps pushing: still not live, still said once
        doc = (await relay.streams())["vp9"]
        async with aiohttp.ClientSession() as s, s.get(f"{relay.url}/metrics") as r:
            metrics = await r.text()
    finally:
        ff.terminate()
        ff.wait(10)
    assert doc["state"] == "waiting" and doc["publisher"] is not None, doc
    assert "VP9" in doc["problem"] and "send H.264" in doc["problem"], doc["problem"]
    assert "relay_rtmp_unsupported_codec_total 1.0" in metrics or "relay_rtmp_unsupported_codec 1.0" in metrics
    said = [r for r in caplog.records if "codec not supported" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    await wait_for(lambda: relay.entry("vp9").publisher is None, 15, "the publisher to leave")
    assert (await relay.streams())["vp9"]["problem"] is None


async def test_h265_over_enhanced_rtmp_is_transcoded_for_browsers(relay_factory: Any) -> None:
    """FFmpeg 9 pushes the simulator's stamped picture as H.265 (Enhanced RTMP, hvc1): it is
    decoded once and the H.264 rung plays with advancing drone stamps; the "source" rung
    (H.265) is not listed and is refused with a reason."""
    from tests.e2e.test_h265_ingest import watch_and_try_source

    port = free_port()
    relay = await relay_factory({"renditions": [{"name": "low", "height": 360, "bitrate_kbps": 600}],
                                 "rtmp": {"enabled": True, "port": port},
                                 "webrtc": {"ice_addresses": ["127.0.0.1"]}})
    sim = subprocess.Popen([sys.executable, "-m", "drone_sim", "--protocol", "raw", "--size", "640x360",
                            "--fps", "30"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ff = subprocess.Popen([ffmpeg9(), "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                           "-s", "640x360", "-r", "30", "-i", "-", "-c:v", "libx265", "-preset", "ultrafast",
                           "-tune", "zerolatency", "-x265-params", "log-level=error:keyint=30",
                           "-pix_fmt", "yuv420p", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/hevc"],
                          stdin=sim.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    viewer = WhepViewer(relay.url, "hevc", rendition="low")
    try:
        doc, refused, why = await watch_and_try_source(relay, viewer, "hevc", 60, "the H.265 stream to go live",
                                                       timeout=15)
    finally:
        await viewer.close()
        ff.terminate()
        sim.terminate()
        ff.wait(10)
        sim.wait(10)
    assert doc["source_codec"] == "hevc" and doc["problem"] is None
    assert [r["name"] for r in doc["renditions"]] == ["low"]  # no "source": it is H.265
    assert refused == 422 and "H.265" in why and why.count("\n") == 1, (refused, why)
    stamps = [s.frame for s, _ in viewer.seen.stamps]
    assert len(stamps) >= 30 and stamps == sorted(stamps), stamps[:10]
    ages = sorted(now * 1000 - s.capture_ms for s, now in viewer.seen.stamps[-30:])
    assert 0 < ages[len(ages) // 2] < 1000, ages

