"""H.265 in RTMP, both layouts real encoders use, built from libx265's own output (PyAV):
Enhanced RTMP (hvc1: SequenceStart / CodedFrames) and the legacy FLV codec id 12."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from relay.sources.hevc import HvcToAnnexB, is_hevc


def _encoded(n: int = 12) -> tuple[bytes, list[tuple[bytes, bool]]]:
    """(hvcC record, [(length-prefixed NAL units, keyframe)]) from libx265, as FLV carries them."""
    enc = av.CodecContext.create("libx265", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 180, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = {"preset": "ultrafast", "x265-params": "log-level=error:bframes=0:keyint=6:repeat-headers=0"}
    enc.flags |= av.codec.context.Flags.global_header  # the parameter sets go to extradata (hvcC)
    out: list[tuple[bytes, bool]] = []
    for i in range(n):
        y = np.full((270, 320), 16 + 10 * i, np.uint8)
        frame = av.VideoFrame.from_ndarray(y, format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in enc.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in enc.encode(None)]
    return _hvcc(bytes(enc.extradata)), out


def _hvcc(annexb: bytes) -> bytes:
    """An HEVCDecoderConfigurationRecord around libx265's parameter sets (it gives them as
    Annex-B; FLV muxers wrap them so): version 1, 4-byte lengths, one array per type."""
    nals = [n for n in annexb.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01") if n]
    head = bytes([1]) + bytes(20) + bytes([0xFC | 3]) + bytes([len(nals)])
    return head + b"".join(bytes([0x80 | ((n[0] >> 1) & 0x3F)]) + (1).to_bytes(2, "big")
                           + len(n).to_bytes(2, "big") + n for n in nals)


def _annexb_to_lengths(data: bytes) -> bytes:
    """libx265 packets are Annex-B; FLV carries 4-byte length prefixes."""
    nals = [n for n in data.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01") if n]
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals)


def _decode(bodies: list[bytes]) -> list[tuple[int, int]]:
    parser, dec, sizes = HvcToAnnexB(), av.CodecContext.create("hevc", "r"), []
    for body in bodies:
        assert is_hevc(body)
        got = parser.feed(body)
        if got is None:
            continue
        au, key, cts = got
        assert cts == 0
        sizes += [(f.width, f.height) for f in dec.decode(av.Packet(au))]
    sizes += [(f.width, f.height) for f in dec.decode(None)]
    return sizes


@pytest.mark.parametrize("layout", ["enhanced", "legacy12"])
def test_h265_tags_become_decodable_access_units(layout: str) -> None:
    extradata, packets = _encoded()
    assert len(extradata) > 40, "libx265 gave no parameter sets"
    if layout == "enhanced":
        bodies = [bytes([0x80 | (1 << 4) | 0]) + b"hvc1" + extradata]
        bodies += [bytes([0x80 | ((1 if key else 2) << 4) | 1]) + b"hvc1" + b"\0\0\0" + _annexb_to_lengths(data)
                   for data, key in packets]
    else:
        bodies = [bytes([(1 << 4) | 12, 0, 0, 0, 0]) + extradata]
        bodies += [bytes([((1 if key else 2) << 4) | 12, 1, 0, 0, 0]) + _annexb_to_lengths(data)
                   for data, key in packets]
    sizes = _decode(bodies)
    assert len(sizes) == len(packets) == 12 and set(sizes) == {(320, 180)}


def test_not_hevc() -> None:
    assert not is_hevc(bytes([0x17, 1, 0, 0, 0]))  # AVC
    assert not is_hevc(bytes([0x90]) + b"av01")
    assert HvcToAnnexB().feed(bytes([0x91]) + b"av01" + b"\0" * 8) is None
