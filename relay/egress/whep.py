"""WHEP egress: a viewer's SDP offer in, an answer out, the rendition's shared packets to it.

Each viewer reads its rendition through its own bounded queue (``Stream.subscribe``) and
its sender only packetises: no per-viewer encoding. A data channel ("relay") carries
clock pings (NTP-style) and the viewer's once-a-second report of what it sees.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ..config import PASSTHROUGH, Config
from ..errors import RelayError
from ..media import Unit
from ..registry import Entry, Registry, ViewerInfo
from ..webrtc import (
    PacketTrack,
    PeerSession,
    answer_offer,
    check_offer,
    listen_for_keyframe_requests,
    new_peer,
    prefer_codec,
)

__all__ = ["WhepEgress"]

log = logging.getLogger("relay.whep")

MAX_REPORT_BYTES = 4096
REPORT_FIELDS = {
    "latency_ms": float,
    "latency_p95_ms": float,
    "latency_kind": str,  # "glass-to-glass" (stamped feed) or "relay-to-screen"
    "fps": float,
    "bitrate_kbps": float,
    "packets_lost": int,
    "loss_pct": float,
    "frames_decoded": int,
    "frames_dropped": int,
    "jitter_buffer_ms": float,
    "clock_offset_ms": float,
    "clock_rtt_ms": float,
    "width": int,
    "height": int,
    "user_agent": str,
}


def clean_report(raw: Any) -> dict[str, Any]:
    """Keep the known fields of a viewer's report, with the right types; drop the rest."""
    if not isinstance(raw, dict):
        raise ValueError("report must be a JSON object")
    out: dict[str, Any] = {}
    for key, typ in REPORT_FIELDS.items():
        v = raw.get(key)
        if v is None:
            continue
        if typ is str:
            if isinstance(v, str):
                out[key] = v[:200]
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = typ(v)
    return out


class WhepEgress:
    def __init__(self, registry: Registry, config: Config) -> None:
        self.registry = registry
        self.config = config
        self.sessions: dict[str, PeerSession] = {}
        self.tracks: dict[str, PacketTrack] = {}
        self.creep_resets = 0

    async def play(
        self, stream: str, offer_sdp: str, remote: str, rendition: str | None = None
    ) -> tuple[str, str]:
        """Start a viewing session; returns (session id, SDP answer)."""
        entry = self.registry.get(stream)
        if entry is None:
            raise RelayError(404, f"no stream {stream!r}")
        if rendition is None:
            rendition = PASSTHROUGH if entry.mode == "passthrough" else self.config.renditions[0].name
        out = entry.rendition_stream(rendition)
        rend = self.config.rendition(rendition)
        if out is None:
            names = [r.name for r in self.config.renditions] if entry.mode != "passthrough" else []
            if entry.passthrough is not None and entry.passthrough_source:
                names.append(PASSTHROUGH)
            raise RelayError(404, f"stream {stream!r} has no rendition {rendition!r} "
                                  f"(mode {entry.mode}; have: {', '.join(names)})")
        codec = rend.codec if rend is not None else "h264"
        codecs = check_offer(offer_sdp, "view")
        if codec not in codecs:
            raise RelayError(
                422, f"rendition {rendition!r} is {codec}; the offer only accepts {codecs}"
            )
        pc = new_peer(self.config.webrtc.stun_servers)
        session = PeerSession("whep", stream, pc, remote)
        transceiver = pc.addTransceiver("video", direction="sendonly")
        prefer_codec(transceiver, codec)
        name = rendition

        def on_sent(unit: Unit) -> None:
            entry.latency.record(name, unit.timeline)

        track = PacketTrack(lambda: out.subscribe(label=session.id), on_sent)
        transceiver.sender.replaceTrack(track)
        listen_for_keyframe_requests(transceiver.sender, out.request_keyframe)
        info = ViewerInfo(id=session.id, rendition=name, remote=remote)

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            self._serve_channel(entry, info, track, channel)

        self.sessions[session.id] = session
        self.tracks[session.id] = track
        session.on_close.append(self._closed)
        try:
            answer = await answer_offer(pc, offer_sdp)
        except BaseException:
            await session.close("offer failed")
            raise
        entry.viewers[session.id] = info
        session.spawn(self._poll_rtt(info, transceiver.sender))
        log.info("viewer joined", extra={"stream": stream, "rendition": name,
                                         "session": session.id, "remote": remote})
        return session.id, answer

    def _serve_channel(self, entry: Entry, info: ViewerInfo, track: PacketTrack, ch: Any) -> None:
        thresholds = {
            "green_ms": self.config.latency.green_ms,
            "yellow_ms": self.config.latency.yellow_ms,
            "creep_ms": self.config.latency.creep_ms,
        }

        @ch.on("open")  # type: ignore[untyped-decorator]
        def on_open() -> None:
            ch.send(json.dumps({"type": "hello", "stream": entry.name, "viewer": info.id,
                                "rendition": info.rendition, "thresholds": thresholds}))

        if ch.readyState == "open":
            on_open()

        @ch.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: Any) -> None:
            t1 = time.time() * 1000.0
            if not isinstance(message, str) or len(message) > MAX_REPORT_BYTES:
                return
            try:
                msg = json.loads(message)
                kind = msg.get("type")
            except (ValueError, AttributeError):
                log.info("bad data channel message", extra={"viewer": info.id})
                return
            if kind == "ping":
                ch.send(json.dumps({"type": "pong", "id": msg.get("id"), "t0": msg.get("t0"),
                                    "t1": t1, "t2": time.time() * 1000.0}))
            elif kind == "report":
                try:
                    info.report = clean_report(msg.get("report"))
                except ValueError:
                    return
                info.report_time = time.time()
                self._guard_creep(entry, info, track)

    def _guard_creep(self, entry: Entry, info: ViewerInfo, track: PacketTrack) -> None:
        """Bring a viewer whose latency keeps growing back to the live edge."""
        latency = info.report.get("latency_ms")
        if latency is None or latency <= self.config.latency.creep_ms or track.reader is None:
            return
        if time.time() - info.last_creep < 5.0:
            return  # give the last reset time to show in the next reports
        info.last_creep = time.time()
        dropped = track.reader.skip_to_live(f"latency creep {latency:.0f} ms")
        info.creep_resets += 1
        self.creep_resets += 1
        log.warning("latency creep: viewer moved to live edge",
                    extra={"stream": entry.name, "viewer": info.id,
                           "latency_ms": round(latency), "dropped": dropped})

    async def _poll_rtt(self, info: ViewerInfo, sender: Any) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                stats = await sender.getStats()
            except Exception:
                continue
            for s in stats.values():
                rtt = getattr(s, "roundTripTime", None)
                if s.type == "remote-inbound-rtp" and rtt is not None:
                    info.rtt_ms = round(rtt * 1000.0, 2)

    async def _closed(self, session: PeerSession) -> None:
        self.sessions.pop(session.id, None)
        track = self.tracks.pop(session.id, None)
        if track is not None:
            track.stop()
        entry = self.registry.get(session.stream)
        if entry is not None:
            entry.viewers.pop(session.id, None)

    def reader_stats(self, session_id: str) -> dict[str, int]:
        track = self.tracks.get(session_id)
        if track is None or track.reader is None:
            return {"delivered": 0, "dropped": 0, "overflows": 0, "queued": 0}
        r = track.reader
        return {"delivered": r.delivered, "dropped": r.dropped,
                "overflows": r.overflows, "queued": len(r)}

    async def stop(self, stream: str, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.stream != stream:
            raise RelayError(404, f"no WHEP session {session_id!r} on stream {stream!r}")
        await session.close("viewer sent DELETE")

    async def close_all(self) -> None:
        for s in tuple(self.sessions.values()):
            await s.close("relay shutting down")
