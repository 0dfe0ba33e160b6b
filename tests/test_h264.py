"""H.264 plumbing of the sources: FLV/AVC → Annex-B, and frames split over RTMP messages."""

from __future__ import annotations

from relay.sources.h264 import AvcToAnnexB, FrameAssembler, has_nal

SPS = b"\x67\x42\xc0\x1e\xaa"
PPS = b"\x68\xce\x3c\x80"


def slice_nal(idr: bool, first_mb_zero: bool, tag: bytes) -> bytes:
    # NAL header, then the slice header's first bit: 1 = first_mb_in_slice is 0.
    return bytes([0x65 if idr else 0x41, 0x88 if first_mb_zero else 0x40]) + tag


def annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def flv_tag(key: bool, kind: int, payload: bytes) -> bytes:
    return bytes([(0x10 if key else 0x20) | 7, kind, 0, 0, 0]) + payload


def avcc(*nals: bytes) -> bytes:
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals)


def test_flv_avc_to_annexb_with_config_before_keyframes() -> None:
    conv = AvcToAnnexB()
    record = bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1]) + len(SPS).to_bytes(2, "big") + SPS
    record += bytes([1]) + len(PPS).to_bytes(2, "big") + PPS
    assert conv.feed(flv_tag(True, 0, record)) is None  # sequence header
    idr = slice_nal(True, True, b"pic")
    au, key = conv.feed(flv_tag(True, 1, avcc(idr)))
    assert key and au == annexb(SPS, PPS, idr) and has_nal(au, 7)
    p = slice_nal(False, True, b"p")
    assert conv.feed(flv_tag(False, 1, avcc(p))) == (annexb(p), False)
    # Truncated NAL lengths keep what was whole; HEVC (codec id 12, DJI) is ignored.
    assert conv.feed(flv_tag(False, 1, avcc(p) + b"\x00\x00\x01\x00ab")) == (annexb(p), False)
    assert conv.feed(bytes([0x1C, 1, 0, 0, 0]) + b"hevc") is None and 12 in conv.ignored_codecs


def test_well_behaved_stream_passes_straight_through() -> None:
    fa = FrameAssembler("s")
    for ts in (0, 33, 66):
        au = annexb(slice_nal(ts == 0, True, b"x"))
        assert fa.push(au, ts == 0, ts) == [(au, ts == 0, ts)]
    assert not fa.split


def test_frames_split_across_messages_are_joined() -> None:
    fa = FrameAssembler("dji")
    top, bottom = annexb(slice_nal(True, True, b"top")), annexb(slice_nal(True, False, b"bot"))
    assert fa.push(top, True, 0) == [(top, True, 0)]  # looked whole: passed on at once
    assert fa.push(bottom, True, 0) == []  # a continuation: from now on, assemble
    assert fa.split
    p1a, p1b = annexb(slice_nal(False, True, b"1a")), annexb(slice_nal(False, False, b"1b"))
    p2a = annexb(slice_nal(False, True, b"2a"))
    assert fa.push(p1a, False, 33) == [(bottom, True, 0)]
    assert fa.push(p1b, False, 33) == []
    assert fa.push(p2a, False, 66) == [(p1a + p1b, False, 33)]  # whole frame, one unit
