"""WHIP from FFmpeg, the way OBS-less field kits and scripts publish: FFmpeg 9 (the CLI in the
imageio-ffmpeg wheel, OpenSSL) and FFmpeg 8 (the library in PyAV's wheel, GnuTLS, whose DTLS
certificate is on P-224). Both go live, with the time from the WHIP answer to the first
frame printed: FFmpeg ignores a ClientHello that comes while it is finishing ICE, so before
the relay repeated its first one soon, every start waited OpenSSL's 1 s timer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_ingest import ROOT
from tests.helpers import WhepViewer, p256_cert, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.quiet]  # timed: alone, not under the slow lane's load
TOKEN = "ffmpeg-publish-secret"

# FFmpeg 8 inside PyAV publishes through its WHIP muxer: a test pattern, 30 fps, for a while.
PYAV_WHIP = """
import sys, time, fractions, av, numpy as np
opts = {"authorization": sys.argv[2]}
if len(sys.argv) > 3:
    opts.update(cert_file=sys.argv[3], key_file=sys.argv[4])
out = av.open(sys.argv[1], mode="w", format="whip", options=opts)
st = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "tune": "zerolatency",
                    "profile": "baseline", "x264-params": "keyint=30:bframes=0:repeat-headers=1"})
st.width, st.height, st.pix_fmt = 640, 360, "yuv420p"
t0 = time.monotonic()
for i in range(30 * 20):
    img = np.full((360 * 3 // 2, 640), 16, np.uint8)
    img[: 360, (i * 4) % 600: (i * 4) % 600 + 40] = 235
    f = av.VideoFrame.from_ndarray(img, format="yuv420p")
    f.pts, f.time_base = i, fractions.Fraction(1, 30)
    for p in st.encode(f):
        out.mux(p)
    time.sleep(max(0.0, t0 + (i + 1) / 30 - time.monotonic()))
out.close()
"""


def ffmpeg9() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def _time_to_live(relay: Any, stream: str) -> float:
    """From the WHIP answer (the session exists) to the first frame decoded."""
    await wait_for(lambda: any(s.stream == stream for s in relay.services.whip.sessions.values()), 20,
                   f"a WHIP session for {stream}")
    answered = time.monotonic()
    await wait_for(lambda: relay.entry(stream) is not None and relay.entry(stream).frames_in > 0, 20,
                   f"{stream}'s first frame")
    return time.monotonic() - answered


def _config() -> dict[str, Any]:
    return {"renditions": [{"name": "low", "height": 360, "bitrate_kbps": 600}],
            "webrtc": {"ice_addresses": ["127.0.0.1"]},
            "auth": {"enabled": True, "publish_token": TOKEN, "view_token": "view-secret"}}


@pytest.mark.parametrize("client", ["ffmpeg9-cli", "ffmpeg8-pyav-p256"])
async def test_ffmpeg_whip_goes_live_without_the_dtls_second(relay_factory: Any, client: str,
                                                            tmp_path: Path) -> None:
    relay = await relay_factory(_config())
    stream = client.replace("-", "")
    url = f"{relay.url}/whip/{stream}"
    if client == "ffmpeg9-cli":
        cmd = [ffmpeg9(), "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
               "testsrc2=size=640x360:rate=30", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
               "-profile:v", "baseline", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p", "-t", "20",
               "-authorization", TOKEN, "-f", "whip", url]
    else:
        cmd = [sys.executable, "-c", PYAV_WHIP, url, TOKEN, *p256_cert(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    viewer = WhepViewer(relay.url, stream, rendition="low", token="view-secret", read_stamps=False)
    try:
        took = await _time_to_live(relay, stream)
        print(f"\n{client}: WHIP answer -> first frame {took * 1000:.0f} ms")
        await viewer.start()
        await viewer.wait_frames(45, timeout=15)
        assert relay.entry(stream).state.value == "live"
        # Before: >= 1.0 s every start (OpenSSL's first retransmission), or never (P-224).
        assert took < 0.9, f"{client}: {took:.2f} s from the WHIP answer to the first frame"
    finally:
        await viewer.close()
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert b"Illegal" not in err and b"handshake" not in err.lower(), err[-500:]


async def test_ffmpeg8_p224_certificate_is_refused_in_one_line(relay_factory: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """FFmpeg 8's GnuTLS build makes its DTLS certificate on P-224, which the OpenSSL under
    aiortc (4.0) cannot take: never live, and the relay says why in one line."""
    relay = await relay_factory(_config())
    proc = subprocess.Popen([sys.executable, "-c", PYAV_WHIP, f"{relay.url}/whip/p224", TOKEN], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: any("DTLS handshake failed" in r.getMessage() for r in caplog.records), 20,
                       "the relay to say why")
        entry = relay.entry("p224")
        assert entry is None or entry.frames_in == 0
        said = [r for r in caplog.records if "DTLS handshake failed" in r.getMessage()]
        assert "P-256" in said[0].getMessage() and "\n" not in said[0].getMessage()
    finally:
        proc.terminate()
        proc.wait(10)
