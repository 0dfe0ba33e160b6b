"""One viewing session as one object: its peer session, track, RTCP tap, data channels,
public info and tasks (MediaMTX's ``session.go``: the server keeps only a map of these)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..auth import public_id
from ..media import Unit, now
from ..registry import Entry
from ..stream import Reader
from ..webrtc import PacketTrack, PeerSession, RtcpTap, listen_for_keyframe_requests
from .echo import Echoes

__all__ = ["NO_READER", "VIEWER_SILENT_S", "Viewer", "ViewerInfo"]

log = logging.getLogger("relay.whep")
VIEWER_SILENT_S = 6.0
NO_READER = {"delivered": 0, "dropped": 0, "overflows": 0, "queued": 0,
             "keyframe_requests": 0, "keyframe_requests_refused": 0}


@dataclass
class ViewerInfo:
    """What the relay shows of one viewer; ``report`` is the viewer's own last report.

    ``session`` is the secret in the session's URL (whoever knows it can end the session);
    only ``public_id`` leaves the relay. Written by the viewer's own parts only.
    """

    session: str
    rendition: str
    remote: str
    who: str = ""
    public_id: str = ""
    started: float = field(default_factory=time.time)
    report: dict[str, Any] = field(default_factory=dict)
    report_time: float = 0.0
    rtt_ms: float | None = None
    creep_resets: int = 0
    bad_messages: int = 0  # data-channel messages that were not JSON
    channels_refused: int = 0  # data channels past the page's two (closed at once)
    last_creep: float = 0.0
    auto: bool = False  # the relay picks the rendition from the viewer's link
    relay: bool = False  # another relay (a cluster edge, a forward's centre): keyframes unbudgeted
    tile: bool = False  # a wall's tile (``?screen=wall``): its rendition's frame rate is cut first
    rendition_reason: str = ""
    estimate_kbps: float | None = None
    switches: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)  # the link, as ABR saw it
    probes: list[dict[str, Any]] = field(default_factory=list)  # padding probes and their verdicts

    def __post_init__(self) -> None:
        self.public_id = self.public_id or public_id(self.session)


class Viewer:
    """A viewer's session and everything that belongs to it alone."""

    def __init__(self, session: PeerSession, entry: Entry, info: ViewerInfo, track: PacketTrack,
                 sender: Any, tap: RtcpTap) -> None:
        self.session = session
        self.entry = entry
        self.info = info
        self.track = track
        self.sender = sender
        self.tap = tap
        self.channel: Any = None  # "relay": hello, clock pings, reports, frame times, telemetry
        self.echo: Echoes | None = None  # "echo": round trips (unordered, never retransmitted)
        self.heard_at: float | None = None  # the last message on its data channel (monotonic)
        self.changes = 0  # rendition changes (the page keeps the newest it was told of)
        self.adapter: Any = None  # its ABR (a viewer on "auto"): egress.adapt.Adapter
        # The rung it was on before the relay, short of CPU, moved it down (given back after)
        self.shed_from: str | None = None

    @classmethod
    def sending(cls, session: PeerSession, entry: Entry, info: ViewerInfo, transceiver: Any,
                subscribe: Callable[[], Reader], on_sent: Callable[[Unit], None] | None = None) -> Viewer:
        """A viewer whose sending ``transceiver`` plays what ``subscribe()`` reads (packets,
        no encoding), with its RTCP tap routing PLIs through its own keyframe budget."""
        track = PacketTrack(subscribe, on_sent)
        transceiver.sender.replaceTrack(track)
        track.sender = transceiver.sender
        holder: list[Viewer] = []
        tap = listen_for_keyframe_requests(transceiver.sender, lambda why: holder[0].request_keyframe(why))
        viewer = cls(session, entry, info, track, transceiver.sender, tap)
        holder.append(viewer)
        return viewer

    def send(self, text: str) -> bool:
        """A message on the relay channel, if it is open."""
        if self.channel is None or self.channel.readyState != "open":
            return False
        self.channel.send(text)
        return True

    def request_keyframe(self, reason: str) -> None:
        # Through this viewer's own budget: its PLIs cannot multiply everyone's keyframes.
        if self.track.reader is not None:
            self.track.reader.request_keyframe(reason)

    def announce(self, msg: str) -> None:
        """News the page must not miss (a change of rendition). The reliable channel may be
        held up for a second behind a lost message on a link that just collapsed: copies go
        on the echo channel too (unordered, never retransmitted: one of three gets
        through), and the page keeps the first."""
        self.send(msg)
        if self.echo is not None:
            loop = asyncio.get_running_loop()
            for k in range(3):
                loop.call_later(0.08 * k, self.echo.send_text, msg)

    def guard_creep(self, creep_ms: int) -> bool:
        """Bring a viewer whose latency keeps growing back to the live edge."""
        info = self.info
        latency = info.report.get("latency_ms")
        if latency is None or latency <= creep_ms or self.track.reader is None:
            return False
        if time.time() - info.last_creep < 5.0:
            return False  # give the last reset time to show in the next reports
        info.last_creep = time.time()
        dropped = self.track.reader.skip_to_live(f"latency creep {latency:.0f} ms")
        info.creep_resets += 1
        log.warning("latency creep: viewer moved to live edge",
                    extra={"stream": self.entry.name, "viewer": info.public_id,
                           "latency_ms": round(latency), "dropped": dropped})
        return True

    async def watch_silence(self, silent_s: float = VIEWER_SILENT_S) -> None:
        """A viewer that stops sending RTCP (browsers report every second) is gone: a closed
        tab, a vanished laptop. End its session now rather than after ICE consent expires
        (~30 s): until then the relay would keep sending its rendition into a link that,
        after a page reload on LTE, is the same link the viewer's new session needs. A
        forward passes a shorter ``silent_s``: a dead centre is redialled at once. Whatever
        the peer sends counts (RTCP, every 0.5-1.5 s from aiortc, every second from browsers,
        and its data channel's messages); counted from the connection if nothing ever came
        (a centre killed before its first report)."""
        connected: float | None = None
        while True:
            await asyncio.sleep(min(1.0, silent_s / 8))
            if connected is None and self.session.pc.connectionState == "connected":
                connected = now()
            last = max((t for t in (self.tap.last_rtcp, self.heard_at) if t is not None), default=connected)
            if last is not None and now() - last > silent_s:
                await self.session.close(f"viewer silent: nothing heard for {silent_s:g} s")
                return

    def reader_stats(self) -> dict[str, int]:
        r = self.track.reader
        if r is None:
            return dict(NO_READER)
        return {"delivered": r.delivered, "dropped": r.dropped, "overflows": r.overflows, "queued": len(r),
                "keyframe_requests": r.keyframe_requests,
                "keyframe_requests_refused": r.keyframe_requests_refused}

    async def end(self, reason: str) -> None:
        """End the session, first telling the page why (so it says so and does not retry)."""
        if self.send(json.dumps({"type": "end", "reason": reason})):
            await asyncio.sleep(0)  # let the channel's transport take the message
        await self.session.close(reason)
