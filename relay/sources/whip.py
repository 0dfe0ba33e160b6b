"""WHIP ingest (RFC 9725): an SDP offer in, an answer out, decoded frames into the stream."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..config import Config
from ..errors import RelayError
from ..media import Unit
from ..registry import Entry, Registry, State
from ..webrtc import (
    ArrivalTimes,
    PeerSession,
    answer_offer,
    check_offer,
    new_peer,
    new_session_id,
    pump_track,
    use_marker_jitter_buffer,
)

__all__ = ["WhipIngest"]

log = logging.getLogger("relay.whip")


class WhipIngest:
    def __init__(self, registry: Registry, config: Config) -> None:
        self.registry = registry
        self.config = config
        self.sessions: dict[str, PeerSession] = {}

    async def publish(self, stream: str, offer_sdp: str, remote: str) -> tuple[str, str]:
        """Start a publishing session; returns (session id, SDP answer)."""
        codecs = check_offer(offer_sdp, "publish")
        entry = self.registry.get_or_create(stream)
        self._evict_stale(entry)
        session_id = new_session_id()
        entry.claim(session_id, "whip", remote)  # 409 while another publisher is live
        pc = new_peer(self.config.webrtc.stun_servers)
        session = PeerSession("whip", stream, pc, remote, session_id=session_id)
        self.sessions[session.id] = session
        session.on_close.append(self._closed)

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
            session.spawn(pump_track(track, lambda f: self._on_frame(entry, f, arrivals)))

        try:
            answer = await answer_offer(pc, offer_sdp)
        except BaseException:
            await session.close("offer failed")
            raise
        for t in pc.getTransceivers():
            if t.kind == "video" and t.receiver and getattr(t, "_codecs", None):
                entry.source_codec = t._codecs[0].mimeType.split("/")[1]
        log.info("publisher joined", extra={"stream": stream, "session": session.id,
                                            "remote": remote, "offered": codecs,
                                            "codec": entry.source_codec})
        return session.id, answer

    @staticmethod
    def _on_frame(entry: Entry, frame: Any, arrivals: ArrivalTimes | None) -> None:
        arrived = arrivals.lookup(frame.pts) if arrivals is not None else None
        unit = Unit.arrived(frame) if arrived is None else Unit.decoded(frame, arrived)
        entry.touch()
        entry.source.publish(unit)

    def _evict_stale(self, entry: Entry) -> None:
        """A drone that lost its link comes back before its old session timed out: let it in."""
        old = self.sessions.get(entry.publisher or "")
        if old is None:
            return
        grace = self.config.media.signal_lost_after_s + 15.0
        if entry.state is State.LIVE or (
            entry.state is State.WAITING and time.time() - old.started < grace
        ):
            return  # a live (or just-connecting) publisher keeps the stream: claim() says 409
        log.warning("replacing stale publisher", extra={"stream": entry.name, "session": old.id})
        entry.release(old.id)
        old.spawn(old.close("replaced by a new publisher"))

    async def _closed(self, session: PeerSession) -> None:
        self.sessions.pop(session.id, None)
        entry = self.registry.get(session.stream)
        if entry is not None:
            entry.release(session.id)

    async def stop(self, stream: str, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.stream != stream:
            raise RelayError(404, f"no WHIP session {session_id!r} on stream {stream!r}")
        await session.close("publisher sent DELETE")

    async def close_all(self) -> None:
        for s in tuple(self.sessions.values()):
            await s.close("relay shutting down")
