"""The cluster's directory in Redis: who the nodes are, which node owns which stream.

Every node writes its own record (``relay:node:<name>``: its URL, its load, the streams
published on it) with a time to live of ``ttl_s`` and refreshes it every ``refresh_s``: a
node that stops is gone within ``ttl_s``. A stream published on a node is claimed by it
(``relay:claim:<stream>`` = the node's name, same time to live) in one atomic step (a Lua
script: take it if free, refresh it if ours, otherwise say whose it is), refreshed while
its publisher's media flows and deleted when the publisher leaves or goes stale.

A node never trusts a claim it has not refreshed: when its refreshes fail for
``ttl_s - refresh_s`` it gives its claims up (before Redis lets them expire, so two nodes
never both hold one) and keeps serving its own publishers and viewers; back in contact, a
stream claimed meanwhile by another node has its local publisher ended (one owner).

Pure bookkeeping over redis-py's asyncio client; what a refresh means for publishers and
viewers is the :class:`~relay.cluster.Cluster`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..config import Config, redact_url

__all__ = ["PREFIX", "Directory", "DirectoryDown", "json_dict", "node_origin"]

log = logging.getLogger("relay.cluster")
PREFIX = "relay:"
EVENTS = PREFIX + "events"
SHARES = PREFIX + "shares"
MARKERS = PREFIX + "markers"  # id -> the last change of each marker (a removal stays, as a tombstone)

# Take the claim if it is free or ours (and refresh it), else name its owner.
CLAIM = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return v
"""
# Delete the claim only if it is ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
FAULTS = (RedisError, OSError, TimeoutError)


class DirectoryDown(Exception):
    """Redis cannot be reached (or did not answer in time)."""


def client(config: Config, timeout: float | None) -> aioredis.Redis:
    cc = config.cluster
    assert cc.redis
    extra: dict[str, Any] = {}
    if cc.redis.startswith("rediss://") and cc.redis_ca:
        extra["ssl_ca_certs"] = cc.redis_ca
    return aioredis.from_url(cc.redis, socket_timeout=timeout, socket_connect_timeout=1.0,
                             retry_on_timeout=False, decode_responses=True, **extra)


class Directory:
    def __init__(self, config: Config) -> None:
        cc = config.cluster
        self.me = cc.node or config.name
        self.url = cc.url
        self.refresh_s, self.ttl_s = cc.refresh_s, cc.ttl_s
        self.where = redact_url(cc.redis or "")
        self.redis = client(config, timeout=max(0.5, cc.refresh_s))
        self._claim = self.redis.register_script(CLAIM)
        self._release = self.redis.register_script(RELEASE)
        self.nodes: dict[str, dict[str, Any]] = {}  # name -> its record, as last read (ours too)
        self.claims: dict[str, str] = {}  # stream -> node, as last read
        self.holding: set[str] = set()  # streams whose claim we hold (refreshed within ttl)
        self.up = False
        self.last_ok = 0.0  # monotonic time of the last refresh Redis answered
        self.refreshes = self.failures = 0
        # Set by the cluster: what to write, what we should hold, who to tell.
        self.record: Callable[[], dict[str, Any]] = lambda: {}
        self.wanted: Callable[[], set[str]] = set
        self.on_lost: Callable[[str, str], None] = lambda stream, owner: None
        self.on_rejoin: list[Callable[[], None]] = []
        self.on_refreshed: Callable[[], None] = lambda: None
        self._kick = asyncio.Event()
        self._said_down = False

    # ------------------------------------------------------------------ reading

    def owner(self, stream: str) -> dict[str, Any] | None:
        """The record of the live node that owns ``stream`` (None: nobody, or unknown)."""
        node = self.claims.get(stream)
        return self.nodes.get(node) if node is not None else None

    def others(self) -> list[dict[str, Any]]:
        return [doc for name, doc in sorted(self.nodes.items()) if name != self.me]

    def require(self, what: str) -> None:
        """503 for work that needs the directory while it is unreachable."""
        if not self.up:
            raise DirectoryDown(f"the cluster's directory (Redis) is unreachable: {what} cannot be done now")

    def kick(self) -> None:
        """Refresh now (a publisher just claimed a stream here)."""
        self._kick.set()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.refresh(), self.refresh_s * 2)
            except FAULTS as exc:
                self._failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.refresh_s)
            self._kick.clear()

    async def refresh(self) -> None:
        wanted = self.wanted()
        record = {**self.record(), "name": self.me, "url": self.url, "t": time.time()}
        ttl_ms = int(self.ttl_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{PREFIX}node:{self.me}", json.dumps(record), px=ttl_ms)
        order = sorted(wanted)
        for stream in order:
            await self._claim(keys=[f"{PREFIX}claim:{stream}"], args=[self.me, ttl_ms], client=pipe)
        gone = sorted(self.holding - wanted)
        for stream in gone:
            await self._release(keys=[f"{PREFIX}claim:{stream}"], args=[self.me], client=pipe)
        results = await pipe.execute()
        nodes = await self._read("node:")
        claims = await self._read("claim:")
        self.nodes = {n: d for n, d in ((k, json_dict(v)) for k, v in nodes.items()) if d is not None}
        self.claims = {k: v for k, v in claims.items() if v}
        rejoined = not self.up
        self.up, self.last_ok = True, time.monotonic()
        self.refreshes += 1
        self.holding -= set(gone)
        for stream, owner in zip(order, results[1:1 + len(order)], strict=True):
            if owner == self.me:
                self.holding.add(stream)
            else:
                self.holding.discard(stream)
                self.on_lost(stream, str(owner))
        self.on_refreshed()
        if rejoined:
            if self._said_down:
                log.warning("cluster directory reachable again: rejoined",
                            extra={"node": self.me, "nodes": sorted(self.nodes)})
            self._said_down = False
            for cb in tuple(self.on_rejoin):
                cb()

    async def _read(self, kind: str) -> dict[str, str]:
        keys = [k async for k in self.redis.scan_iter(match=f"{PREFIX}{kind}*", count=500)]
        if not keys:
            return {}
        values = await self.redis.mget(keys)
        return {str(k)[len(PREFIX) + len(kind):]: str(v) for k, v in zip(keys, values, strict=True)
                if v is not None}

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.up or not self._said_down:
            log.warning("cluster directory unreachable: serving this node's own streams and viewers",
                        extra={"node": self.me, "redis": self.where,
                               "error": f"{type(exc).__name__}: {exc}"[:200]})
            self._said_down = True
        self.up = False
        silent = time.monotonic() - self.last_ok
        if silent > self.ttl_s - self.refresh_s:
            # Our claims expire in Redis after ttl_s: give them up first (no two owners).
            if self.holding:
                log.warning("cut off from the cluster's directory: claims given up",
                            extra={"node": self.me, "streams": sorted(self.holding)})
                self.holding.clear()
            self.claims = {}
            self.nodes = {}

    async def release_all(self) -> None:
        """On shutdown: our claims and our record go at once (not after ttl_s)."""
        with contextlib.suppress(*FAULTS):
            pipe = self.redis.pipeline(transaction=False)
            for stream in sorted(self.holding):
                await self._release(keys=[f"{PREFIX}claim:{stream}"], args=[self.me], client=pipe)
            pipe.delete(f"{PREFIX}node:{self.me}")
            await asyncio.wait_for(pipe.execute(), 2.0)
        self.holding.clear()
        with contextlib.suppress(*FAULTS):
            await self.redis.aclose()


def node_origin(url: Any) -> str | None:
    """A node's ``scheme://host[:port]`` rebuilt from its URL (which comes from Redis), or
    None: nothing but a plain origin gets into a request or a page's policy."""
    if not isinstance(url, str) or len(url) > 300:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:]{2,39}")


def json_dict(raw: Any) -> dict[str, Any] | None:
    """A JSON object read from Redis, or None (anything else is not believed)."""
    try:
        doc = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
