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
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..aio import stop_if_cancelled, within
from ..config import STREAM_NAME, Config, redact_url
from ..logs import Throttled
from ..wire import MAX_RECORD_BYTES, Refused, json_doc, origin, parse_node

__all__ = ["PREFIX", "Directory", "DirectoryDown", "json_dict"]

log = logging.getLogger("relay.cluster")
PREFIX = "relay:"
EVENTS = PREFIX + "events"
SHARES = PREFIX + "shares"
MARKERS = PREFIX + "markers"  # id -> the last change of each marker (a removal stays, as a tombstone)

# Take the claim if it is free or ours (and refresh it), or if the node it names has no
# record (dead, or never was: a claim anyone could write must not end a live publisher);
# else name its owner.
CLAIM = """
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] or redis.call('EXISTS', ARGV[3] .. v) == 0 then
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
        # The origins other nodes may have (cluster.peers, and ours); empty: any.
        peers = tuple(o for o in (origin(u) for u in cc.peers) if o)
        own = origin(cc.url)
        self.allowed = (*peers, own) if peers and own else peers
        self.refused = 0  # records and values not believed
        self._refusals = Throttled(log, 60.0)

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

    async def confirm(self, stream: str) -> None:
        """Before a publisher here is refused because another node owns ``stream``: ask Redis
        now whether that claim and its node still stand (the cached view is up to
        ``refresh_s`` old; a drone redialling after its node died would be refused until the
        next refresh, and then wait out its own backoff). Only ever clears what the cache
        believed; a Redis that does not answer in 0.5 s leaves the cache's word standing."""
        owner = self.claims.get(stream)
        if owner is None or owner == self.me or owner not in self.nodes or not self.up:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.getrange(f"{PREFIX}claim:{stream}", 0, 63)
            pipe.exists(f"{PREFIX}node:{owner}")
            claim, alive = await within(0.5, pipe.execute())
        except FAULTS:
            return
        if claim != owner:
            self.claims.pop(stream, None)
        if alive != 1:
            self.nodes.pop(owner, None)
        if claim != owner or alive != 1:
            log.info("a claim the cache held has gone", extra={"stream": stream, "owner": owner})
            self.kick()

    def kick(self) -> None:
        """Refresh now (a publisher just claimed a stream here)."""
        self._kick.set()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        while True:
            try:
                await within(self.refresh_s * 2, self.refresh())
            except FAULTS as exc:
                stop_if_cancelled()
                self._failed(exc)
            with contextlib.suppress(TimeoutError):
                await within(self.refresh_s, self._kick.wait())
            stop_if_cancelled()
            self._kick.clear()

    async def refresh(self) -> None:
        wanted = self.wanted()
        record = {**self.record(), "name": self.me, "url": self.url, "t": time.time()}
        ttl_ms = int(self.ttl_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{PREFIX}node:{self.me}", json.dumps(record), px=ttl_ms)
        order = sorted(wanted)
        for stream in order:
            await self._claim(keys=[f"{PREFIX}claim:{stream}"], args=[self.me, ttl_ms, f"{PREFIX}node:"],
                              client=pipe)
        gone = sorted(self.holding - wanted)
        for stream in gone:
            await self._release(keys=[f"{PREFIX}claim:{stream}"], args=[self.me], client=pipe)
        results = await pipe.execute()
        nodes = await self._read("node:", MAX_RECORD_BYTES)
        claims = await self._read("claim:", 64)
        self.nodes = self._believed(nodes)
        self.claims = {k: v for k, v in claims.items() if v and STREAM_NAME.match(k) and STREAM_NAME.match(v)}
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

    def _believed(self, raw: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Each node's record through the one strict reader (relay.wire): a record that is
        not believed is left out, with one throttled line per reason."""
        out: dict[str, dict[str, Any]] = {}
        for name, value in raw.items():
            try:
                out[name] = parse_node(name, value, self.allowed).doc()
            except Refused as exc:
                self.refused += 1
                self._refusals.warn(str(exc), "cluster directory: a node record not believed",
                                    node=name[:64], reason=str(exc))
        return out

    async def _read(self, kind: str, limit: int) -> dict[str, str]:
        """Every key of ``kind`` whose value is at most ``limit`` bytes (asked before it is
        fetched: a record of 32 MB is never read into this process)."""
        keys = [k async for k in self.redis.scan_iter(match=f"{PREFIX}{kind}*", count=500)]
        if not keys:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.strlen(k)
        sizes = await pipe.execute()
        big = [str(k) for k, n in zip(keys, sizes, strict=True) if not isinstance(n, int) or n > limit]
        for k in big:
            self.refused += 1
            self._refusals.warn(f"big {kind}", "cluster directory: a value over its size limit ignored",
                                key=k[:100], limit=limit)
        keys = [k for k, n in zip(keys, sizes, strict=True) if isinstance(n, int) and n <= limit]
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
            await within(2.0, pipe.execute())
        self.holding.clear()
        with contextlib.suppress(*FAULTS):
            await self.redis.aclose()


def json_dict(raw: Any) -> dict[str, Any] | None:
    """A JSON object read from Redis, or None (anything else is not believed)."""
    try:
        doc = json_doc(raw, "redis value") if isinstance(raw, str) else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
