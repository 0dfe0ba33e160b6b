"""WHEP egress: a viewer's SDP offer in, an answer out, the rendition's shared packets to it.

Each viewer reads its rendition through its own bounded queue (``Stream.subscribe``) and
its sender only packetises: no per-viewer encoding. The egress admits, plays and stops;
everything else a viewer has is its :class:`Viewer`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..abr import AbrController, Rung
from ..auth import Principal
from ..config import PASSTHROUGH, Config
from ..errors import RelayError
from ..limits import Limiter
from ..media import Unit
from ..registry import Entry, Registry
from ..webrtc import (
    IcePolicy,
    PeerSession,
    SessionTable,
    answer_offer,
    check_offer,
    new_peer,
    prefer_codec,
)
from .adapt import Adapter, poll_rtt
from .channel import send_times_and_telemetry, serve
from .echo import Echoes
from .viewer import NO_READER, Viewer, ViewerInfo

__all__ = ["AUTO", "WhepEgress"]

log = logging.getLogger("relay.whep")
AUTO = "auto"  # the rendition name that asks the relay to choose from the viewer's link


class WhepEgress:
    def __init__(self, registry: Registry, config: Config, limiter: Limiter | None = None,
                 ice: Callable[[], list[dict[str, Any]]] | None = None,
                 sessions: SessionTable | None = None) -> None:
        self.registry = registry
        self.config = config
        self.limiter = limiter or Limiter(config.limits)
        self.ice = ice or (lambda: [])
        self.table = sessions or SessionTable(self.limiter)  # WHIP and WHEP: one table
        self.viewers: dict[str, Viewer] = {}
        self.creep_resets = 0
        # Messages a page gets when its channel opens, after hello (e.g. every marker now).
        self.greetings: list[Callable[[], str]] = []

    def broadcast(self, msg: str) -> None:
        """News for every viewer (encoded once): on the relay channel, and copies on the echo
        channel (:meth:`Viewer.announce`), so a lost packet on a weak link does not hold it up
        for a retransmission timeout."""
        for viewer in tuple(self.viewers.values()):
            viewer.announce(msg)

    @property
    def sessions(self) -> dict[str, PeerSession]:
        return self.table.of_kind("whep")

    def viewers_of(self, stream: str) -> dict[str, ViewerInfo]:
        """The viewers of one stream (session id -> what the relay shows of them)."""
        return {k: v.info for k, v in self.viewers.items() if v.entry.name == stream}

    def count(self, stream: str) -> int:
        return sum(1 for v in self.viewers.values() if v.entry.name == stream)

    def _admit(self, entry: Entry, remote: str) -> None:
        lim = self.config.limits
        if self.count(entry.name) >= lim.viewers_per_stream:
            raise self.limiter.refuse("viewers_per_stream", 503,
                                      f"stream {entry.name!r} has its maximum of "
                                      f"{lim.viewers_per_stream} viewers")
        if len(self.sessions) >= lim.viewers_total:
            raise self.limiter.refuse("viewers_total", 503,
                                      f"the relay has its maximum of {lim.viewers_total} viewers")
        self.table.admit_client(remote)

    def _choose(self, entry: Entry, rendition: str | None, ladder: list[Rung]) -> tuple[str, bool]:
        """The rendition a new viewer starts on, and whether the relay chooses for it."""
        auto = rendition in (None, AUTO) and len(ladder) > 1
        if rendition == AUTO and not auto:
            rendition = None  # one rung or passthrough only: nothing to choose between
        if auto:
            return AbrController.start_rung(ladder, self.config.abr.start_kbps), True
        if rendition is None:
            return (PASSTHROUGH if entry.mode == "passthrough" else self.config.renditions[0].name), False
        return rendition, False

    def _codec(self, entry: Entry, rendition: str, offer_sdp: str) -> str:
        """The codec the viewer gets (404: no such rendition; 422: the offer cannot take it)."""
        if rendition == PASSTHROUGH and entry.source_info.codec == "hevc":
            raise RelayError(422, f"stream {entry.name!r} comes in as H.265, which is only served "
                                  "transcoded to H.264: watch a transcoded rendition (or auto)")
        if entry.rendition_stream(rendition) is None:
            names = [r.name for r in self.config.renditions] if entry.mode != "passthrough" else []
            if entry.passthrough is not None:
                names.append(PASSTHROUGH)
            raise RelayError(404, f"stream {entry.name!r} has no rendition {rendition!r} "
                                  f"(mode {entry.mode}; have: {', '.join(names)})")
        rend = self.config.rendition(rendition)
        codec = rend.codec if rend is not None else "h264"
        codecs = check_offer(offer_sdp, "view")
        if codec not in codecs:
            raise RelayError(422, f"rendition {rendition!r} is {codec}; the offer only accepts {codecs}")
        return codec

    async def play(
        self, stream: str, offer_sdp: str, remote: str, rendition: str | None = None,
        principal: Principal | None = None, tile: bool = False,
    ) -> tuple[str, str]:
        """Start a viewing session; returns (session id, SDP answer)."""
        entry = self.registry.get(stream)
        if entry is None:
            raise RelayError(404, f"no stream {stream!r}")
        self._admit(entry, remote)
        ladder = self._ladder(entry)
        name, auto = self._choose(entry, rendition, ladder)
        codec = self._codec(entry, name, offer_sdp)
        viewer = self._viewer(entry, name, codec, remote, principal, auto, tile)
        session = viewer.session
        try:
            answer = await answer_offer(session.pc, offer_sdp, IcePolicy.of(self.config.webrtc))
        except BaseException:
            await session.close("offer failed")
            raise
        self.viewers[session.id] = viewer
        if auto:
            rungs = [r for r in ladder if r.name in {x.name for x in self.config.renditions
                                                      if x.codec == codec}]
            ctl = AbrController(rungs, name, hold_s=self.config.abr.hold_s,
                                max_hold_s=self.config.abr.max_hold_s)
            viewer.adapter = Adapter(viewer, ctl, self.config.abr.queue_watch)
            session.spawn(viewer.adapter.run())
        else:
            session.spawn(poll_rtt(viewer))
        log.info("viewer joined", extra={"stream": stream, "rendition": name,
                                         "session": session.public, "remote": remote})
        return session.id, answer

    def _viewer(self, entry: Entry, name: str, codec: str, remote: str, principal: Principal | None,
                auto: bool, tile: bool = False) -> Viewer:
        """A peer with one sending track on rendition ``name``, and its Viewer."""
        out = entry.rendition_stream(name)
        assert out is not None
        pc = new_peer(self.ice())
        session = PeerSession("whep", entry.name, pc, remote)
        session.principal = principal
        transceiver = pc.addTransceiver("video", direction="sendonly")
        prefer_codec(transceiver, codec)
        info = ViewerInfo(session=session.id, rendition=name, remote=remote,
                          who=principal.name if principal is not None else "", auto=auto,
                          rendition_reason="auto: start" if auto else "chosen",
                          relay=principal is not None and bool(principal.node), tile=tile)

        def on_sent(unit: Unit) -> None:
            entry.latency.record(info.rendition, unit.timeline)

        viewer = Viewer.sending(session, entry, info, transceiver,
                                lambda: out.subscribe(label=session.public, relay=info.relay,
                                                      tile=info.tile), on_sent)
        session.spawn(send_times_and_telemetry(viewer, me=self.config.name))
        session.spawn(viewer.watch_silence())

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            # The page's two channels, once each; any more is closed at once (each would get
            # the hello and every marker: a flood of channels was a flood of snapshots).
            if channel.label == "echo" and viewer.echo is None:
                viewer.echo = Echoes(channel)
            elif channel.label != "echo" and viewer.channel is None:
                serve(viewer, channel, self.config.latency, lambda: self._reported(viewer), self.greetings)
            else:
                info.channels_refused += 1
                if info.channels_refused in (1, 100):
                    log.info("data channel refused: a viewer opens the page's two only",
                             extra={"stream": entry.name, "viewer": info.public_id,
                                    "refused": info.channels_refused})
                channel.close()

        self.table.add(session)
        session.on_close.append(self._closed)
        return viewer

    def _reported(self, viewer: Viewer) -> None:
        if viewer.guard_creep(self.config.latency.creep_ms):
            self.creep_resets += 1

    def _ladder(self, entry: Entry) -> list[Rung]:
        if entry.mode == "passthrough" or not self.config.abr.enabled:
            return []
        return [Rung(r.name, r.bitrate_kbps, r.max_fps) for r in self.config.renditions]

    async def _closed(self, session: PeerSession) -> None:
        viewer = self.viewers.pop(session.id, None)
        if viewer is not None:
            viewer.track.stop()

    def reader_stats(self, session_id: str) -> dict[str, int]:
        viewer = self.viewers.get(session_id)
        return viewer.reader_stats() if viewer is not None else dict(NO_READER)

    async def stop(self, stream: str, session_id: str) -> None:
        await self.table.stop("whep", stream, session_id, "viewer sent DELETE")

    async def end_where(self, cond: Callable[[PeerSession], bool], reason: str) -> int:
        """End every session for which ``cond`` holds (e.g. a revoked share link's)."""
        doomed = [v for v in self.viewers.values() if cond(v.session)]
        for v in doomed:
            await v.end(reason)
        return len(doomed)

    async def close_all(self) -> None:
        await self.table.close_all("whep")
