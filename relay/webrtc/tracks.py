"""Tracks between aiortc and the hub: inbound track → units, reader → outbound packets."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from ..media import Unit, now
from ..stream import Reader, StreamClosed

__all__ = ["ArrivalTimes", "PacketTrack", "listen_for_keyframe_requests", "pump_track"]

log = logging.getLogger("relay.webrtc")


class PacketTrack(MediaStreamTrack):
    """An outbound video track that hands aiortc pre-encoded packets from a reader.

    aiortc's sender only packetises an ``av.Packet``: no encoder runs per viewer. The
    reader is subscribed on the first ``recv()`` (when the sender starts), so nothing
    queues up while ICE and DTLS are still connecting.
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

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self.reader is None:
            self.reader = self._subscribe()
        try:
            unit = await self.reader.get()
        except StreamClosed:
            self.stop()
            raise MediaStreamError from None
        if "sent" not in unit.timeline:
            unit.timeline["sent"] = now()
            if self._on_sent is not None:
                self._on_sent(unit)
        return unit.payload

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
        super().stop()


def listen_for_keyframe_requests(sender: RTCRtpSender, request: Callable[[str], None]) -> None:
    """Route a viewer's PLI/FIR to ``request`` (the shared encoder, rate-limited upstream).

    aiortc only sets a flag on its own encode path when a PLI arrives; with pre-encoded
    packets nobody would hear it. We wrap this sender's RTCP handler to forward it.
    """
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            request("PLI" if packet.fmt == RTCP_PSFB_PLI else "FIR")
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


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
        original = receiver._handle_rtp_packet

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            self._times[packet.timestamp] = now()
            self._times.move_to_end(packet.timestamp)
            if len(self._times) > self._keep:
                self._times.popitem(last=False)
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle

    def lookup(self, pts: int | None) -> float | None:
        if pts is None:
            return None
        mapper = getattr(self._receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        origin = getattr(mapper, "_origin", None)
        if origin is None:
            return None
        return self._times.get((pts + origin) & 0xFFFFFFFF)
