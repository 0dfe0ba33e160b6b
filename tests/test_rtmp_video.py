"""An RTMP publisher's video path with libx264's own output (PyAV), no network: a publisher
that keeps sending what decodes to nothing is lost within about a second and its
passthrough held; its first decodable frames bring it back."""

from __future__ import annotations

import asyncio
import fractions
import random

import av
import numpy as np

from relay.config import parse
from relay.registry import Entry, State
from relay.sources.rtmp_video import RtmpPublisher


def _nals(annexb: bytes) -> list[bytes]:
    return [n for n in annexb.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01") if n]


def _flv_stream(n: int) -> tuple[bytes, list[tuple[bytes, bool]]]:
    """(AVC sequence header tag body, [(NALU tag body, keyframe)]) as an RTMP encoder sends."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 180, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": "keyint=15:scenecut=0"}
    enc.flags |= av.codec.context.Flags.global_header
    packets = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.full((270, 320), (7 * i) % 200 + 16, np.uint8), format="yuv420p")
        frame.pts = i
        packets += [(bytes(p), p.is_keyframe) for p in enc.encode(frame)]
    sps, pps = [x for x in _nals(bytes(enc.extradata)) if x[0] & 0x1F in (7, 8)][:2]
    avcc = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps \
        + bytes([1]) + len(pps).to_bytes(2, "big") + pps
    header = bytes([0x17, 0, 0, 0, 0]) + avcc
    tags = [(bytes([0x17 if key else 0x27, 1, 0, 0, 0])
             + b"".join(len(x).to_bytes(4, "big") + x for x in _nals(data)), key) for data, key in packets]
    return header, tags


async def test_undecodable_video_is_lost_and_recovers() -> None:
    entry = Entry("d1", parse({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}]}, env={}),
                  configured=True)
    assert entry.passthrough is not None and entry.wants_frames()
    entry.claim("s1", "rtmp", "drone")
    reader = entry.passthrough.subscribe("test")
    pub = RtmpPublisher(entry, "s1", asyncio.get_running_loop())
    header, tags = _flv_stream(60)
    ts = 0

    async def send(bodies: list[bytes], seconds: float) -> None:
        nonlocal ts
        for body in bodies:
            pub.video(body, ts)
            ts += 33
            await asyncio.sleep(seconds / len(bodies))
            entry.liveness.check()  # what the registry's watchdog does every 0.1 s

    try:
        pub.video(header, 0)
        await send([b for b, _ in tags[:30]], 1.0)
        assert entry.state is State.LIVE and pub.decodable.decoded_at is not None
        while len(reader):
            await reader.get()
        # Random NAL data in well-formed AVC tags, for two seconds: no picture comes of it.
        # (Seeded: some random bytes do decode into a concealed picture now and then, and a
        # test must not depend on the draw.)
        rnd = random.Random(20261129)
        garbage = [bytes([0x27, 1, 0, 0, 0]) + (300).to_bytes(4, "big") + bytes([0x41]) + rnd.randbytes(299)
                   for _ in range(60)]
        await send(garbage, 2.0)
        assert entry.state is State.LOST
        held = len(reader)
        assert held <= 35, held  # what came before the verdict (about a second); nothing after
        await send([b for b, _ in tags[30:]], 1.0)  # decodable again, from a keyframe
        assert entry.state is State.LIVE
    finally:
        pub.close()
        reader.close()


async def test_real_drones_rtmp_quirks_still_make_pictures() -> None:
    """What real drone apps send (go2rtc #1969, mediamtx #2392 and others), replayed through
    one publisher: a zero-length and a repeated sequence header, timestamps that repeat and
    jump back. Every frame still decodes."""
    entry = Entry("d1", parse({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}]}, env={}),
                  configured=True)
    entry.claim("s1", "rtmp", "drone")
    pub = RtmpPublisher(entry, "s1", asyncio.get_running_loop())
    frames = entry.source.subscribe("test", maxlen=200, viewer=False)
    header, tags = _flv_stream(45)
    stamps = [i * 33 for i in range(45)]
    stamps[10] = stamps[9]  # a repeated timestamp
    stamps[20:25] = [stamps[19] - 200 + 33 * k for k in range(5)]  # a jump back (a clock reset)
    try:
        pub.video(bytes([0x17, 0, 0, 0, 0]), 0)  # a zero-length sequence header
        pub.video(header, 0)
        for i, (body, _) in enumerate(tags):
            if i == 30:
                pub.video(header, stamps[i])  # the sequence header again, mid-stream
            pub.video(body, stamps[i])
            await asyncio.sleep(1 / 60)
            entry.liveness.check()
        for _ in range(50):
            if len(frames) >= 45:
                break
            await asyncio.sleep(0.05)
        got = len(frames)
    finally:
        pub.close()
        frames.close()
    assert got == 45 and pub.errors == 0, (got, pub.errors)
    assert entry.state is State.LIVE
