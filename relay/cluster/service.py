"""A relay as one node of a cluster: the directory, its claims, edge pulls, the shared book.

What it adds to a node (``[cluster] redis = ...``; without it nothing here runs):

- **claims**: every stream published here is claimed in Redis; a publisher of a stream
  another live node owns gets the 409 it would get on one node (:meth:`guard`), a claim
  lost to another node ends the publisher here;
- **any node serves any stream**: a viewer of a stream owned elsewhere is served from an
  edge pull (or sent to the owner with 307 in ``viewers = "redirect"`` mode);
- **one picture**: the node's record carries its streams, so every node lists all;
- **share links and their revocation** cluster-wide: the book is mirrored in a Redis hash,
  each change is an event every node applies at once (a revoked link's sessions end).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import psutil

from ..cascade import WhepPull
from ..config import PASSTHROUGH, Config
from ..errors import RelayError
from ..markers import MarkerBook
from ..registry import Entry, Registry, State
from ..share import Share, ShareBook
from .directory import EVENTS, FAULTS, MARKERS, SHARES, Directory, DirectoryDown, client
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
        self.markers: MarkerBook | None = None  # the incident's markers, shared by every node
        # Ends the sessions opened through a share link (set by the app: the WHEP egress's).
        self.end_share: Callable[[str], Awaitable[int]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._proc = psutil.Process(os.getpid())
        self._net = (time.monotonic(), _sent_bytes())
        d = self.directory
        d.record, d.wanted, d.on_lost, d.on_refreshed = self.record, self.wanted, self._lost, self._adopt
        d.on_rejoin.append(lambda: self._spawn(self.sync_shares()))
        d.on_rejoin.append(lambda: self._spawn(self.sync_markers()))
        registry.guard = self.guard
        shares.listeners.append(self._share_changed)

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        self._proc.cpu_percent()
        self._spawn(self.directory.run())
        self._spawn(self.edges.janitor())
        self._spawn(self._events())
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
        holder = entry.slot.holder
        evict = entry.slot._evict
        entry.release(holder)
        if evict is not None:
            evict(holder)

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
                "title": (sc.title if sc else "") or info.upstream_title, "problem": info.problem or None,
                "fps": round(e.fps, 1), "width": e.width, "height": e.height, "source_codec": info.codec,
                "viewers": self.viewers(e.name), "publisher": e.slot.kind,
                "passthrough": (e.passthrough is not None and e.mode != "transcode"
                                and info.codec.lower() == "h264")}

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

    def remote_share_sessions(self, share_id: str) -> int:
        """Sessions of a share link on the other nodes (its viewer cap is cluster-wide)."""
        total = 0
        for node in self.directory.others():
            n = node.get("share_sessions", {}).get(share_id, 0)
            total += n if isinstance(n, int) else 0
        return total

    # ------------------------------------------------------------------ markers

    def share_markers(self, book: MarkerBook) -> None:
        """The incident's markers on every node: each change made here goes to the cluster's
        book and as an event; the others' changes are merged here (and into this node's
        signed log, marked with the node they came from)."""
        self.markers = book
        book.changes.append(lambda op, doc, t: self._spawn(self._publish_marker(op, doc, t)))

    async def _publish_marker(self, op: str, doc: dict[str, Any], t: float) -> None:
        try:
            redis = self.directory.redis
            await redis.hset(MARKERS, doc["id"], json.dumps({"op": op, "m": doc, "t": t, "node": self.me}))
            await redis.publish(EVENTS, json.dumps({"type": "marker", "id": doc["id"], "node": self.me}))
        except FAULTS as exc:  # (the rejoin's sync pushes what the cluster has not got)
            log.warning("marker change not yet in the cluster's book", extra={"marker": doc.get("id"),
                                                                              "error": str(exc)})

    def _merge_marker(self, raw: str | None) -> None:
        if not raw or self.markers is None:
            return
        try:
            ev = json.loads(raw)
        except ValueError:
            return
        if isinstance(ev, dict) and isinstance(ev.get("t"), int | float):
            self.markers.merge(str(ev.get("op")), ev.get("m"), float(ev["t"]), str(ev.get("node") or "?"))

    async def sync_markers(self) -> None:
        """On (re)joining: the cluster's changes merged here, ours it has not got pushed."""
        book = self.markers
        if book is None:
            return
        try:
            redis = self.directory.redis
            theirs = await redis.hgetall(MARKERS)
            for raw in theirs.values():
                self._merge_marker(str(raw))
            for m in list(book.markers.values()):
                known = _json_dict(theirs.get(m.id))
                known_m = known.get("m") if known else None
                if not isinstance(known_m, dict) or float(known_m.get("updated", 0)) < m.updated:
                    await redis.hset(MARKERS, m.id, json.dumps({"op": "change", "m": m.doc(), "t": m.updated,
                                                                "node": self.me}))
        except FAULTS as exc:
            log.warning("markers not synced with the cluster", extra={"error": str(exc)})

    # ------------------------------------------------------------------ shares

    def _share_changed(self, share: Share) -> None:
        self._spawn(self._publish_share(share))

    async def _publish_share(self, share: Share) -> None:
        try:
            redis = self.directory.redis
            await redis.hset(SHARES, share.id, json.dumps(share.doc()))
            await redis.publish(EVENTS, json.dumps({"type": "share", "id": share.id, "node": self.me}))
        except FAULTS as exc:  # (the rejoin's sync pushes it: a revocation is never lost)
            log.warning("share link change not yet in the cluster's book",
                        extra={"share": share.id, "error": str(exc)})

    async def sync_shares(self) -> None:
        """Both ways, on (re)joining: links made or revoked on either side meet."""
        try:
            redis = self.directory.redis
            theirs = await redis.hgetall(SHARES)
            for raw in theirs.values():
                await self._apply_share(str(raw))
            for share in list(self.shares.shares.values()):
                mine = theirs.get(share.id)
                doc = json.loads(mine) if mine else None
                if doc is None or (share.revoked is not None and doc.get("revoked") is None):
                    await redis.hset(SHARES, share.id, json.dumps(share.doc()))
        except FAULTS as exc:
            log.warning("share links not synced with the cluster", extra={"error": str(exc)})

    async def learn_share(self, token: str | None) -> None:
        """A share link's token this node has not heard of yet (made on another node a
        moment ago): its entry is read from the cluster's book before the token is judged.
        The signature is checked by the decision that follows, as for every token."""
        if not token or len(token) > 4096 or token.count(".") != 2:
            return
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return
        jti = claims.get("jti") if isinstance(claims, dict) and claims.get("share") else None
        if not isinstance(jti, str) or self.shares.get(jti) is not None or not self.directory.up:
            return
        with contextlib.suppress(*FAULTS):
            raw = await asyncio.wait_for(self.directory.redis.hget(SHARES, jti), 1.0)
            await self._apply_share(str(raw) if raw is not None else None)

    async def _apply_share(self, raw: str | None) -> None:
        if not raw:
            return
        try:
            doc = json.loads(raw)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        known = self.shares.get(str(doc.get("id")))
        was_revoked = known is not None and known.revoked is not None
        share = self.shares.merge(doc)
        if share is not None and share.revoked is not None and not was_revoked and self.end_share is not None:
            ended = await self.end_share(share.id)
            log.info("share link revoked on another node", extra={"share": share.id, "ended": ended})

    async def _events(self) -> None:
        """The cluster's events (a share link made or revoked on another node)."""
        while True:
            pubsub = None
            try:
                sub = client(self.config, timeout=None)
                pubsub = sub.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(EVENTS)
                await self.sync_shares()  # what was said while we did not listen
                await self.sync_markers()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    await self._event(msg.get("data"))
            except FAULTS:
                await asyncio.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*FAULTS):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _event(self, data: Any) -> None:
        try:
            ev = json.loads(data) if isinstance(data, str) else None
        except ValueError:
            return
        if not isinstance(ev, dict) or ev.get("node") == self.me:
            return
        if ev.get("type") == "share" and isinstance(ev.get("id"), str):
            raw = await self.directory.redis.hget(SHARES, ev["id"])
            await self._apply_share(str(raw) if raw is not None else None)
        elif ev.get("type") == "marker" and isinstance(ev.get("id"), str):
            raw = await self.directory.redis.hget(MARKERS, ev["id"])
            self._merge_marker(str(raw) if raw is not None else None)

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


def _json_dict(raw: Any) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _sent_bytes() -> int:
    try:
        return int(psutil.net_io_counters().bytes_sent)
    except (OSError, AttributeError):
        return 0

