"""Senders we did not write, against the relay as a drone's ground app would use it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.test_ingest import free_port
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
    assert live_s < 10 and fps > 20, (live_s, fps)
    assert relay.entry("gst").publisher_kind == "rtmp"


def ffmpeg9() -> str:
    """FFmpeg 9 from the imageio-ffmpeg wheel (OpenSSL, libx265, Enhanced RTMP)."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def test_h265_over_enhanced_rtmp_is_said_not_silent(relay_factory: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """FFmpeg 9 pushes H.265 (Enhanced RTMP, hvc1), which the relay cannot take yet: the
    stream is never "live", and the API, /metrics and one log line say why."""
    import logging

    import aiohttp

    caplog.set_level(logging.INFO)
    port = free_port()
    relay = await relay_factory({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
                                 "rtmp": {"enabled": True, "port": port},
                                 "webrtc": {"ice_addresses": ["127.0.0.1"]}})
    ff = subprocess.Popen([ffmpeg9(), "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                           "testsrc2=size=320x180:rate=30", "-c:v", "libx265", "-preset", "ultrafast",
                           "-x265-params", "log-level=error", "-f", "flv",
                           f"rtmp://127.0.0.1:{port}/live/h265"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: relay.entry("h265") is not None and relay.entry("h265").source_info.problem,
                       20, "the unsupported codec to be said")
        await asyncio.sleep(2.0)  # it keeps pushing: still not live, still said once
        doc = (await relay.streams())["h265"]
        async with aiohttp.ClientSession() as s, s.get(f"{relay.url}/metrics") as r:
            metrics = await r.text()
    finally:
        ff.terminate()
        ff.wait(10)
    assert doc["state"] == "waiting" and doc["publisher"] is not None, doc
    assert "H.265" in doc["problem"] and "send H.264" in doc["problem"], doc["problem"]
    assert "relay_rtmp_unsupported_codec_total 1.0" in metrics or "relay_rtmp_unsupported_codec 1.0" in metrics
    said = [r for r in caplog.records if "codec not supported" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    await wait_for(lambda: relay.entry("h265").publisher is None, 15, "the publisher to leave")
    assert (await relay.streams())["h265"]["problem"] is None
