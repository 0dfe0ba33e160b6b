"""An RTMP publisher's video path with libx264's own output (PyAV), no network: a publisher
that keeps sending what decodes to nothing is lost within about a second and its
passthrough held; its first decodable frames bring it back."""

from __future__ import annotations

import asyncio
import fractions
import random
from typing import Any

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


async def _frames_within(frames: Any, n: int) -> int:
    """Frames in the reader once it has ``n``, or after 2.5 s."""
    for _ in range(50):
        if len(frames) >= n:
            break
        await asyncio.sleep(0.05)
    return len(frames)


async def test_undecodable_video_is_lost_and_recovers() -> None:
    entry = Entry("d1", parse({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}]}, env={}),
                  configured=True)
    assert entry.passthrough is not None and entry.wants_frames()
    entry.claim("s1", "rtmp", "drone")
    reader = entry.passthrough.subscribe("test", viewer=False)  # every unit, however old
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
        got = await _frames_within(frames, 45)
    finally:
        pub.close()
        frames.close()
    assert got == 45 and pub.errors == 0, (got, pub.errors)
    assert entry.state is State.LIVE


def _flv_tag(kind: int, body: bytes, ts: int) -> bytes:
    head = bytes([kind]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") \
        + bytes([(ts >> 24) & 0xFF]) + b"\x00\x00\x00"
    return head + body + (len(head) + len(body)).to_bytes(4, "big")


async def test_aggregate_messages_and_what_the_relay_passes_over() -> None:
    """An encoder that sends its video in aggregate messages (type 22: FLV tags, audio among
    them), metadata as AMF3 data (15) or odd AMF0 (18), shared objects (19), audio that was
    announced as something else, and message types nobody knows: the video gets through
    (every frame decodes), the rest is passed over unparsed and counted, the connection stays."""
    from pyrtmp.messages import Chunk

    from relay.registry import Registry
    from relay.sources.rtmp import RtmpIngest, _Client, _Conn
    from relay.sources.rtmp_video import aggregate_video

    config = parse({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
                    "rtmp": {"enabled": True}}, env={})
    entry = Entry("d1", config, configured=True)
    entry.claim("s1", "rtmp", "drone")
    pub = RtmpPublisher(entry, "s1", asyncio.get_running_loop())
    frames = entry.source.subscribe("test", maxlen=200, viewer=False)
    ingest = RtmpIngest(Registry(config), config)
    client = _Client("127.0.0.1:1", _Conn(None), publisher=pub)  # type: ignore[arg-type]
    header, tags = _flv_stream(30)

    def chunk(kind: int, payload: bytes, ts: int = 0) -> Chunk:
        return Chunk(chunk_type=0, chunk_id=6, timestamp=ts, msg_length=len(payload), msg_type_id=kind,
                     msg_stream_id=1, payload=payload)

    try:
        await ingest._message(None, chunk(9, header), client)  # type: ignore[arg-type]
        for k in range(0, 30, 5):  # five video tags and an audio tag in each aggregate
            sub = b"".join(_flv_tag(9, body, 1000 + 33 * (k + j)) + _flv_tag(8, b"\xaf\x01" + bytes(20), 1000)
                           for j, (body, _) in enumerate(tags[k:k + 5]))
            await ingest._message(None, chunk(22, sub, ts=33 * k), client)  # type: ignore[arg-type]
            for kind, junk in ((8, b"\x2f" + bytes(9)), (15, b"\x00\x0a\x0b\x01"), (18, b"\x02\xff\xff"),
                               (19, b"\x00\x03so"), (99, b"?")):
                await ingest._message(None, chunk(kind, junk), client)  # type: ignore[arg-type]
            await asyncio.sleep(1 / 30)
        # A command in AMF3 form (an FMS-style client): AMF0 after a zero byte, parsed as such.
        import struct

        fcpublish = b"\x00" + b"\x02\x00\x09FCPublish" + b"\x00" + struct.pack(">d", 3.0) + b"\x05" \
            + b"\x02\x00\x02d1"
        await ingest._message(None, chunk(17, fcpublish), client)  # type: ignore[arg-type]
        got = await _frames_within(frames, 30)
    finally:
        pub.close()
        frames.close()
    assert got == 30 and pub.errors == 0, (got, pub.errors)
    assert client.ignored == {8: 6, 15: 6, 18: 6, 19: 6, 99: 6}, client.ignored
    # Sub-message times renormalised to the aggregate's own: the first lands on it.
    sub = _flv_tag(9, b"a", 5000) + _flv_tag(9, b"b", 5033)
    assert aggregate_video(sub, 100) == [(b"a", 100), (b"b", 133)]
    assert aggregate_video(sub[:-6], 100) == [(b"a", 100)]  # a truncated tag ends the list
