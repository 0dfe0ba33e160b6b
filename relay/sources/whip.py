"""WHIP ingest (RFC 9725): an SDP offer in, an answer out, decoded frames into the stream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..limits import Limiter
from ..media import Unit
from ..registry import Entry, Registry
from ..webrtc import (
    ArrivalTimes,
    IcePolicy,
    PeerSession,
    SessionTable,
    answer_offer,
    check_offer,
    new_peer,
    new_session_id,
    pump_track,
    transceiver_codecs,
    use_marker_jitter_buffer,
)
from .upstream import Upstream, echo_back

__all__ = ["WhipIngest", "publish_frame"]

log = logging.getLogger("relay.whip")


def publish_frame(entry: Entry, frame: Any, arrivals: ArrivalTimes | None, upstream: Upstream | None) -> None:
    """A frame aiortc decoded from a peer into the stream: its network arrival time, and the
    times it had upstream where another relay sent it (WHIP in, or a WHEP pull)."""
    arrived = arrivals.lookup(frame.pts) if arrivals is not None else None
    unit = Unit.arrived(frame) if arrived is None else Unit.decoded(frame, arrived)
    if upstream is not None:
        upstream.stamp(unit, arrivals.wire(frame.pts) if arrivals is not None else None)
    entry.touch()
    entry.source.publish(unit)


class WhipIngest:
    def __init__(self, registry: Registry, config: Config,
                 ice: Callable[[], list[dict[str, Any]]] | None = None,
                 sessions: SessionTable | None = None,
                 limiter: Limiter | None = None) -> None:
        self.registry = registry
        self.config = config
        self.ice = ice or (lambda: [])
        self.limiter = limiter or Limiter(config.limits)
        self.table = sessions or SessionTable(self.limiter)  # WHIP and WHEP: one table

    @property
    def sessions(self) -> dict[str, PeerSession]:
        return self.table.of_kind("whip")

    async def publish(self, stream: str, offer_sdp: str, remote: str) -> tuple[str, str]:
        """Start a publishing session; returns (session id, SDP answer)."""
        codecs = check_offer(offer_sdp, "publish")
        self.table.admit_client(remote)
        entry = self.registry.get_or_create(stream)
        session_id = new_session_id()
        # 409 while another publisher's media flows; a stale one is evicted.
        entry.claim(session_id, "whip", remote, evict=self._evict)
        pc = new_peer(self.ice())
        session = PeerSession("whip", stream, pc, remote, session_id=session_id)
        self.table.add(session)
        session.on_close.append(self._closed)
        upstream: list[Upstream] = []  # a forwarding relay's "relay" channel, once opened

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            if channel.label == "echo":
                echo_back(channel)
            elif channel.label == "relay" and not upstream:
                upstream.append(Upstream(entry, channel, self.config.name))
                session.spawn(upstream[0].run())

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind != "video":
                session.spawn(pump_track(track, lambda _f: None))  # drain: never queue audio
                return
            receiver = next((t.receiver for t in pc.getTransceivers()
                             if t.receiver and t.receiver.track is track), None)
            arrivals = None
            if receiver is not None:
                use_marker_jitter_buffer(receiver)
                arrivals = ArrivalTimes(receiver)
            session.spawn(pump_track(track, lambda f: self._on_frame(entry, f, arrivals, upstream)))

        try:
            answer = await answer_offer(pc, offer_sdp, IcePolicy.of(self.config.webrtc))
        except BaseException:
            await session.close("offer failed")
            raise
        for t in pc.getTransceivers():
            codecs_of = transceiver_codecs(t)
            if t.kind == "video" and t.receiver and codecs_of:
                entry.source_info.set_codec(codecs_of[0].mimeType.split("/")[1])
        log.info("publisher joined", extra={"stream": stream, "session": session.public,
                                            "remote": remote, "offered": codecs,
                                            "codec": entry.source_info.codec})
        return session.id, answer

    @staticmethod
    def _on_frame(entry: Entry, frame: Any, arrivals: ArrivalTimes | None, upstream: list[Upstream]) -> None:
        publish_frame(entry, frame, arrivals, upstream[0] if upstream else None)

    def _evict(self, session_id: str) -> None:
        """A new publisher took the stream over from this (stale) session: close it."""
        old = self.table.get("whip", session_id)
        if old is not None:
            old.spawn(old.close("replaced by a new publisher"))

    async def _closed(self, session: PeerSession) -> None:
        entry = self.registry.get(session.stream)
        if entry is not None:
            entry.release(session.id)

    async def stop(self, stream: str, session_id: str) -> None:
        await self.table.stop("whip", stream, session_id, "publisher sent DELETE")

    async def close_all(self) -> None:
        await self.table.close_all("whip")
