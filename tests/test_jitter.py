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


def test_a_hole_not_filled_in_time_is_given_up_on() -> None:
    """A packet lost with its retransmissions: after give_up_s the buffer skips to the next
    whole frame and asks for a keyframe, instead of waiting for 512 packets to pile up."""
    t = [0.0]
    jb = MarkerJitterBuffer(capacity=512, is_video=True, give_up_s=0.3)
    jb.clock = lambda: t[0]
    assert jb.add(pkt(1, 100, True, b"a"))[1] is not None
    # Packet 2 (the first of frame 200) is lost; 3 ends frame 200; 4-5 are frame 300.
    assert jb.add(pkt(3, 200, True, b"c")) == (False, None)
    t[0] = 0.1
    assert jb.add(pkt(4, 300, False, b"d")) == (False, None)
    t[0] = 0.2
    assert jb.add(pkt(5, 300, True, b"e")) == (False, None)  # still waiting: 0.2 s < 0.3 s
    t[0] = 0.45
    pli, frame = jb.add(pkt(6, 400, False, b"f"))
    assert pli and frame is not None and frame.timestamp == 300 and frame.data == b"de"
    assert jb.gave_up == 1
    _, frame = jb.add(pkt(7, 400, True, b"g"))
    assert frame is not None and frame.data == b"fg"


def test_a_hole_filled_in_time_loses_nothing() -> None:
    t = [0.0]
    jb = MarkerJitterBuffer(capacity=512, is_video=True, give_up_s=0.3)
    jb.clock = lambda: t[0]
    jb.add(pkt(1, 100, True, b"a"))
    jb.add(pkt(3, 200, True, b"c"))
    t[0] = 0.2
    jb.add(pkt(4, 300, True, b"d"))
    t[0] = 0.25
    pli, frame = jb.add(pkt(2, 200, False, b"b"))  # the retransmission
    assert not pli and frame is not None and frame.data == b"bc" and jb.gave_up == 0


def test_a_hole_inside_a_frame_is_given_up_on_too() -> None:
    t = [0.0]
    jb = MarkerJitterBuffer(capacity=512, is_video=True, give_up_s=0.3)
    jb.clock = lambda: t[0]
    jb.add(pkt(10, 100, False, b"a"))
    jb.add(pkt(11, 100, False, b"b"))  # 12 (the frame's middle) is lost
    assert jb.add(pkt(13, 100, True, b"d")) == (False, None)
    t[0] = 0.35
    assert jb.add(pkt(14, 200, False, b"e")) == (True, None)  # given up: a keyframe is asked for
    _, frame = jb.add(pkt(15, 200, True, b"f"))
    assert frame is not None and frame.timestamp == 200 and frame.data == b"ef" and jb.gave_up == 1


def test_a_standing_hole_is_nacked_again() -> None:
    """aiortc NACKs a packet once, when its gap opens; a lost retransmission is asked for
    again every renack_s while the hole stands (before giving up)."""
    t = [0.0]
    asked: list[list[int]] = []
    jb = MarkerJitterBuffer(capacity=512, is_video=True, give_up_s=0.5)
    jb.clock = lambda: t[0]
    jb.on_nack = asked.append
    jb.add(pkt(1, 100, True, b"a"))
    jb.add(pkt(3, 200, True, b"c"))  # 2 lost: the hole starts
    t[0] = 0.05
    jb.add(pkt(4, 300, True, b"d"))
    assert asked == []  # not yet: aiortc's own NACK went out when the gap opened
    t[0] = 0.1
    jb.add(pkt(5, 400, True, b"e"))
    assert asked == [[2]]
    t[0] = 0.15
    jb.add(pkt(6, 500, True, b"f"))
    assert asked == [[2]]  # at most every renack_s
    t[0] = 0.2
    jb.add(pkt(7, 600, True, b"g"))
    assert asked == [[2], [2]] and jb.renacks == 2
    _, frame = jb.add(pkt(2, 200, False, b"b"))  # the retransmission came
    assert frame is not None and frame.data == b"bc" and jb.gave_up == 0
