"""Forward a stream to another relay: this relay dials out and publishes over WHIP.

The command vehicle's relay serves the scene locally and forwards each stream to the
control centre's relay over its one LTE uplink. It dials (so carrier NAT does not matter),
and the uplink is treated exactly like a viewer's link: a :class:`Viewer` with its RTCP
tap, echo channel and, on "auto", the same :class:`Adapter` and ABR controller, switching
rungs at keyframes on one track from what the centre's receiver reports (REMB, receiver
reports, its frame rate and freezes on the "relay" channel, round trips on "echo"). The
"relay" channel also carries, per frame, its capture and arrival times, the telemetry
samples, and the stream's title and path (see :mod:`relay.sources.upstream`).

Nothing here touches the vehicle's own viewers: the forward is one more reader of a
rendition's shared packets, with its own bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..abr import AbrController, Rung
from ..aio import within
from ..config import PASSTHROUGH, Config, StreamConfig
from ..egress import (
    AUTO,
    Adapter,
    Echoes,
    Viewer,
    ViewerInfo,
    poll_rtt,
    send_times_and_telemetry,
    serve,
)
from ..errors import RelayError
from ..registry import Entry, Registry, State
from ..webrtc import (
    IcePolicy,
    PeerSession,
    accept_answer,
    make_offer,
    new_peer,
    prefer_codec,
)
from .peerhttp import Backoff, Refused, SaidOnce, post_offer, same_origin, ssl_for

__all__ = ["Backoff", "Forwarder", "Refused", "SaidOnce", "post_offer", "ssl_for"]

log = logging.getLogger("relay.forward")
FRAME_TIMES_S = 0.1  # frame times, batched: ~10 messages a second (every 20 ms cost ~60 kbit/s of SCTP)
CONNECT_S = 10.0
CENTRE_SILENT_S = 1.7  # nothing from the centre this long (RTCP, its reports): redial


class Forwarder:
    """One stream to one other relay, for the life of this relay."""

    def __init__(self, registry: Registry, config: Config, sc: StreamConfig, url: str,
                 ice: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.registry = registry
        self.config = config
        self.sc = sc
        self.url = url
        self.ice: Callable[[], list[dict[str, Any]]] = ice or (lambda: [])
        self.state = "waiting"  # waiting (no live stream here), connecting, up, unreachable, refused
        self.since = time.time()
        self.attempts = 0
        self.sessions = 0
        self.refusals = 0
        self.last_error = ""
        self.viewer: Viewer | None = None
        self.adapter: Adapter | None = None
        self._told = SaidOnce(log, "forward refused by the other relay")
        self._down_since: float | None = None

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        network, refused = Backoff(0.5, 2.0), Backoff(2.0, 60.0)
        async with aiohttp.ClientSession() as http:
            while True:
                entry = await self._live_entry()
                self.attempts += 1
                self._set("connecting")
                started = time.monotonic()
                try:
                    reason = await self._session(http, entry)
                    delay = 0.2 if time.monotonic() - started > 10 else network.take()
                    network.reset()
                    refused.reset()
                    self._set("waiting", reason)
                except Refused as exc:
                    self.refusals += 1
                    self._refused(exc)
                    # 409: the centre still holds our last session's claim (a link that just
                    # dropped): it goes stale within seconds, so dial again soon.
                    delay = network.take() if exc.status == 409 else refused.take()
                except (aiohttp.ClientConnectorCertificateError, aiohttp.ServerFingerprintMismatch) as exc:
                    # Not the centre we were told to trust: a wrong CA or pin does not fix itself.
                    self.refusals += 1
                    self._refused(Refused(0, f"the other relay's certificate is not trusted: {exc}"[:200]))
                    delay = refused.take()
                except (aiohttp.ClientError, OSError, TimeoutError, RelayError) as exc:
                    delay = network.take()
                    self._unreachable(f"{type(exc).__name__}: {exc}"[:200])
                except Exception as exc:  # anything else: said (once per kind), and dialled again
                    delay = refused.take()
                    self._set("error", f"{type(exc).__name__}: {exc}"[:200])
                    self._told.refused(Refused(0, f"unexpected {type(exc).__name__}"), stream=self.sc.name,
                                       url=self.url, error=str(exc)[:200])
                await asyncio.sleep(delay)

    async def _live_entry(self) -> Entry:
        while True:
            entry = self.registry.get(self.sc.name)
            if entry is not None and entry.state is State.LIVE:
                return entry
            self._set("waiting", self.last_error)
            await asyncio.sleep(0.2)

    def _set(self, state: str, error: str = "") -> None:
        if state != self.state:
            self.state, self.since = state, time.time()
        self.last_error = error

    def _refused(self, exc: Refused) -> None:
        self._set("refused", str(exc))
        self._told.refused(exc, stream=self.sc.name, url=self.url)

    def _unreachable(self, error: str) -> None:
        self._set("unreachable", error)
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("forward cannot reach the other relay", extra={
                "stream": self.sc.name, "url": self.url, "error": error})

    # ------------------------------------------------------------------ one session

    async def _session(self, http: aiohttp.ClientSession, entry: Entry) -> str:
        """Dial, publish until the session ends; returns why it ended."""
        name, auto, ladder = self._rung(entry)
        pc = new_peer(self.ice())
        session = PeerSession("forward", entry.name, pc, self.url, connect_timeout=CONNECT_S)
        ended = asyncio.Event()
        why: list[str] = []

        def on_close(s: PeerSession) -> None:
            ended.set()

        session.on_close.append(on_close)
        location = None
        viewer: Viewer | None = None
        try:
            viewer = self._viewer(session, entry, name, auto)
            offer = await make_offer(pc, IcePolicy.of(self.config.webrtc))
            answer, location = await self._post(http, offer)
            await accept_answer(pc, answer)
            self._up(entry, session, viewer, ladder if auto else [])
            while not ended.is_set():
                if entry.state is not State.LIVE or self.registry.get(entry.name) is not entry:
                    why.append("the stream here is no longer live")
                    break
                with contextlib.suppress(TimeoutError):
                    await within(0.2, ended.wait())
            return why[0] if why else "session ended"
        finally:
            self.viewer = self.adapter = None
            if location is not None:
                await self._delete(http, location)
            await session.close(why[0] if why else "forward ended")
            if viewer is not None:
                viewer.track.stop()

    def _rung(self, entry: Entry) -> tuple[str, bool, list[Rung]]:
        wanted = self.sc.forward_rendition
        if entry.mode == "passthrough" or wanted == PASSTHROUGH:
            return PASSTHROUGH, False, []
        ladder = [Rung(r.name, r.bitrate_kbps, r.max_fps)
                  for r in self.config.renditions if r.codec == "h264"]
        if wanted == AUTO and len(ladder) > 1 and self.config.abr.enabled:
            return AbrController.start_rung(ladder, self.config.abr.start_kbps), True, ladder
        if wanted == AUTO:
            return ladder[0].name if ladder else self.config.renditions[0].name, False, []
        return wanted, False, []

    def _viewer(self, session: PeerSession, entry: Entry, name: str, auto: bool) -> Viewer:
        """The uplink as a viewer: one sending track on rung ``name``, its tap and channels."""
        out = entry.rendition_stream(name)
        if out is None:
            raise RelayError(409, f"stream {entry.name!r} has no rendition {name!r} to forward")
        pc = session.pc
        transceiver = pc.addTransceiver("video", direction="sendonly")
        prefer_codec(transceiver, "h264")
        info = ViewerInfo(session=session.id, rendition=name, remote=self.url, who="forward", auto=auto,
                          rendition_reason="auto: start" if auto else "configured", relay=True)

        viewer = Viewer.sending(session, entry, info, transceiver,
                                lambda: out.subscribe(label=f"forward {session.public}", relay=info.relay))
        serve(viewer, pc.createDataChannel("relay"), self.config.latency, lambda: None)
        viewer.echo = Echoes(pc.createDataChannel("echo", ordered=False, maxRetransmits=0))
        return viewer

    def _up(self, entry: Entry, session: PeerSession, viewer: Viewer, ladder: list[Rung]) -> None:
        self.sessions += 1
        self.viewer = viewer
        self._set("up")
        if self._down_since is not None:
            log.info("forward resumed", extra={"stream": entry.name, "url": self.url,
                                               "down_s": round(time.monotonic() - self._down_since, 1)})
            self._down_since = None
        session.spawn(send_times_and_telemetry(viewer, FRAME_TIMES_S, me=self.config.name))
        # The centre's receiver reports come every 0.5-1.5 s (aiortc): 2.5 s without one is
        # a centre gone (a crash, a restart) — redial at once rather than after 6 s.
        session.spawn(viewer.watch_silence(CENTRE_SILENT_S))
        if ladder:
            ctl = AbrController(ladder, viewer.info.rendition, hold_s=self.config.abr.hold_s,
                                max_hold_s=self.config.abr.max_hold_s)
            self.adapter = Adapter(viewer, ctl, self.config.abr.queue_watch)
            session.spawn(self.adapter.run())
        else:
            session.spawn(poll_rtt(viewer))
        log.info("forwarding", extra={"stream": entry.name, "url": self.url,
                                      "rendition": viewer.info.rendition, "session": session.public})

    # ------------------------------------------------------------------ HTTP

    async def _post(self, http: aiohttp.ClientSession, offer: str) -> tuple[str, str]:
        return await post_offer(http, self.url, offer, f"Bearer {self.sc.forward_token}", self.sc)

    async def _delete(self, http: aiohttp.ClientSession, location: str) -> None:
        if not same_origin(location, self.url):  # our token goes only where it was given for
            self._told.refused(Refused(0, "the session's Location is on another host: no DELETE sent"),
                               stream=self.sc.name, url=self.url)
            return
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with http.delete(location, headers={"Authorization": f"Bearer {self.sc.forward_token}"},
                                   ssl=ssl_for(self.sc), timeout=aiohttp.ClientTimeout(total=2)):
                pass

    # ------------------------------------------------------------------ shown

    def status(self) -> dict[str, Any]:
        v = self.viewer
        parts = urlsplit(self.url)
        out: dict[str, Any] = {
            "to": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "state": self.state, "since": round(self.since, 3), "attempts": self.attempts,
            "sessions": self.sessions, "refusals": self.refusals, "last_error": self.last_error or None,
        }
        if v is not None:
            out.update({"rendition": v.info.rendition, "auto": v.info.auto, "rtt_ms": v.info.rtt_ms,
                        "estimate_kbps": v.info.estimate_kbps, "reason": v.info.rendition_reason,
                        "switches": v.info.switches[-5:], "queue": v.reader_stats()})
        return out
