"""The marker-aware jitter buffer releases a frame on its last packet, not one frame later."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from relay.webrtc.compat import MarkerJitterBuffer


def pkt(seq: int, ts: int, marker: bool, data: bytes) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts)
    p.marker = int(marker)
    p._data = data  # what aiortc's receiver sets after depayloading
    return p


def test_frame_released_on_marker() -> None:
    jb = MarkerJitterBuffer(capacity=128, is_video=True)
    assert jb.add(pkt(10, 3000, False, b"a"))[1] is None
    _, frame = jb.add(pkt(11, 3000, True, b"b"))
    assert frame is not None and frame.data == b"ab" and frame.timestamp == 3000
    # aiortc's own buffer would still be waiting for the next frame here:
    old = JitterBuffer(capacity=128, is_video=True)
    old.add(pkt(10, 3000, False, b"a"))
    assert old.add(pkt(11, 3000, True, b"b"))[1] is None


def test_lost_marker_falls_back_to_timestamp_change() -> None:
    jb = MarkerJitterBuffer(capacity=128, is_video=True)
    jb.add(pkt(1, 100, False, b"x"))
    _, frame = jb.add(pkt(2, 200, False, b"y"))  # marker of frame 100 never came
    assert frame is not None and frame.timestamp == 100 and frame.data == b"x"
    _, frame = jb.add(pkt(3, 200, True, b"z"))
    assert frame is not None and frame.data == b"yz"


def test_reordered_packets_wait_for_the_gap() -> None:
    jb = MarkerJitterBuffer(capacity=128, is_video=True)
    jb.add(pkt(1, 100, False, b"1"))
    assert jb.add(pkt(3, 100, True, b"3"))[1] is None  # packet 2 missing: not complete
    _, frame = jb.add(pkt(2, 100, False, b"2"))
    assert frame is not None and frame.data == b"123"


def test_padding_probes_do_not_hold_frames_back() -> None:
    """Chromium sends empty padding packets after a frame with that frame's timestamp."""
    jb = MarkerJitterBuffer(capacity=128, is_video=True)
    assert jb.add(pkt(1, 100, True, b"f1"))[1].data == b"f1"
    for seq in range(2, 20):
        assert jb.add(pkt(seq, 100, False, b""))[1] is None
    _, frame = jb.add(pkt(20, 200, True, b"f2"))
    assert frame is not None and frame.data == b"f2" and frame.timestamp == 200
