"""An FFmpeg-read source (MPEG-TS over UDP) that keeps sending what decodes to nothing
(random NAL data in well-formed TS) is never "live": it is lost within about a second of
its last clean picture and live again at its first decodable frames."""

from __future__ import annotations

import asyncio
import fractions
import random
import socket
import time
from typing import Any

import av
import numpy as np
import pytest

from tests.e2e.test_ingest import config, free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


class TsSender:
    """libx264's output, or seeded random NAL units, as H.264 in MPEG-TS to a UDP port."""

    def __init__(self, port: int) -> None:
        self.out = av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", mode="w", format="mpegts")
        self.stream = self.out.add_stream("h264", rate=30)
        self.stream.width, self.stream.height, self.stream.pix_fmt = 320, 180, "yuv420p"
        self.enc = av.CodecContext.create("libx264", "w")
        self.enc.width, self.enc.height, self.enc.pix_fmt = 320, 180, "yuv420p"
        self.enc.time_base = fractions.Fraction(1, 30)
        self.enc.options = {"preset": "ultrafast", "tune": "zerolatency",
                            "x264-params": "keyint=15:scenecut=0:repeat-headers=1"}
        self.rng = random.Random(7)
        self.n = 0

    def _mux(self, data: bytes, key: bool) -> None:
        p = av.Packet(data)
        p.pts = p.dts = self.n * 3000
        p.time_base = fractions.Fraction(1, 90000)
        p.stream = self.stream
        if key:
            p.is_keyframe = True
        self.out.mux(p)
        self.n += 1

    async def good(self, seconds: float) -> None:
        for _ in range(int(seconds * 30)):
            img = np.full((270, 320), (7 * self.n) % 200 + 16, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
            frame.pts = self.n
            for pkt in self.enc.encode(frame):
                self._mux(bytes(pkt), pkt.is_keyframe)
            await asyncio.sleep(1 / 30)

    async def garbage(self, seconds: float) -> None:
        """Slices that name a picture parameter set nobody sent (id 200), then noise: they never
        decode (pure random bytes now and then decode into a concealed picture)."""
        head = "1" + "1" + "0000000" + "11001001"  # first_mb 0, slice_type P, pps_id ue(200)
        for _ in range(int(seconds * 30)):
            bits = head + "".join(self.rng.choice("01") for _ in range(8 * 300 - len(head)))
            body = int(bits, 2).to_bytes(300, "big").replace(b"\x00\x00", b"\x00\x03\x00")  # no start codes
            self._mux(b"\x00\x00\x00\x01\x41" + body, False)
            await asyncio.sleep(1 / 30)

    def close(self) -> None:
        self.out.close()


async def test_undecodable_ts_is_lost_and_comes_back(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(config(streams={"ts": {"source": f"udp://127.0.0.1:{port}", "mode": "both"}}))
    sender = TsSender(port)
    tasks: list[asyncio.Future[None]] = []
    try:
        await sender.good(1.5)
        await wait_for(lambda: relay.entry("ts").state.value == "live", 10, "live on good video")
        bad = asyncio.ensure_future(sender.garbage(5.0))
        tasks.append(bad)
        t0 = time.monotonic()
        await wait_for(lambda: relay.entry("ts").state.value == "lost", 4, "lost on undecodable video")
        print(f"\nlost {time.monotonic() - t0:.2f} s after the garbage began")
        await asyncio.sleep(1.5)
        assert relay.entry("ts").state.value == "lost"  # still sending, still no picture
        await bad
        good = asyncio.ensure_future(sender.good(4.0))
        tasks.append(good)
        await wait_for(lambda: relay.entry("ts").state.value == "live", 4, "live again on good video")
        await good
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sender.close()
