"""A WebRTC publisher's video: decoded frames into the stream (:class:`InboundVideo`), and,
once H.264 is agreed, its packets as they arrived (:class:`InboundPackets`).

aiortc decodes every inbound frame (the transcoded renditions need the picture), but the
packets themselves are worth keeping: a forwarding relay's rung, OBS's or a browser's H.264,
go to the stream's ``source`` rendition untouched (no second encode, a few ms less) and the
record keeps what was sent. Each whole frame is taken from the marker jitter buffer as it
leaves it (depayloaded Annex-B, before the decoder), timed by its RTP timestamp, and
published from its first keyframe on. Passthrough viewers' keyframe requests become a PLI
to the publisher (rate-limited by the stream, like every keyframe request).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from ..media import Unit
from ..registry import Entry
from ..webrtc import (
    ArrivalTimes,
    MarkerJitterBuffer,
    PeerSession,
    ask_keyframe,
    pump_track,
    send_nack,
    use_marker_jitter_buffer,
)
from .h264 import has_nal
from .upstream import Upstream

__all__ = ["InboundPackets", "InboundVideo", "publish_frame"]

RTP_CLOCK = Fraction(1, 90000)
IDR, SPS = 5, 7


class InboundPackets:
    def __init__(self, entry: Entry, receiver: Any, jb: MarkerJitterBuffer, arrivals: ArrivalTimes | None,
                 upstream: Callable[[], Upstream | None]) -> None:
        self.entry = entry
        self.arrivals = arrivals
        self.upstream = upstream
        self.base: int | None = None
        self.published = 0
        jb.on_frame = self._on_frame

        def keyframe() -> None:
            if jb.ssrc is not None:
                ask_keyframe(receiver, jb.ssrc)

        entry.slot.announce_packets(keyframe)

    def _on_frame(self, frame: Any) -> None:
        out = self.entry.passthrough
        if out is None:
            return
        data = bytes(frame.data)
        key = has_nal(data, IDR) or has_nal(data, SPS)
        if self.base is None:
            if not key:
                return  # start where a viewer (and the record) can: at a keyframe
            self.base = frame.timestamp
        packet = av.Packet(data)
        packet.pts = packet.dts = (frame.timestamp - self.base) & 0xFFFFFFFF
        packet.time_base = RTP_CLOCK
        packet.is_keyframe = key
        unit = Unit.arrived(packet, keyframe=key)
        arrived = self.arrivals.at(frame.timestamp) if self.arrivals is not None else None
        if arrived is not None:
            unit.timeline["arrival"] = arrived
        up = self.upstream()
        times = up.times_for(frame.timestamp, unit.arrival_wall_ms) if up is not None else None
        if times is not None:
            unit.arrival_wall_ms, unit.capture_wall_ms = times
        self.published += 1
        out.publish(unit)


def publish_frame(entry: Entry, frame: Any, arrivals: ArrivalTimes | None, upstream: Upstream | None) -> None:
    """A frame aiortc decoded from a peer into the stream: its network arrival time, and the
    times it had upstream where another relay sent it (WHIP in, or a WHEP pull)."""
    arrived = arrivals.lookup(frame.pts) if arrivals is not None else None
    unit = Unit.arrived(frame) if arrived is None else Unit.decoded(frame, arrived)
    if upstream is not None:
        upstream.stamp(unit, arrivals.wire(frame.pts) if arrivals is not None else None)
    entry.touch()
    entry.source.publish(unit)


class InboundVideo:
    """One inbound video track (WHIP in, a WHEP pull): the marker jitter buffer and arrival
    times on its receiver, its decoded frames into the stream; :meth:`keep_packets` once
    the codec is agreed."""

    def __init__(self, pc: Any, track: Any, session: PeerSession, entry: Entry,
                 upstream: Callable[[], Upstream | None]) -> None:
        self.entry = entry
        self.upstream = upstream
        self.receiver = next((t.receiver for t in pc.getTransceivers()
                              if t.receiver and t.receiver.track is track), None)
        self.jb = use_marker_jitter_buffer(self.receiver) if self.receiver is not None else None
        if self.jb is not None and self.receiver is not None:
            jb, receiver = self.jb, self.receiver

            def nack(lost: list[int]) -> None:
                if jb.ssrc is not None:
                    send_nack(receiver, jb.ssrc, lost)

            jb.on_nack = nack
        self.arrivals = ArrivalTimes(self.receiver) if self.receiver is not None else None
        self.packets: InboundPackets | None = None
        self.last_frame = time.monotonic()
        session.spawn(pump_track(track, self._frame))

    def _frame(self, frame: Any) -> None:
        self.last_frame = time.monotonic()
        publish_frame(self.entry, frame, self.arrivals, self.upstream())

    def keep_packets(self, codec: str) -> None:
        """H.264 agreed: its packets go to the stream's passthrough too."""
        if codec.lower() == "h264" and self.jb is not None and self.packets is None:
            self.packets = InboundPackets(self.entry, self.receiver, self.jb, self.arrivals, self.upstream)
