"""Every use of aiortc's and aioice's private internals, in one place.

aiortc and aioice have no public API for what a relay needs: hearing a viewer's RTCP,
timing inbound packets, a jitter buffer that releases on the marker bit, the RTP timestamp
a sender put on the wire, or choosing ICE host addresses and ports. Each hook below names
the private attribute it relies on; :func:`self_check` looks each one up on real aiortc and
aioice objects at start-up and names any an upgrade removed, so the relay refuses to start
instead of degrading silently. ``tests/test_compat.py`` exercises every hook over real
WebRTC.

| hook | private internal |
|---|---|
| :func:`tap_sender_rtcp` | ``RTCRtpSender._handle_rtcp_packet`` |
| :func:`sent_rtp_timestamp` | ``RTCRtpSender.__rtp_timestamp`` (last RTP timestamp sent) |
| :func:`sent_packet_timestamp` | ``RTCRtpSender.__rtp_history`` |
| :func:`sent_packet_count` | ``RTCRtpSender.__packet_count`` |
| :func:`sender_ssrc` | ``RTCRtpSender._ssrc`` (the SSRC receiver reports name) |
| :func:`can_pad`, :func:`send_padding` | ``RTCRtpSender.__rtx_payload_type``, ``__rtp_history``, |
| | ``_retransmit`` |
| :func:`tap_receiver_rtp` | ``RTCRtpReceiver._handle_rtp_packet`` |
| :func:`receiver_timestamp_origin` | ``RTCRtpReceiver.__timestamp_mapper._origin`` |
| :func:`use_marker_jitter_buffer` | ``RTCRtpReceiver.__jitter_buffer``, ``__kind``; |
| (and :class:`MarkerJitterBuffer`) | ``JitterBuffer._remove_frame``, ``_packets``, ``_origin``, |
| | ``_capacity``, ``remove``; ``RtpPacket._data`` |
| :func:`ask_keyframe`, :func:`send_nack` | ``RTCRtpReceiver._send_rtcp_pli``, ``_send_rtcp_nack`` |
| :func:`transceiver_codecs` | ``RTCRtpTransceiver._codecs`` |
| :func:`set_host_addresses` | ``aioice.ice.get_host_addresses`` |
| :func:`wrap_component_candidates` | ``aioice.ice.Connection.get_component_candidates`` |
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import TimestampMapper
from aiortc.rtp import RTP_HISTORY_SIZE

from . import dtls

__all__ = [
    "MarkerJitterBuffer",
    "ask_keyframe",
    "can_pad",
    "current_host_addresses",
    "original_component_candidates",
    "original_host_addresses",
    "receiver_timestamp_origin",
    "self_check",
    "send_padding",
    "sender_ssrc",
    "sent_packet_count",
    "sent_packet_timestamp",
    "sent_rtp_timestamp",
    "set_host_addresses",
    "tap_receiver_rtp",
    "tap_sender_rtcp",
    "transceiver_codecs",
    "use_marker_jitter_buffer",
    "wrap_component_candidates",
]

_SENDER_RTP_TS = "_RTCRtpSender__rtp_timestamp"
_SENDER_HISTORY = "_RTCRtpSender__rtp_history"
_SENDER_RTX_PT = "_RTCRtpSender__rtx_payload_type"
_SENDER_PACKETS = "_RTCRtpSender__packet_count"
_SENDER_SSRC = "_ssrc"
_RECEIVER_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_RECEIVER_JITTER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_KIND = "_RTCRtpReceiver__kind"

original_host_addresses = aioice.ice.get_host_addresses
original_component_candidates = aioice.ice.Connection.get_component_candidates


# ---------------------------------------------------------------------------- senders

def tap_sender_rtcp(sender: RTCRtpSender, handler: Callable[[Any], None]) -> None:
    """Call ``handler(packet)`` for every RTCP packet a viewer sends about this sender,
    before aiortc handles it; the handler may edit it (a NACK's ``lost`` list: aiortc
    retransmits what is left from its history)."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        handler(packet)
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def sent_rtp_timestamp(sender: RTCRtpSender) -> int | None:
    """The RTP timestamp of the last packet this sender put on the wire (None before any).

    aiortc adds a random origin to each frame's timestamp; with the pts of the frame it
    last sent, this gives the origin, and so the RTP timestamp of every frame."""
    value = getattr(sender, _SENDER_RTP_TS, None)
    packets = getattr(sender, _SENDER_PACKETS, 0)
    return int(value) if isinstance(value, int) and packets else None


def sent_packet_timestamp(sender: RTCRtpSender, seq: int) -> int | None:
    """The RTP timestamp of packet ``seq`` from aiortc's retransmission history (None when
    it has left the history): tells a NACK for the old rung from one for the new."""
    history = getattr(sender, _SENDER_HISTORY, None)
    if not isinstance(history, dict):
        return None
    packet = history.get(seq % RTP_HISTORY_SIZE)  # aiortc's own key
    if packet is None or getattr(packet, "sequence_number", None) != seq:
        return None
    return int(packet.timestamp)


def sent_packet_count(sender: RTCRtpSender) -> int:
    """Media packets this sender has put on the wire (retransmissions and padding not counted)."""
    value = getattr(sender, _SENDER_PACKETS, 0)
    return value if isinstance(value, int) else 0


def sender_ssrc(sender: RTCRtpSender) -> int | None:
    """The SSRC of this sender's media: the one the viewer's receiver reports are about."""
    value = getattr(sender, _SENDER_SSRC, None)
    return value if isinstance(value, int) else None


def can_pad(sender: RTCRtpSender) -> bool:
    """Whether the viewer negotiated a retransmission stream (RTX, RFC 4588) and packets were
    sent: padding goes there, where the browser discards copies of what it has."""
    return getattr(sender, _SENDER_RTX_PT, None) is not None and bool(getattr(sender, _SENDER_HISTORY, None))


async def send_padding(sender: RTCRtpSender, nbytes: int, max_packets: int = 16) -> int:
    """Send about ``nbytes`` of copies of the newest packets on the RTX stream (bandwidth
    probing, as libwebrtc pads with RTX); returns the payload bytes sent. Without RTX nothing
    is sent: copies on the media stream would count as received twice in receiver reports."""
    if not can_pad(sender):
        return 0
    history: dict[int, Any] = getattr(sender, _SENDER_HISTORY)
    seqs = {p.sequence_number for p in history.values()}
    newest = next((q for q in seqs if (q + 1) & 0xFFFF not in seqs), None)
    if newest is None:
        return 0
    sent = 0
    for k in range(max_packets):
        if sent >= nbytes:
            break
        seq = (newest - k) & 0xFFFF
        packet = history.get(seq % RTP_HISTORY_SIZE)
        if packet is None or packet.sequence_number != seq:
            break
        await sender._retransmit(seq)
        sent += len(packet.payload) + 12
    return sent


# ---------------------------------------------------------------------------- receivers

def tap_receiver_rtp(receiver: RTCRtpReceiver, handler: Callable[[Any], None]) -> None:
    """Call ``handler(packet)`` as each inbound RTP packet arrives, before aiortc's handling."""
    original = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        handler(packet)
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def receiver_timestamp_origin(receiver: RTCRtpReceiver) -> int | None:
    """The RTP timestamp aiortc subtracts from inbound timestamps to make decoded pts."""
    mapper = getattr(receiver, _RECEIVER_MAPPER, None)
    origin = getattr(mapper, "_origin", None)
    return origin if isinstance(origin, int) else None


class MarkerJitterBuffer(JitterBuffer):
    """A video jitter buffer that releases a frame on its RTP marker bit.

    aiortc's JitterBuffer only knows a frame is complete when the first packet of the *next*
    frame arrives, which adds one frame interval (33 ms at 30 fps) to every ingested frame.
    The marker bit (RFC 6184 §5.1 for H.264, RFC 7741 §4.1 for VP8) flags a frame's last
    packet, so a contiguous run ending in a marker is complete now. A timestamp change still
    completes a frame whose marker was lost.

    A hole that is not filled within ``give_up_s`` (the packet and its retransmissions
    lost) is given up on: the buffer skips to the next whole frame and asks for a keyframe
    (the frames after a lost one cannot decode anyway). aiortc's buffer has no time limit:
    it waited until 512 packets piled up behind the hole — measured on a relay-to-relay
    uplink with 5 % loss, 2-5 s without a picture each time.
    """

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False,
                 give_up_s: float = 0.3) -> None:
        super().__init__(capacity, prefetch, is_video)
        self.give_up_s = give_up_s
        self.clock: Callable[[], float] = time.monotonic
        self.gave_up = 0  # holes given up on (frames skipped to the next whole one)
        self._hole_since: float | None = None
        self.ssrc: int | None = None  # the sender's media SSRC (a keyframe request names it)
        # A hole is NACKed again every renack_s while it stands (aiortc NACKs only when a new
        # gap opens, so a lost retransmission was asked for again only by chance).
        self.on_nack: Callable[[list[int]], None] | None = None
        self.renack_s = 0.08
        self.renacks = 0
        self._nacked_at = 0.0
        # Each whole frame as it leaves the buffer (depayloaded: H.264 in Annex-B), before
        # aiortc decodes it: a publisher's packets for passthrough viewers and the record.
        self.on_frame: Callable[[JitterFrame], None] | None = None

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        self.ssrc = packet.ssrc
        pli, frame = self._add(packet)
        if frame is not None and self.on_frame is not None:
            self.on_frame(frame)
        return pli, frame

    def _add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is not None:
            self._hole_since = None
            return pli, frame
        if self._hole_since is None:
            if packet.marker:  # a frame's end came and no frame came out: a hole before it
                self._hole_since = self.clock()
            return pli, frame
        t = self.clock()
        if t - self._hole_since < self.give_up_s:
            if self.on_nack is not None and t - self._nacked_at >= self.renack_s:
                missing = self._missing()
                if missing:
                    self._nacked_at = t
                    self.renacks += 1
                    self.on_nack(missing)
            return pli, frame
        self._hole_since = None
        self.gave_up += 1
        self._skip_to_whole_frame()
        return True, self._remove_frame(packet.sequence_number)

    def _missing(self, limit: int = 32) -> list[int]:
        """Sequence numbers not here between the head and the newest packet held."""
        assert self._origin is not None
        last = max((c for c in range(self._capacity)
                    if self._packets[(self._origin + c) % self._capacity] is not None), default=-1)
        return [(self._origin + c) & 0xFFFF for c in range(last)
                if self._packets[(self._origin + c) % self._capacity] is None][:limit]

    def _skip_to_whole_frame(self) -> None:
        """Drop up to the first packet that follows a marker (a frame's first packet)."""
        assert self._origin is not None
        last_marker = None
        for count in range(1, self._capacity):
            before = self._packets[(self._origin + count - 1) % self._capacity]
            here = self._packets[(self._origin + count) % self._capacity]
            if before is not None and before.marker:
                if here is not None:
                    self.remove(count)
                    return
                last_marker = count
        if last_marker is not None:
            self.remove(last_marker)  # the next frame's packets have not come yet

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets: list[Any] = []
        timestamp = None
        if self._origin is None:
            return None
        # Padding-only packets (Chromium probes bandwidth with them, after a frame, with
        # that frame's timestamp) carry no media: drop them before looking for a frame.
        while True:
            head: Any = self._packets[self._origin % self._capacity]
            if head is None or head._data:
                break
            self.remove(1)
        origin = self._origin
        for count in range(self.capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
                self.remove(count)
                return frame
            packets.append(packet)
            if packet.marker:
                frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
                self.remove(count + 1)
                return frame
        return None


def use_marker_jitter_buffer(receiver: RTCRtpReceiver) -> MarkerJitterBuffer | None:
    """Swap a video receiver's jitter buffer before packets flow; None if aiortc changed."""
    if not hasattr(receiver, _RECEIVER_JITTER) or getattr(receiver, _RECEIVER_KIND, None) != "video":
        return None
    jb = MarkerJitterBuffer(capacity=512, is_video=True)
    setattr(receiver, _RECEIVER_JITTER, jb)
    return jb


_PENDING: set[asyncio.Task[None]] = set()


def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    """Ask the publisher again for packets still missing."""
    task = asyncio.ensure_future(receiver._send_rtcp_nack(media_ssrc, lost))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


def ask_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send the publisher a PLI (a passthrough viewer needs a keyframe)."""
    task = asyncio.ensure_future(receiver._send_rtcp_pli(media_ssrc))
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


def transceiver_codecs(transceiver: Any) -> list[Any]:
    """The codecs negotiated for a transceiver (aiortc keeps them private)."""
    return list(getattr(transceiver, "_codecs", None) or [])


# ---------------------------------------------------------------------------- aioice

def current_host_addresses() -> Callable[[bool, bool], list[str]]:
    """What aioice calls for host addresses now (ours, aioice's own, or someone else's)."""
    fn: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
    return fn


def set_host_addresses(fn: Callable[[bool, bool], list[str]] | None) -> None:
    """Replace aioice's host address discovery (None restores aioice's own)."""
    aioice.ice.get_host_addresses = fn or original_host_addresses  # type: ignore[assignment]


def wrap_component_candidates(fn: Callable[..., Awaitable[Any]] | None) -> None:
    """Replace ``Connection.get_component_candidates`` (None restores aioice's own); ``fn``
    takes the same arguments and may await :data:`original_component_candidates`."""
    aioice.ice.Connection.get_component_candidates = (  # type: ignore[method-assign]
        fn or original_component_candidates)  # type: ignore[assignment]


# ---------------------------------------------------------------------------- self-check

def _sets(cls: type, attr: str) -> bool:
    """Whether ``cls.__init__`` assigns ``self.<attr>`` (instance attributes made there)."""
    return _assigns(cls.__init__, f"self.{attr}")  # type: ignore[misc]


def _assigns(fn: Any, target: str) -> bool:
    """Whether ``fn``'s source assigns ``target`` (with or without an annotation)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return re.search(re.escape(target) + r"\s*(:[^=\n]*)?=(?!=)", source) is not None


def self_check() -> list[str]:
    """Every hook above, looked up in the installed aiortc and aioice; the missing ones, named."""
    checks = {
        "aioice.ice.get_host_addresses": callable(getattr(aioice.ice, "get_host_addresses", None)),
        "aioice.ice.Connection.get_component_candidates": inspect.iscoroutinefunction(
            getattr(aioice.ice.Connection, "get_component_candidates", None)),
        "RTCRtpSender._handle_rtcp_packet": inspect.iscoroutinefunction(
            getattr(RTCRtpSender, "_handle_rtcp_packet", None)),
        "RTCRtpSender.__rtp_timestamp": _sets(RTCRtpSender, "__rtp_timestamp"),
        "RTCRtpSender.__packet_count": _sets(RTCRtpSender, "__packet_count"),
        "RTCRtpSender._ssrc": _sets(RTCRtpSender, "_ssrc"),
        "RTCRtpSender.__rtp_history": _sets(RTCRtpSender, "__rtp_history"),
        "RTCRtpSender.__rtx_payload_type": _sets(RTCRtpSender, "__rtx_payload_type"),
        "RTCRtpSender._retransmit": inspect.iscoroutinefunction(getattr(RTCRtpSender, "_retransmit", None)),
        "RTCRtpReceiver._handle_rtp_packet": inspect.iscoroutinefunction(
            getattr(RTCRtpReceiver, "_handle_rtp_packet", None)),
        "RTCRtpReceiver._send_rtcp_pli": inspect.iscoroutinefunction(
            getattr(RTCRtpReceiver, "_send_rtcp_pli", None)),
        "RTCRtpReceiver._send_rtcp_nack": inspect.iscoroutinefunction(
            getattr(RTCRtpReceiver, "_send_rtcp_nack", None)),
        "RTCRtpReceiver.__timestamp_mapper": _sets(RTCRtpReceiver, "__timestamp_mapper"),
        "TimestampMapper._origin": _sets(TimestampMapper, "_origin"),
        "RTCRtpReceiver.__jitter_buffer": _sets(RTCRtpReceiver, "__jitter_buffer"),
        "RTCRtpReceiver.__kind": _sets(RTCRtpReceiver, "__kind"),
        "RTCRtpTransceiver._codecs": _sets(RTCRtpTransceiver, "_codecs"),
        "JitterBuffer._remove_frame": callable(getattr(JitterBuffer, "_remove_frame", None)),
        "JitterBuffer internals": all(hasattr(JitterBuffer(capacity=16, is_video=True), a)
                                      for a in ("_packets", "_origin", "_capacity", "remove")),
        # aiortc's receiver puts the depayloaded frame data on each packet as ``_data``.
        "RtpPacket._data": _assigns(RTCRtpReceiver._handle_rtp_packet, "packet._data"),
        **dtls.checks(_sets),  # DTLS for FFmpeg's WHIP: see .dtls
    }
    return [name for name, ok in checks.items() if not ok]
