"""The cluster's shared book: share links and the incident's markers, on every node.

Each is mirrored into a Redis hash (``relay:shares``, ``relay:markers``: id -> its last
state; a revoked link and a removed marker stay, so a node that was away learns of them)
and each change is announced on ``relay:events``; every node applies what others announce
at once (a revoked link's sessions end; a marker goes to its pages and its signed log) and,
on (re)joining, merges the whole book both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from ..aio import stop_if_cancelled, within
from ..config import STREAM_NAME, Config
from ..logs import Throttled
from ..markers import MarkerBook
from ..share import Share, ShareBook
from .directory import EVENTS, FAULTS, MARKERS, SHARES, Directory, client, json_dict

__all__ = ["SharedBook"]

log = logging.getLogger("relay.cluster")


class SharedBook:
    def __init__(self, config: Config, directory: Directory, shares: ShareBook,
                 spawn: Callable[[Awaitable[None]], None]) -> None:
        self.config = config
        self.directory = directory
        self.me = directory.me
        self.shares = shares
        self.spawn = spawn
        self.markers: MarkerBook | None = None  # the incident's markers, shared by every node
        # Ends the sessions opened through a share link (set by the app: the WHEP egress's).
        self.end_share: Callable[[str], Awaitable[int]] | None = None
        shares.listeners.append(self._share_changed)
        directory.on_rejoin.append(lambda: spawn(self.sync()))
        self.bad_events = 0  # events that could not be applied (the listener went on)
        self._bad = Throttled(log, 60.0)

    async def sync(self) -> None:
        await self.sync_shares()
        await self.sync_markers()

    # ------------------------------------------------------------------ markers

    def share_markers(self, book: MarkerBook) -> None:
        """The incident's markers on every node: each change made here goes to the cluster's
        book and as an event; the others' changes are merged here (and into this node's
        signed log, marked with the node they came from)."""
        self.markers = book
        book.changes.append(lambda op, doc, t: self.spawn(self._announce(
            MARKERS, "marker", doc["id"], {"op": op, "m": doc, "t": t, "node": self.me})))

    async def _announce(self, book: str, kind: str, item_id: str, state: dict[str, Any]) -> None:
        """A change made here: into the cluster's book (``book``: the hash), then an event
        every node hears. Redis away: the rejoin's sync pushes it (a revocation, a marker
        change are never lost)."""
        try:
            redis = self.directory.redis
            await redis.hset(book, item_id, json.dumps(state))
            await redis.publish(EVENTS, json.dumps({"type": kind, "id": item_id, "node": self.me}))
        except FAULTS as exc:
            log.warning("change not yet in the cluster's book", extra={"kind": kind, "id": item_id,
                                                                       "error": str(exc)})

    def _merge_marker(self, raw: str | None) -> None:
        if not raw or self.markers is None:
            return
        ev = json_dict(raw)
        node = ev.get("node") if ev is not None else None
        if ev is not None and isinstance(node, str) and STREAM_NAME.match(node):
            try:
                self.markers.merge(str(ev.get("op")), ev.get("m"), ev.get("t"), node)  # (merge checks t)
            except Exception as exc:  # one bad record: said, the others (and the listener) go on
                self.refused(exc)

    def refused(self, exc: Exception) -> None:
        """A record or event from the cluster's book that was not applied: counted, said
        (throttled, one line per kind of error)."""
        self.bad_events += 1
        kind = type(exc).__name__
        self._bad.warn(kind, "cluster event not applied", error=f"{kind}: {exc}"[:200])

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
                known = json_dict(theirs.get(m.id))
                known_m = known.get("m") if known else None
                if not isinstance(known_m, dict) or float(known_m.get("updated", 0)) < m.updated:
                    await redis.hset(MARKERS, m.id, json.dumps({"op": "change", "m": m.doc(), "t": m.updated,
                                                                "node": self.me}))
        except FAULTS as exc:
            log.warning("markers not synced with the cluster", extra={"error": str(exc)})

    # ------------------------------------------------------------------ shares

    def _share_changed(self, share: Share) -> None:
        self.spawn(self._announce(SHARES, "share", share.id, share.doc()))

    async def sync_shares(self) -> None:
        """Both ways, on (re)joining: links made or revoked on either side meet."""
        try:
            redis = self.directory.redis
            theirs = await redis.hgetall(SHARES)
            for raw in theirs.values():
                try:
                    await self._apply_share(str(raw))
                except FAULTS:
                    raise
                except Exception as exc:  # one bad link record: the others still sync
                    self.refused(exc)
            for share in list(self.shares.shares.values()):
                mine = theirs.get(share.id)
                doc = json_dict(mine)
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
            raw = await within(1.0, self.directory.redis.hget(SHARES, jti))
            await self._apply_share(str(raw) if raw is not None else None)

    async def _apply_share(self, raw: str | None) -> None:
        if not raw:
            return
        doc = json_dict(raw)
        if doc is None:
            return
        known = self.shares.get(str(doc.get("id")))
        was_revoked = known is not None and known.revoked is not None
        share = self.shares.merge(doc)
        if share is not None and share.revoked is not None and not was_revoked and self.end_share is not None:
            ended = await self.end_share(share.id)
            log.info("share link revoked on another node", extra={"share": share.id, "ended": ended})

    async def listen(self) -> None:
        """The cluster's events (a share link or a marker changed on another node)."""
        while True:
            pubsub = None
            subs: list[Any] = []
            try:
                sub = client(self.config, timeout=None)
                subs.append(sub)
                pubsub = sub.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(EVENTS)
                await self.sync()  # what was said while we did not listen
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    try:
                        await self._event(msg.get("data"))
                    except FAULTS:
                        raise
                    except Exception as exc:  # one bad event: said, and the listener goes on
                        self.refused(exc)
            except FAULTS:
                stop_if_cancelled()
                await asyncio.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*FAULTS):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                for sub in subs:
                    with contextlib.suppress(*FAULTS):
                        await sub.aclose()

    async def _event(self, data: Any) -> None:
        ev = json_dict(data)
        if ev is None or ev.get("node") == self.me:
            return
        if ev.get("type") == "share" and isinstance(ev.get("id"), str):
            raw = await self.directory.redis.hget(SHARES, ev["id"])
            await self._apply_share(str(raw) if raw is not None else None)
        elif ev.get("type") == "marker" and isinstance(ev.get("id"), str):
            raw = await self.directory.redis.hget(MARKERS, ev["id"])
            self._merge_marker(str(raw) if raw is not None else None)
