"""Every aiortc/aioice private hook in relay/webrtc/compat.py, over real WebRTC on loopback,
and the start-up self-check that names a hook an upgrade removed."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from aiortc.rtp import RtcpRrPacket

from relay.app import create_app
from relay.config import parse
from relay.media import now
from relay.webrtc import compat
from relay.webrtc.tracks import RtcpTap
from tests.helpers import SMALL


class Frames(MediaStreamTrack):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(1 / 30)
        img = np.full((120, 160, 3), (self.n * 7) % 255, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts, frame.time_base = self.n * 3000, fractions.Fraction(1, 90000)
        self.n += 1
        return frame


async def _pair(track: MediaStreamTrack) -> tuple[RTCPeerConnection, RTCPeerConnection, Any, Any]:
    a, b = RTCPeerConnection(), RTCPeerConnection()
    sender = a.addTrack(track)
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    b.on("track", lambda t: got.done() or got.set_result(t))
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    receiver = b.getTransceivers()[0].receiver
    return a, b, sender, receiver


async def _connect(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)


async def test_self_check_finds_every_hook_in_the_installed_versions() -> None:
    assert compat.self_check() == []


def test_a_removed_hook_is_named_and_the_relay_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_handle_rtcp_packet")
    monkeypatch.delattr(aioice.ice, "get_host_addresses")
    missing = compat.self_check()
    assert "RTCRtpSender._handle_rtcp_packet" in missing and "aioice.ice.get_host_addresses" in missing
    with pytest.raises(RuntimeError, match=r"RTCRtpSender\._handle_rtcp_packet"):
        create_app(parse(SMALL, env={}))


@pytest.fixture
def loopback_ice() -> Any:
    compat.set_host_addresses(lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
    yield
    compat.set_host_addresses(None)


@pytest.mark.usefixtures("loopback_ice")
async def test_sender_and_receiver_hooks_over_a_real_connection() -> None:
    track = Frames()
    a, b, sender, receiver = await _pair(track)
    rtcp: list[Any] = []
    rtp: list[Any] = []
    compat.tap_sender_rtcp(sender, rtcp.append)  # tap_sender_rtcp
    compat.tap_receiver_rtp(receiver, rtp.append)  # tap_receiver_rtp
    assert compat.use_marker_jitter_buffer(receiver)  # use_marker_jitter_buffer
    assert compat.sent_rtp_timestamp(sender) is None  # nothing sent yet
    await _connect(a, b)
    try:
        remote = receiver.track
        frame = await asyncio.wait_for(remote.recv(), 20)
        for _ in range(10):
            frame = await asyncio.wait_for(remote.recv(), 5)
        # receiver_timestamp_origin: the decoded pts plus the origin is the wire timestamp.
        origin = compat.receiver_timestamp_origin(receiver)
        assert origin is not None
        assert (origin + frame.pts) & 0xFFFFFFFF in {p.timestamp for p in rtp}
        # sent_rtp_timestamp: what the sender last put on the wire, as the receiver saw it.
        wire = compat.sent_rtp_timestamp(sender)
        assert wire is not None and wire in {p.timestamp for p in rtp}
        # sent_packet_timestamp: a packet's RTP timestamp from the retransmission history,
        # for a sequence number the receiver saw; None for one the sender never sent.
        seen = {p.sequence_number: p.timestamp for p in rtp}
        newest = max(seen, key=lambda q: (seen[q], q))
        assert compat.sent_packet_timestamp(sender, newest) == seen[newest]
        assert compat.sent_packet_timestamp(sender, (newest + 1000) & 0xFFFF) is None
        # transceiver_codecs: the negotiated codec.
        assert compat.transceiver_codecs(b.getTransceivers()[0])[0].mimeType.startswith("video/")
        # tap_sender_rtcp: the receiver's reports about this sender reach our handler.
        for _ in range(50):
            if any(isinstance(p, RtcpRrPacket) for p in rtcp):
                break
            await asyncio.sleep(0.1)
        assert any(isinstance(p, RtcpRrPacket) for p in rtcp), rtcp
        # sender_ssrc: the SSRC the receiver's reports are about.
        ssrc = compat.sender_ssrc(sender)
        assert ssrc is not None and ssrc in {rep.ssrc for p in rtcp if isinstance(p, RtcpRrPacket)
                                             for rep in p.reports}
        # RtcpTap.delivered_pps: the packets the receiver reports having received, a second.
        tap = RtcpTap(sender, lambda reason: None)
        n0, t0 = len(rtp), now()
        for _ in range(100):
            if tap.delivered_pps(t0) is not None and now() - t0 > 2.0:
                break
            await asyncio.sleep(0.1)
        pps, got = tap.delivered_pps(t0), (len(rtp) - n0) / (now() - t0)
        assert pps is not None and 0.5 * got < pps < 2 * got, (pps, got)
    finally:
        await a.close()
        await b.close()


async def test_host_address_and_candidate_hooks() -> None:
    seen: list[int] = []

    async def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = await compat.original_component_candidates(self, *args, **kwargs)
        seen.append(len(out))
        return out

    compat.set_host_addresses(lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
    compat.wrap_component_candidates(wrapped)
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        hosts = [ln for ln in pc.localDescription.sdp.splitlines() if " typ host" in ln]
        assert hosts and all(" 127.0.0.1 " in ln for ln in hosts), hosts
        assert seen, "the wrapped get_component_candidates was not used"
    finally:
        await pc.close()
        compat.set_host_addresses(None)
        compat.wrap_component_candidates(None)
    assert aioice.ice.get_host_addresses is compat.original_host_addresses
    assert aioice.ice.Connection.get_component_candidates is compat.original_component_candidates


async def test_nacks_for_the_rung_left_behind_are_dropped_free() -> None:
    """After a change-over the tap drops NACKs for packets sent before it (that picture is
    gone) without spending the budget, and answers NACKs for what came after."""
    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

    from relay.webrtc.tracks import RtcpTap

    # Loopback candidates (the suite may run in a namespace with nothing but "lo").
    compat.set_host_addresses(lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
    track = Frames()
    a, b, sender, receiver = await _pair(track)
    rtp: list[Any] = []
    compat.tap_receiver_rtp(receiver, rtp.append)
    tap = RtcpTap(sender, lambda reason: None)
    await _connect(a, b)
    try:
        remote = receiver.track
        for _ in range(8):
            await asyncio.wait_for(remote.recv(), 20)
        old = max(rtp, key=lambda p: p.timestamp)
        tap.change_over()
        tap.nack_rate = 1.0  # one retransmission in the budget
        for _ in range(5):
            await asyncio.wait_for(remote.recv(), 5)
        new = max(rtp, key=lambda p: p.timestamp)
        assert new.timestamp != old.timestamp

        async def nack(seq: int) -> list[int]:
            pkt = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc)
            pkt.lost = [seq]
            await sender._handle_rtcp_packet(pkt)
            return pkt.lost

        assert await nack(old.sequence_number) == []  # stale: dropped
        assert tap.nacks_stale == 1 and tap.nacks_refused == 0
        assert await nack(new.sequence_number) == [new.sequence_number]  # answered
        # Asked again at once (it is still in flight): not resent, and free.
        assert await nack(new.sequence_number) == []
        assert tap.nacks_repeat == 1 and tap.nacks_refused == 0
        prev = (new.sequence_number - 1) & 0xFFFF
        assert compat.sent_packet_timestamp(sender, prev) is not None
        assert await nack(prev) == []  # the budget (1) is spent now
        assert tap.nacks_refused == 1 and tap.nacks_stale == 1
    finally:
        await a.close()
        await b.close()
        compat.set_host_addresses(None)


async def test_padding_goes_out_on_the_retransmission_stream() -> None:
    """send_padding: copies of sent packets on the RTX stream (which the receiver drops as
    duplicates), not counted as media; nothing without RTX."""
    compat.set_host_addresses(lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
    track = Frames()
    a, b, sender, receiver = await _pair(track)
    rtp: list[Any] = []
    compat.tap_receiver_rtp(receiver, rtp.append)
    await _connect(a, b)
    try:
        remote = receiver.track
        for _ in range(20):  # 20 packets of history to copy
            await asyncio.wait_for(remote.recv(), 20)
        assert compat.can_pad(sender)
        media = compat.sent_packet_count(sender)
        rtx_before = sum(1 for p in rtp if p.ssrc == sender._rtx_ssrc)
        sent = await compat.send_padding(sender, 100_000)  # more than one call sends: 16 packets
        assert sent > 0
        for _ in range(50):
            if sum(1 for p in rtp if p.ssrc == sender._rtx_ssrc) >= rtx_before + 16:
                break
            await asyncio.sleep(0.02)
        rtx = [p for p in rtp if p.ssrc == sender._rtx_ssrc]
        assert len(rtx) - rtx_before == 16
        # Padding is not media: the count the ABR compares NACKs with did not move for it
        # (a few frames went out meanwhile).
        assert compat.sent_packet_count(sender) - media < 10
        # The picture goes on (the receiver discarded the copies).
        for _ in range(5):
            await asyncio.wait_for(remote.recv(), 5)
        # Without RTX negotiated: nothing is sent.
        sender._RTCRtpSender__rtx_payload_type = None
        assert not compat.can_pad(sender) and await compat.send_padding(sender, 3000) == 0
    finally:
        await a.close()
        await b.close()
        compat.set_host_addresses(None)
