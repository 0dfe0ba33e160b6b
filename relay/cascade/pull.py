"""A stream pulled from a WHEP server: ``source = "whep+https://vehicle:8443/whep/drone1"``.

For a control centre that can reach the vehicle (a VPN), and for any WHEP server we did
not write. This relay is the WHEP client: it offers to receive, opens the view page's
"relay" and "echo" channels (a relay at the other end sends frame times, telemetry, title
and path on the first and runs its per-viewer ABR for us from our reports and echoes; any
other server ignores them), decodes once and publishes into the stream like any source.
Redials with backoff; a refusal is logged once per reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ..aio import within
from ..config import Config, StreamConfig
from ..errors import RelayError
from ..registry import Entry
from ..sources import InboundVideo, Upstream, echo_back
from ..webrtc import (
    IcePolicy,
    PeerSession,
    accept_answer,
    make_offer,
    new_peer,
    new_session_id,
    transceiver_codecs,
)
from .forward import CONNECT_S
from .peerhttp import Backoff, Refused, SaidOnce, post_offer, same_origin, ssl_for

__all__ = ["WhepPull"]

log = logging.getLogger("relay.pull")
SILENT_S = 10.0  # no frame this long: the session is dead, dial again
FLOWING_S = 1.0  # a frame this recent: the session works, whatever a directory says


class WhepPull:
    """One configured ``whep+http(s)://`` source."""

    kind = "whep-pull"

    def __init__(self, entry: Entry, sc: StreamConfig, config: Config,
                 ice: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        assert sc.source is not None
        self.entry = entry
        self.sc = sc
        self.config = config
        self.url = sc.source.removeprefix("whep+")
        self.ice: Callable[[], list[dict[str, Any]]] = ice or (lambda: [])
        self.state = "connecting"
        self.sessions = self.refusals = 0
        self.last_error = ""
        self.upstream: Upstream | None = None
        self._told = SaidOnce(log, "pull refused")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def run(self) -> None:
        network, refused = Backoff(0.5, 5.0), Backoff(2.0, 60.0)
        async with aiohttp.ClientSession() as http:
            while True:
                started = time.monotonic()
                outcome = await self.attempt(http)
                if outcome == "waiting":  # it worked, then ended: again at once if it lasted
                    delay = 0.2 if time.monotonic() - started > 10 else network.take()
                    refused.reset()
                else:
                    delay = refused.take() if outcome == "refused" else network.take()
                await asyncio.sleep(delay)

    async def attempt(self, http: aiohttp.ClientSession) -> str:
        """One session, to its end: the state after it — "waiting" (it ended; why in
        ``last_error``), "refused" (said once per reason) or "unreachable"."""
        try:
            self.state = "connecting"
            self.state, self.last_error = "waiting", await self._session(http)
        except (Refused, RelayError) as exc:
            self.refusals += 1
            self.state, self.last_error = "refused", f"{exc.status}: {exc.reason}"
            self._told.refused(Refused(exc.status, exc.reason), stream=self.entry.name, url=self.url)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.state, self.last_error = "unreachable", f"{type(exc).__name__}: {exc}"[:200]
        except Exception as exc:  # anything else: said once per kind, and dialled again (refused)
            self.refusals += 1
            self.state, self.last_error = "refused", f"{type(exc).__name__}: {exc}"[:200]
            self._told.refused(Refused(0, f"unexpected {type(exc).__name__}"), stream=self.entry.name,
                               url=self.url, error=str(exc)[:200])
        return self.state

    async def _session(self, http: aiohttp.ClientSession) -> str:
        entry = self.entry
        session_id = new_session_id()
        entry.claim(session_id, self.kind, self.url)  # 409 while another publisher's media flows
        pc = new_peer(self.ice())
        session = PeerSession("pull", entry.name, pc, self.url, connect_timeout=CONNECT_S)
        ended = asyncio.Event()
        session.on_close.append(lambda _s: ended.set())
        location = None
        try:
            pc.addTransceiver("video", direction="recvonly")
            self.upstream = Upstream(entry, pc.createDataChannel("relay"), self.config.name)
            session.spawn(self.upstream.run())
            echo_back(pc.createDataChannel("echo", ordered=False, maxRetransmits=0))
            videos: list[InboundVideo] = []
            self._on_track(pc, session, videos)
            offer = await make_offer(pc, IcePolicy.of(self.config.webrtc))
            location = await self._post(http, offer, pc)
            codec = next((c[0].mimeType.split("/")[1] for t in pc.getTransceivers()
                          if t.kind == "video" and (c := transceiver_codecs(t))), "")
            entry.source_info.set_codec(codec.lower())
            for video in videos:  # (H.264: its packets for passthrough viewers and the record)
                video.keep_packets(codec)
            self.sessions += 1
            self.state = "up"
            log.info("pulling", extra={"stream": entry.name, "url": self.url, "session": session.public})
            started = time.monotonic()
            while not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await within(1.0, ended.wait())
                last = max([started, *(v.last_frame for v in videos)])
                if time.monotonic() - last > SILENT_S:
                    return f"no picture for {SILENT_S:.0f} s"
                moved = self.moved(flowing=time.monotonic() - last < FLOWING_S)
                if moved:
                    return moved
            return "session ended"
        finally:
            self.upstream = None
            if location is not None and same_origin(location, self.url):  # (our token: only there)
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.delete(location, headers=self._auth(), ssl=ssl_for(self.sc),
                                           timeout=aiohttp.ClientTimeout(total=2)):
                        pass
            await session.close("pull ended")
            entry.release(session_id)

    def moved(self, flowing: bool) -> str | None:
        """Why this session should end now although it works (a cluster edge: the stream
        lives on another node now); None: it should not. ``flowing``: frames arrived in the
        last ``FLOWING_S``."""
        return None

    def _on_track(self, pc: Any, session: PeerSession, videos: list[InboundVideo]) -> None:
        @pc.on("track")  # type: ignore[untyped-decorator]
        def on_track(track: Any) -> None:
            if track.kind == "video":
                videos.append(InboundVideo(pc, track, session, self.entry, lambda: self.upstream))

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sc.source_token}"} if self.sc.source_token else {}

    async def _post(self, http: aiohttp.ClientSession, offer: str, pc: Any) -> str:
        auth = f"Bearer {self.sc.source_token}" if self.sc.source_token else None
        answer, location = await post_offer(http, self.url, offer, auth, self.sc, redirects=True)
        await accept_answer(pc, answer)
        return location

    def status(self) -> dict[str, Any]:
        up = self.upstream
        return {"from": self.url.split("?")[0], "state": self.state, "sessions": self.sessions,
                "refusals": self.refusals, "last_error": self.last_error or None,
                "matched_frames": up.matched if up else None, "clock_rtt_ms": up.clock_rtt_ms if up else None}
