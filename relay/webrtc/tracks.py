"""Tracks between aiortc and the hub: inbound track → units, reader → outbound packets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from ..media import Unit, now
from ..stream import Reader, StreamClosed
from . import compat

__all__ = ["ArrivalTimes", "PacketTrack", "RtcpTap", "listen_for_keyframe_requests", "pump_track"]

log = logging.getLogger("relay.webrtc")


class PacketTrack(MediaStreamTrack):
    """An outbound video track that hands aiortc pre-encoded packets from a reader.

    aiortc's sender only packetises an ``av.Packet``: no encoder runs per viewer. The
    reader is subscribed on the first ``recv()`` (when the sender starts), so nothing
    queues up while ICE and DTLS are still connecting.

    ``switch()`` moves the track to another rendition without renegotiation: a reader of
    the target is subscribed (which asks its encoder for a keyframe) and the old one keeps
    playing until the target's keyframe is queued; then the track changes over at that
    keyframe. Same track, same sender: RTP sequence numbers continue, and timestamps too,
    as every rendition is timed by the pipeline's one clock.

    ``frame_times`` collects, for each frame sent, its RTP timestamp on this viewer's wire
    with the frame's arrival and capture wall-clock times: the egress sends them over the
    data channel, and the browser matches them with the RTP timestamp of each presented
    frame (``requestVideoFrameCallback``) to measure latency without a painted stamp. The
    sender's random timestamp origin is learnt once from what it last put on the wire
    (:func:`compat.sent_rtp_timestamp`); until then nothing is collected.
    """

    kind = "video"

    def __init__(
        self,
        subscribe: Callable[[], Reader],
        on_sent: Callable[[Unit], None] | None = None,
    ) -> None:
        super().__init__()
        self._subscribe = subscribe
        self._on_sent = on_sent
        self.reader: Reader | None = None
        self._next: Reader | None = None
        self._next_done: Callable[[], None] | None = None
        self._last_pts: int | None = None
        self.switches = 0
        self.sender: RTCRtpSender | None = None  # set by the egress, to learn the RTP origin
        self.rtp_origin: int | None = None
        self._last_rtp: int | None = None
        # (RTP timestamp, arrival ms, capture ms | None, 1 for the slate: not a live picture)
        self.frame_times: deque[tuple[int, int, int | None, int]] = deque(maxlen=256)

    @property
    def switching(self) -> bool:
        """A change-over is pending (it happens at the target's next keyframe)."""
        return self._next is not None

    def switch(self, subscribe: Callable[[], Reader], done: Callable[[], None] | None = None) -> None:
        """Change over to ``subscribe()``'s stream at its next keyframe."""
        if self._next is not None:
            self._next.close()
        self._subscribe = subscribe
        self._next = subscribe() if self.reader is not None else None
        self._next_done = done
        if self.reader is None and done is not None:
            done()  # not started yet: the first recv() subscribes to the new stream

    def _change_over(self) -> None:
        assert self._next is not None and self.reader is not None
        self.reader.close()
        self.reader, self._next = self._next, None
        self.switches += 1
        if self._next_done is not None:
            self._next_done()
            self._next_done = None

    async def _next_unit(self) -> Unit:
        assert self.reader is not None
        while True:
            if self._next is not None and len(self._next):
                self._change_over()  # the target's queue starts at its keyframe
            if self._next is None:
                return await self.reader.get()
            get = asyncio.ensure_future(self.reader.get())
            ready = asyncio.ensure_future(self._next.wait_ready())
            done, _ = await asyncio.wait({get, ready}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                ready.cancel()
                return get.result()
            get.cancel()
            with contextlib.suppress(asyncio.CancelledError, StreamClosed):
                await get

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self.reader is None:
            self.reader = self._subscribe()
        try:
            unit = await self._next_unit()
        except StreamClosed:
            self.stop()
            raise MediaStreamError from None
        if "sent" not in unit.timeline:
            unit.timeline["sent"] = now()
            if self._on_sent is not None:
                self._on_sent(unit)
        packet = unit.payload
        pts = getattr(packet, "pts", None)
        if pts is not None:
            if self._last_pts is not None and pts <= self._last_pts:
                # A change-over keyframe for a frame the old rendition already sent: the
                # same RTP timestamp would merge the two pictures; give it the next tick.
                packet = _retimed(packet, self._last_pts + 1)
                pts = self._last_pts + 1
            rtp = _rtp_ticks(packet)
            if self.rtp_origin is None and self.sender is not None and self._last_rtp is not None:
                wire = compat.sent_rtp_timestamp(self.sender)
                if wire is not None:
                    self.rtp_origin = (wire - self._last_rtp) & 0xFFFFFFFF
            self._last_pts, self._last_rtp = pts, rtp
            if self.rtp_origin is not None and rtp is not None:
                self.frame_times.append(((self.rtp_origin + rtp) & 0xFFFFFFFF, unit.arrival_wall_ms,
                                         unit.capture_wall_ms, 1 if "slate" in unit.timeline else 0))
        return packet

    def stop(self) -> None:
        for r in (self.reader, self._next):
            if r is not None:
                r.close()
        super().stop()


def _rtp_ticks(packet: Any) -> int | None:
    """The packet's pts in the RTP clock (90 kHz), as aiortc's packetiser converts it."""
    tb = packet.time_base
    if packet.pts is None or tb is None:
        return None
    return int(packet.pts * tb * 90000)


def _retimed(packet: Any, pts: int) -> Any:
    """A copy of a shared packet with another pts (the original goes to other viewers)."""
    copy = av.Packet(bytes(packet))
    copy.pts = copy.dts = pts
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


class RtcpTap:
    """Counts what a viewer's RTCP says about its link, for rate adaptation.

    Taps the sender's RTCP (:func:`compat.tap_sender_rtcp`): PLI/FIR go to
    ``on_keyframe_request``; NACKed packets and the latest REMB estimate are counted here.
    aiortc answers NACKs from its retransmission history, but only within a budget: a
    token bucket of ``nack_rate`` packets a second (the egress sets it to a quarter of what
    the viewer is sent), newest first. A link that overflows makes the browser NACK
    thousands of packets a second; retransmitting them all keeps the link full long after
    the viewer moved to a lower rung (measured: 900 NACKs per 0.5 s for 4 s after a failed
    step up), so the rest are refused (``nacks_refused``).
    """

    def __init__(self, sender: RTCRtpSender, on_keyframe_request: Callable[[str], None]) -> None:
        self.sender = sender
        self.plis = 0
        self.nacks = 0
        self.remb_bps: int | None = None
        self.remb_time = 0.0
        self.remb_alarm_bps = 0.0  # an estimate that falls under this sets alarm
        self.alarm = asyncio.Event()  # the egress judges the link at once, not at its next sample
        self.nack_rate = 50.0
        self.last_rtcp: float | None = None  # when the viewer last sent any RTCP
        self.nacks_new = 0  # sequence numbers NACKed for the first time (not the browser's retries)
        self._nacked: OrderedDict[int, None] = OrderedDict()
        self.nacks_refused = 0
        self._tokens = self.nack_rate
        self._tokens_at = now()
        self.nacks_stale = 0  # NACKs nobody can use: out of the history, or the old rung's (free)
        self._stale_ts: int | None = None  # RTP timestamps up to this belong to the old rung
        self._resent: OrderedDict[int, float] = OrderedDict()  # seq -> when it was last resent
        self.resend_gap_s = 0.02  # the egress sets most of the round trip
        self.nacks_repeat = 0  # NACKs for a packet resent less than resend_gap_s ago (free)
        # (when, packets received so far + a constant) from each receiver report: what the
        # link delivered. Chromium puts one in every RTCP packet (no reduced-size RTCP), so
        # a lossy link, NACKing, reports many times a second.
        self.received: deque[tuple[float, int]] = deque(maxlen=256)
        # (when, round trip in s) from each receiver report that answers one of our sender
        # reports (RFC 3550 6.4.1: now - LSR - DLSR), unsmoothed: the sender report crossed
        # the viewer's link, and its queue, on the way.
        self.report_rtts: deque[tuple[float, float]] = deque(maxlen=64)
        self._ssrc = compat.sender_ssrc(sender)

        def handle(packet: Any) -> None:
            self.last_rtcp = now()
            if isinstance(packet, RtcpPsfbPacket):
                if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    self.plis += 1
                    on_keyframe_request("PLI" if packet.fmt == RTCP_PSFB_PLI else "FIR")
                elif packet.fmt == RTCP_PSFB_APP:
                    with contextlib.suppress(ValueError):
                        bitrate, _ssrcs = unpack_remb_fci(packet.fci)
                        if bitrate < self.remb_alarm_bps and bitrate < 0.9 * (self.remb_bps or 0):
                            self.alarm.set()
                        self.remb_bps = int(bitrate)
                        self.remb_time = now()
            elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for rep in packet.reports:
                    if rep.ssrc == self._ssrc:
                        # Received = extended highest sequence number - cumulative lost
                        # (+ the first sequence number, which cancels out in differences).
                        self.received.append((now(), rep.highest_sequence - rep.packets_lost))
                        if rep.lsr:
                            mid = (current_ntp_time() >> 16) & 0xFFFFFFFF
                            rtt = ((mid - rep.lsr - rep.dlsr) & 0xFFFFFFFF) / 65536.0
                            if rtt < 10.0:
                                self.report_rtts.append((now(), rtt))
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self.nacks += len(packet.lost)
                for seq in packet.lost:
                    if seq not in self._nacked:
                        self.nacks_new += 1
                        self._nacked[seq] = None
                while len(self._nacked) > 4096:
                    self._nacked.popitem(last=False)
                self._budget(packet)

        compat.tap_sender_rtcp(sender, handle)


    def delivered_pps(self, since: float) -> float | None:
        """Media packets a second the viewer received, from its receiver reports sent
        since ``since`` (retransmissions that arrived included); None without two of them
        0.25 s apart."""
        pts = [(t, n) for t, n in self.received if t >= since]
        if len(pts) < 2 or pts[-1][0] - pts[0][0] < 0.25:
            return None
        return max(0.0, (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]))

    def change_over(self) -> int | None:
        """The viewer moved to another rung (at its keyframe): NACKs for what was sent before
        are not worth answering — that picture is gone — and must not spend the budget the
        new rung's keyframe needs (measured: after a failed step up the page decoded nothing
        for 2-3 s while the budget went on the overload). Refill the budget now. Returns
        the RTP timestamp of the old rung's last frame (the new rung's are later)."""
        self._stale_ts = compat.sent_rtp_timestamp(self.sender)
        self._tokens = self.nack_rate
        self._tokens_at = now()
        return self._stale_ts

    def _budget(self, packet: RtcpRtpfbPacket) -> None:
        # Only NACKs aiortc can answer spend the budget: a packet that has left its history
        # (128 packets) cannot be sent again, nor one of the rung left behind be of use.
        fresh = []
        t = now()
        for seq in packet.lost:
            last = self._resent.get(seq)
            if last is not None and t - last < self.resend_gap_s:
                # Resent a moment ago and still in flight (a full queue holds it up to
                # 150 ms): the browser asks again every round trip; sending it again
                # would only add to the queue that delays it (libwebrtc's sender waits
                # a round trip between resends of a packet too).
                self.nacks_repeat += 1
                continue
            ts = compat.sent_packet_timestamp(self.sender, seq)
            # RTP timestamps rise across a change-over (same track, same origin); compared
            # modulo 2^32 as the wire does.
            if ts is None or (self._stale_ts is not None
                              and ((self._stale_ts - ts) & 0xFFFFFFFF) < 0x80000000):
                self.nacks_stale += 1
            else:
                fresh.append(seq)
        packet.lost[:] = fresh
        self._tokens = min(self.nack_rate, self._tokens + (t - self._tokens_at) * self.nack_rate)
        self._tokens_at = t
        k = max(0, min(len(packet.lost), int(self._tokens)))
        self._tokens -= k
        if k < len(packet.lost):
            self.nacks_refused += len(packet.lost) - k
            packet.lost[:] = packet.lost[len(packet.lost) - k:]  # the newest are worth most
        for seq in packet.lost:
            self._resent[seq] = t
            self._resent.move_to_end(seq)
        while len(self._resent) > 1024:
            self._resent.popitem(last=False)


def listen_for_keyframe_requests(sender: RTCRtpSender, request: Callable[[str], None]) -> RtcpTap:
    """Route a viewer's PLI/FIR to ``request`` (the shared encoder, rate-limited upstream).

    aiortc only sets a flag on its own encode path when a PLI arrives; with pre-encoded
    packets nobody would hear it. The tap also counts NACKs and keeps the REMB estimate.
    """
    return RtcpTap(sender, request)


async def pump_track(
    track: MediaStreamTrack,
    on_frame: Callable[[Any], None],
    on_end: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Read decoded frames from an inbound track until it ends (aiortc decodes in a thread)."""
    try:
        while True:
            frame = await track.recv()
            on_frame(frame)
    except MediaStreamError:
        pass
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("inbound track failed")
    finally:
        if on_end is not None:
            await on_end()


class ArrivalTimes:
    """When the last RTP packet of each frame reached us, looked up by the decoded frame's pts.

    aiortc decodes inbound video in a thread and hands us frames whose pts is the RTP
    timestamp minus the stream's first one; we remember the arrival time per RTP timestamp
    (bounded) so the relay's latency starts at the network, not after the decoder.
    """

    def __init__(self, receiver: Any, keep: int = 256) -> None:
        self._receiver = receiver
        self._times: OrderedDict[int, float] = OrderedDict()
        self._keep = keep

        def handle(packet: Any) -> None:
            self._times[packet.timestamp] = now()
            self._times.move_to_end(packet.timestamp)
            if len(self._times) > self._keep:
                self._times.popitem(last=False)

        compat.tap_receiver_rtp(receiver, handle)

    def at(self, wire_ts: int) -> float | None:
        """When the last packet with this RTP timestamp arrived (monotonic)."""
        return self._times.get(wire_ts)

    def wire(self, pts: int | None) -> int | None:
        """The RTP timestamp a decoded frame had on the wire."""
        origin = compat.receiver_timestamp_origin(self._receiver)
        if pts is None or origin is None:
            return None
        return (pts + origin) & 0xFFFFFFFF

    def lookup(self, pts: int | None) -> float | None:
        ts = self.wire(pts)
        return None if ts is None else self._times.get(ts)
