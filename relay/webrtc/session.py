"""A peer session's lifetime: one id, one peer connection, closed once, by whoever comes first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection

from ..auth import public_id
from ..errors import RelayError
from ..limits import Limiter

__all__ = ["PeerSession", "SessionTable", "new_session_id"]

log = logging.getLogger("relay.webrtc")


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


class PeerSession:
    """Closes its peer when ICE/DTLS fails, when it never connects, or on ``close()``."""

    def __init__(
        self,
        kind: str,
        stream: str,
        pc: RTCPeerConnection,
        remote: str,
        connect_timeout: float = 20.0,
        session_id: str | None = None,
    ) -> None:
        self.id = session_id or new_session_id()  # secret: it is the session URL
        self.public = public_id(self.id)  # what logs and stats show
        self.kind = kind
        self.stream = stream
        self.pc = pc
        self.remote = remote
        self.started = time.time()
        self.closed = False
        self.principal: Any = None  # who opened it (auth.Principal), for revocation
        self.on_close: list[Callable[[PeerSession], Awaitable[None] | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.debug("peer state", extra={"session": self.public, "kind": kind, "state": state})
            if state in ("failed", "closed"):
                await self.close(f"connection {state}")

        self.spawn(self._watchdog(connect_timeout))

    def spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watchdog(self, limit_s: float) -> None:
        await asyncio.sleep(limit_s)
        if self.pc.connectionState != "connected" and not self.closed:
            await self.close(f"not connected after {limit_s:.0f} s")

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.info(
            "session closed",
            extra={"session": self.public, "kind": self.kind, "stream": self.stream, "reason": reason},
        )
        current = asyncio.current_task()
        for task in tuple(self._tasks):
            if task is not current:
                task.cancel()
        for cb in self.on_close:
            result = cb(self)
            if result is not None:
                with contextlib.suppress(Exception):
                    await result
        await self.pc.close()


class SessionTable:
    """Every peer session of one relay, WHIP and WHEP alike: the one place that finds a
    session by id, counts a client's sessions for its limit, and closes them. A session
    leaves the table when it closes, whoever closes it."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self._all: dict[str, PeerSession] = {}

    def add(self, session: PeerSession) -> None:
        self._all[session.id] = session
        session.on_close.append(self._closed)

    async def _closed(self, session: PeerSession) -> None:
        self._all.pop(session.id, None)

    def of_kind(self, kind: str) -> dict[str, PeerSession]:
        return {k: s for k, s in self._all.items() if s.kind == kind}

    def get(self, kind: str, session_id: str) -> PeerSession | None:
        s = self._all.get(session_id)
        return s if s is not None and s.kind == kind else None

    def count(self, kind: str | None = None, remote: str | None = None) -> int:
        return sum(1 for s in self._all.values()
                   if (kind is None or s.kind == kind) and (remote is None or s.remote == remote))

    def admit_client(self, remote: str) -> None:
        """Refuse (429) a client that already has its maximum of sessions, WHIP and WHEP."""
        limit = self.limiter.limits.sessions_per_client
        mine = self.count(remote=remote)
        if mine >= limit:
            raise self.limiter.refuse("sessions_per_client", 429,
                                      f"{remote} already has {mine} sessions "
                                      f"(limits.sessions_per_client = {limit})")

    async def stop(self, kind: str, stream: str, session_id: str, reason: str) -> None:
        """End a session its owner asked to end (DELETE on its URL); 404 if not there."""
        s = self.get(kind, session_id)
        if s is None or s.stream != stream:
            raise RelayError(404, f"no {kind.upper()} session {session_id[:40]!r} on stream {stream!r}")
        await s.close(reason)

    async def close_all(self, kind: str, reason: str = "relay shutting down") -> None:
        for s in tuple(self.of_kind(kind).values()):
            await s.close(reason)
