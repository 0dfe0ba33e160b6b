"""A relay as one node of a cluster: the directory, its claims, edge pulls, the shared book.

What it adds to a node (``[cluster] redis = ...``; without it nothing here runs):

- **claims**: every stream published here is claimed in Redis; a publisher of a stream
  another live node owns gets the 409 it would get on one node (:meth:`guard`), a claim
  lost to another node ends the publisher here;
- **any node serves any stream**: a viewer of a stream owned elsewhere is served from an
  edge pull (or sent to the owner with 307 in ``viewers = "redirect"`` mode);
- **one picture**: the node's record carries its streams, so every node lists all;
- **share links and markers** cluster-wide: :class:`~relay.cluster.book.SharedBook`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from ..cascade import WhepPull
from ..config import PASSTHROUGH, Config
from ..errors import RelayError
from ..registry import Entry, Registry, State
from ..share import ShareBook
from ..wire import clean_text, origin
from .book import SharedBook
from .directory import Directory, DirectoryDown
from .edge import EDGE_KIND, Edges

__all__ = ["Cluster"]

log = logging.getLogger("relay.cluster")


class Cluster:
    def __init__(self, config: Config, registry: Registry, shares: ShareBook,
                 pulls: dict[str, WhepPull], viewers: Callable[[str], int],
                 sessions: Callable[[], int], share_sessions: Callable[[], dict[str, int]],
                 ice: Callable[[], list[dict[str, Any]]]) -> None:
        self.config = config
        self.registry = registry
        self.shares = shares
        self.viewers = viewers
        self.sessions = sessions
        self.share_sessions = share_sessions
        self.directory = Directory(config)
        self.me = self.directory.me
        self.edges = Edges(registry, config, self.directory, pulls, viewers, ice)
        self.lost_publishers = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._proc = psutil.Process(os.getpid())
        self._net = (time.monotonic(), _sent_bytes())
        d = self.directory
        d.record, d.wanted, d.on_lost, d.on_refreshed = self.record, self.wanted, self._lost, self._adopt
        registry.guard, registry.confirm = self.guard, self.directory.confirm
        self.book = SharedBook(config, d, shares, self._spawn)

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        self._proc.cpu_percent()
        self._spawn(self.directory.run())
        self._spawn(self.edges.janitor())
        self._spawn(self.book.listen())
        log.info("cluster node", extra={"node": self.me, "url": self.directory.url,
                                        "redis": self.directory.where})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.edges.stop()
        await self.directory.release_all()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.append(task)
        self._tasks = [t for t in self._tasks if not t.done()]

    # ------------------------------------------------------------------ claims

    def guard(self, entry: Entry, kind: str) -> None:
        """Before a publisher claims ``entry`` here: 409 while another live node owns it."""
        if kind == EDGE_KIND:
            return
        owner = self.directory.claims.get(entry.name)
        if owner is not None and owner != self.me and owner in self.directory.nodes:
            raise RelayError(409, f"stream {entry.name!r} already has a live publisher (on node {owner})")
        self.edges.drop(entry)  # it was pulled from a node that lost it: it is published here now
        self.directory.kick()

    def wanted(self) -> set[str]:
        """The streams this node should hold claims for: a publisher here whose media flows."""
        return {e.name for e in self.registry.entries.values()
                if e.slot.holder is not None and e.slot.kind != EDGE_KIND and not e.slot.stale(e.liveness)}

    def _lost(self, stream: str, owner: str) -> None:
        """Another node holds the claim of a stream published here: ours gives way."""
        entry = self.registry.get(stream)
        if entry is None or entry.slot.holder is None or entry.slot.kind == EDGE_KIND:
            return
        self.lost_publishers += 1
        log.warning("stream is owned by another node: the publisher here is ended",
                    extra={"stream": stream, "owner": owner, "node": self.me})
        entry.end_publisher()

    # ------------------------------------------------------------------ viewers

    async def serve(self, stream: str, query: str) -> str | None:
        """Where a WHEP offer for ``stream`` is served: None here (locally published, or
        pulled from its owner into this node), or the owner's URL to redirect to."""
        entry = self.registry.get(stream)
        if entry is not None and entry.slot.holder is not None and entry.slot.kind != EDGE_KIND:
            return None
        owner = self.directory.owner(stream)
        if owner is None or owner.get("name") == self.me:
            if entry is None and not self.directory.up:
                raise RelayError(503, f"no stream {stream!r} here, and the cluster's directory (Redis) "
                                      "is unreachable: streams of other nodes cannot be served now")
            return None
        if self.config.cluster.viewers == "redirect":
            return f"{owner.get('url')}/whep/{stream}" + (f"?{query}" if query else "")
        await self.edges.ensure(stream)
        return None

    def _adopt(self) -> None:
        """Viewers here of a stream nobody published here (they joined while it waited),
        which another node now owns: pulled here for them, without their reloading."""
        for entry in tuple(self.registry.entries.values()):
            name = entry.name
            if name in self.edges.edges or not self.viewers(name):
                continue
            if entry.slot.holder is not None and entry.slot.kind != EDGE_KIND:
                continue
            owner = self.directory.owner(name)
            if owner is not None and owner.get("name") != self.me:
                self._spawn(self._ensure(name))

    async def _ensure(self, name: str) -> None:
        try:
            await self.edges.ensure(name)
        except RelayError as exc:
            log.warning("edge pull not started", extra={"stream": name, "reason": exc.reason})

    # ------------------------------------------------------------------ the picture

    def record(self) -> dict[str, Any]:
        """This node's record in the directory: its load and its own streams."""
        now = time.monotonic()
        t0, b0 = self._net
        sent = _sent_bytes()
        self._net = (now, sent)
        mbps = (sent - b0) * 8 / 1e6 / max(1e-3, now - t0)
        own = [e for e in self.registry.entries.values()
               if e.slot.holder is not None and e.slot.kind != EDGE_KIND]
        return {
            "load": {"cores": round(self._proc.cpu_percent() / 100.0, 2), "viewers": self.sessions(),
                     "streams": len(own), "out_mbps": round(mbps, 2)},
            "streams": [self._stream_doc(e) for e in own],
            "share_sessions": self.share_sessions(),
        }

    def _stream_doc(self, e: Entry) -> dict[str, Any]:
        sc = self.config.stream(e.name)
        info = e.source_info
        return {"name": e.name, "state": e.state.value, "state_since": e.state_since,
                # (as the other nodes' strict reader takes it: a record it refused would hide
                # this node's every stream)
                "title": clean_text((sc.title if sc else "") or info.upstream_title, 200),
                "problem": clean_text(info.problem, 300) or None,
                "fps": round(e.fps, 1), "width": e.width, "height": e.height, "source_codec": info.codec,
                "viewers": self.viewers(e.name), "publisher": e.slot.kind,
                # A source rung is served (an edge pulls it: no encode here for it). Before the
                # codec is known too: an edge that pulled a re-encoded rung then would switch
                # later, a gap on its screens; until the drone's packets flow the rung is ours.
                "passthrough": (e.passthrough is not None and e.mode != "transcode"
                                and info.codec.lower() != "hevc")}

    def listing(self, local: list[dict[str, Any]], visible: Callable[[str], bool]) -> list[dict[str, Any]]:
        """/api/streams on any node: this node's streams and every other node's, each with
        the node it lives on."""
        out: dict[str, dict[str, Any]] = {}
        for doc in local:
            edge = self.edges.edges.get(doc["name"])
            owner = self.directory.claims.get(doc["name"]) or (edge.owner if edge else None)
            doc["node"] = owner if edge is not None and owner else self.me
            doc["edge"] = edge is not None
            out[doc["name"]] = doc
        for node in self.directory.others():
            for s in node.get("streams", []):
                name = s.get("name")
                if not isinstance(name, str) or not visible(name):
                    continue
                mine = out.get(name)
                if mine is not None and (mine.get("edge") or mine.get("state") == State.LIVE.value):
                    continue  # served here (published, or pulled from its node), or listed already
                out[name] = {**s, "node": node.get("name"), "node_url": node.get("url"), "remote": True,
                             "edge": False, "telemetry": None, "mode": self.config.mode(name),
                             "renditions": self._ladder(name, bool(s.get("passthrough")))}
        return list(out.values())

    def _ladder(self, name: str, passthrough: bool) -> list[dict[str, Any]]:
        """What a viewer here would get of a stream of another node: this node's ladder."""
        mode = self.config.mode(name)
        out = [{"name": r.name, "codec": r.codec, "height": r.height, "bitrate_kbps": r.bitrate_kbps,
                "viewers": 0, "encoding": False, "size": None, "passthrough": False}
               for r in self.config.renditions if mode != "passthrough"]
        if passthrough and mode != "transcode":
            out.append({"name": PASSTHROUGH, "codec": "h264", "height": None, "bitrate_kbps": None,
                        "viewers": 0, "encoding": False, "size": None, "passthrough": True})
        return out

    def nodes(self) -> list[dict[str, Any]]:
        return [{"name": d.get("name"), "url": d.get("url"), "load": d.get("load"),
                 "me": d.get("name") == self.me,
                 "streams": [s.get("name") for s in d.get("streams", [])]}
                for d in self.directory.nodes.values()]

    def origins(self) -> list[str]:
        """The nodes' origins (scheme://host:port), for the pages' Content-Security-Policy: a
        redirect to the owner, a session's DELETE at its node, a snapshot from another node.
        Each is rebuilt from a parsed URL (records come from Redis: nothing else gets in)."""
        out = {o for o in (origin(d.get("url")) for d in self.directory.nodes.values()) if o}
        own = origin(self.directory.url)
        if own:
            out.add(own)
        return sorted(out)

    def remote_share_sessions(self, share_id: str) -> int:
        """Sessions of a share link on the other nodes (its viewer cap is cluster-wide)."""
        total = 0
        for node in self.directory.others():
            n = node.get("share_sessions", {}).get(share_id, 0)
            total += n if isinstance(n, int) else 0
        return total

    def require(self, what: str) -> None:
        try:
            self.directory.require(what)
        except DirectoryDown as exc:
            raise RelayError(503, str(exc)) from None

    def counters(self) -> dict[str, float]:
        d = self.directory
        return {"cluster_redis_up": 1.0 if d.up else 0.0, "cluster_nodes": float(len(d.nodes)),
                "cluster_claims_held": float(len(d.holding)),
                "cluster_edge_pulls": float(len(self.edges.edges)),
                "cluster_refresh_failures": float(d.failures),
                "cluster_publishers_lost": float(self.lost_publishers)}


def _sent_bytes() -> int:
    try:
        return int(psutil.net_io_counters().bytes_sent)
    except (OSError, AttributeError):
        return 0

