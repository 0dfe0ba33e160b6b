"""WHIP ingest (RFC 9725): an SDP offer in, an answer out, decoded frames into the stream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..limits import Limiter
from ..registry import Registry
from ..webrtc import (
    IcePolicy,
    PeerSession,
    SessionTable,
    answer_offer,
    check_offer,
    new_peer,
    new_session_id,
    pump_track,
    transceiver_codecs,
)
from .inbound import InboundVideo
from .upstream import Upstream, echo_back

__all__ = ["WhipIngest"]

log = logging.getLogger("relay.whip")


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
        entry = await self.registry.ready_to_claim(stream)
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

        videos: list[InboundVideo] = []

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind != "video":
                session.spawn(pump_track(track, lambda _f: None))  # drain: never queue audio
                return
            videos.append(InboundVideo(pc, track, session, entry, lambda: upstream[0] if upstream else None))

        try:
            answer = await answer_offer(pc, offer_sdp, IcePolicy.of(self.config.webrtc))
        except BaseException:
            await session.close("offer failed")
            raise
        for t in pc.getTransceivers():
            codecs_of = transceiver_codecs(t)
            if t.kind == "video" and t.receiver and codecs_of:
                entry.source_info.set_codec(codecs_of[0].mimeType.split("/")[1])
        for video in videos:  # (H.264: its packets for passthrough viewers and the record)
            video.keep_packets(entry.source_info.codec)
        log.info("publisher joined", extra={"stream": stream, "session": session.public,
                                            "remote": remote, "offered": codecs,
                                            "codec": entry.source_info.codec})
        return session.id, answer

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
