"""Edge pulls: a stream that lives on another node, served here to this node's viewers.

One WHEP pull per stream per node, whatever the number of viewers here (each viewer here
is served from this node's own copy: its ladder, its per-viewer ABR, its passthrough of
the pulled H.264). The pull goes to the stream's owner as the directory names it, with a
short-lived viewer token signed with the cluster's shared ``auth.jwt_secret``; it ends and
dials again when the stream moves to another node (or its node vanishes), and is let go
``linger_s`` after its last viewer here left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ..aio import within
from ..auth import mint_token
from ..cascade import WhepPull
from ..cascade.forward import Backoff
from ..config import Config, StreamConfig
from ..registry import Entry, Registry
from ..wire import origin
from .directory import Directory

__all__ = ["EDGE_KIND", "EdgePull", "Edges"]

log = logging.getLogger("relay.cluster")
EDGE_KIND = "cluster-edge"
WAIT_S = 0.25  # how often a pull without an owner looks again


class EdgePull(WhepPull):
    kind = EDGE_KIND

    def __init__(self, entry: Entry, config: Config, directory: Directory,
                 ice: Callable[[], list[dict[str, Any]]]) -> None:
        cc = config.cluster
        sc = StreamConfig(name=entry.name, source="whep+http://owner.invalid/", peer_ca=cc.peer_ca)
        super().__init__(entry, sc, config, ice)
        self.directory = directory
        self.owner: str | None = None
        self.state = "waiting"
        self.source = False  # pulling the owner's own H.264 (no encode there for us)

    async def run(self) -> None:
        backoff = Backoff(0.25, 3.0)
        async with aiohttp.ClientSession() as http:
            while True:
                owner = self.directory.owner(self.entry.name)
                if owner is None or owner.get("name") == self.directory.me:
                    self.state, self.owner = "waiting", None
                    await asyncio.sleep(WAIT_S)
                    continue
                if not self._aim(owner):
                    await asyncio.sleep(backoff.take())
                    continue
                if await self.attempt(http) == "waiting":  # ended (the stream moved): again soon
                    backoff.reset()
                    await asyncio.sleep(WAIT_S)
                    continue
                await asyncio.sleep(backoff.take())

    def _aim(self, owner: dict[str, Any]) -> bool:
        """The owner's WHEP URL for the stream (its own H.264 where the owner forwards it:
        no encode there for us, no added delay), and a fresh token for it; False when the
        owner's record has no usable URL (it comes from Redis: only an origin is taken)."""
        name = self.entry.name
        self.owner = str(owner.get("name"))
        base = origin(owner.get("url"))
        if base is None:
            self.state, self.last_error = "refused", f"node {self.owner} has no usable URL"
            return False
        self.source = self._doc(owner).get("passthrough") is True
        query = "?rendition=source" if self.source else ""
        self.url = f"{base}/whep/{name}{query}"
        token = None
        if self.config.auth.enabled:
            token, _, _ = mint_token(self.config, "viewer", [name], 300.0, label=f"node {self.directory.me}",
                                     node=self.directory.me)
        self.sc = dataclasses.replace(self.sc, source_token=token)
        return True

    def _doc(self, owner: dict[str, Any]) -> dict[str, Any]:
        """The owner's record of this stream ({} if it has none)."""
        return next((s for s in owner.get("streams", []) if s.get("name") == self.entry.name), {})

    def moved(self, flowing: bool) -> str | None:
        """A pull whose frames flow is kept while the directory has no word on its owner (a
        Redis restarted empty: the owner writes its record again within a heartbeat); it ends
        when the stream moved to another node, when the owner left and its frames stopped, and
        to take the owner's own H.264 once the owner forwards it (a pull that started before
        the codec was known took a re-encoded rung: an encode at the owner and its delay)."""
        owner = self.directory.owner(self.entry.name)
        if owner is not None and owner.get("name") != self.owner:
            return f"the stream moved to node {owner.get('name')}"
        if not flowing and self.owner not in self.directory.nodes and self.directory.up:
            return f"node {self.owner} left the cluster"
        if owner is not None and not self.source and self._doc(owner).get("passthrough") is True:
            return f"node {self.owner} forwards the drone's own picture now"
        return None

    def status(self) -> dict[str, Any]:
        return {**super().status(), "node": self.owner, "edge": True}


class Edges:
    """This node's edge pulls, by stream."""

    def __init__(self, registry: Registry, config: Config, directory: Directory,
                 pulls: dict[str, WhepPull], viewers: Callable[[str], int],
                 ice: Callable[[], list[dict[str, Any]]]) -> None:
        self.registry, self.config, self.directory = registry, config, directory
        self.pulls = pulls  # shared with the configured pulls: shown in /api/streams, stopped at exit
        self.viewers = viewers
        self.ice = ice
        self.edges: dict[str, EdgePull] = {}
        self._idle: dict[str, float] = {}
        self.started = 0

    async def ensure(self, stream: str) -> Entry:
        """The local entry of a stream owned elsewhere, with its pull running."""
        entry = self.registry.get_or_create(stream)
        if stream not in self.edges:
            pull = EdgePull(entry, self.config, self.directory, self.ice)
            self.edges[stream] = pull
            self.pulls[stream] = pull
            self.started += 1
            await pull.start()
            log.info("edge pull started", extra={"stream": stream, "node": self.directory.me})
        self._idle.pop(stream, None)
        return entry

    def drop(self, entry: Entry) -> None:
        """A publisher came here for a stream this node pulled: the pull goes at once."""
        pull = self.edges.pop(entry.name, None)
        if pull is None:
            return
        self.pulls.pop(entry.name, None)
        if entry.slot.kind == EDGE_KIND and entry.slot.holder is not None:
            entry.release(entry.slot.holder)
        asyncio.get_running_loop().create_task(pull.stop())

    async def janitor(self) -> None:
        """Pulls nobody here watches go after ``linger_s``."""
        linger = self.config.cluster.linger_s
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for stream in tuple(self.edges):
                if self.viewers(stream):
                    self._idle.pop(stream, None)
                    continue
                since = self._idle.setdefault(stream, now)
                if now - since >= linger:
                    pull = self.edges.pop(stream)
                    self.pulls.pop(stream, None)
                    self._idle.pop(stream, None)
                    await pull.stop()
                    log.info("edge pull let go: no viewer", extra={"stream": stream, "linger_s": linger})

    async def stop(self) -> None:
        for stream, pull in tuple(self.edges.items()):
            self.pulls.pop(stream, None)
            with contextlib.suppress(Exception):
                await within(5.0, pull.stop())
        self.edges.clear()
