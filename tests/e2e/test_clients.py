"""Senders we did not write, against the relay as a drone's ground app would use it."""

from __future__ import annotations

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
