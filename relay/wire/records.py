"""A cluster node's record, as read from Redis (whoever can write Redis wrote it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import STREAM_NAME
from .values import Refused, finite, json_doc, origin, safe_text

__all__ = ["MAX_RECORD_BYTES", "MAX_STREAMS", "NodeRecord", "parse_node"]

MAX_RECORD_BYTES = 256 * 1024  # a node with 300 streams writes ~60 KB
MAX_STREAMS = 500
STATES = ("live", "lost", "waiting")
YEAR_S = 365 * 86400.0


@dataclass(frozen=True)
class NodeRecord:
    name: str
    url: str  # an origin rebuilt from the record's URL (see values.origin), on the allow-list
    t: float
    load: dict[str, float] = field(default_factory=dict)
    streams: tuple[dict[str, Any], ...] = ()
    share_sessions: dict[str, int] = field(default_factory=dict)

    def doc(self) -> dict[str, Any]:
        """The record as the rest of the cluster code reads it (clean values only)."""
        return {"name": self.name, "url": self.url, "t": self.t, "load": dict(self.load),
                "streams": [dict(s) for s in self.streams], "share_sessions": dict(self.share_sessions)}


def parse_node(name: str, raw: Any, allowed: tuple[str, ...] = ()) -> NodeRecord:
    """The record stored under ``relay:node:<name>``; ``allowed``: the origins nodes may have
    (empty: any http(s) origin). Raises :class:`Refused` with the reason."""
    if not isinstance(raw, str) or len(raw) > MAX_RECORD_BYTES:
        raise Refused("node record: not text, or over 256 KB")
    if not STREAM_NAME.match(name):
        raise Refused("node record: bad node name")
    try:
        doc = json_doc(raw, "node record")
    except ValueError:
        raise Refused("node record: not JSON") from None
    if not isinstance(doc, dict) or doc.get("name") != name:
        raise Refused("node record: not an object named as its key")
    url = origin(doc.get("url"))
    if url is None:
        raise Refused("node record: url is not an http(s) origin")
    if allowed and url not in allowed:
        raise Refused("node record: url is not one of cluster.peers")
    load = doc.get("load")
    clean_load = {k: finite(v, 0, 1e9, f"load.{k}") for k, v in load.items()
                  if k in ("cores", "viewers", "streams", "out_mbps")} if isinstance(load, dict) else {}
    streams = doc.get("streams", [])
    if not isinstance(streams, list) or len(streams) > MAX_STREAMS:
        raise Refused("node record: streams is not a list (or too long)")
    shares = doc.get("share_sessions", {})
    if not isinstance(shares, dict) or len(shares) > 10_000:
        raise Refused("node record: share_sessions is not an object")
    clean_shares = {k: int(finite(v, 0, 1e6, "share_sessions")) for k, v in shares.items()
                    if isinstance(k, str) and len(k) <= 64}
    return NodeRecord(name, url, finite(doc.get("t"), 0, 1e11, "t"), clean_load,
                      tuple(_stream(s) for s in streams), clean_shares)


def _stream(s: Any) -> dict[str, Any]:
    """One of a node's streams, every field checked (a bad one refuses the record)."""
    if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not STREAM_NAME.match(s["name"]):
        raise Refused("node record: a stream without a valid name")
    if s.get("state") not in STATES:
        raise Refused("node record: a stream's state")
    problem = s.get("problem")
    return {
        "name": s["name"], "state": s["state"],
        "state_since": finite(s.get("state_since", 0), 0, 1e11, "state_since"),
        "title": safe_text(s.get("title", ""), 200, "title"),
        "problem": None if problem is None else safe_text(problem, 300, "problem"),
        "fps": finite(s.get("fps", 0), 0, 1000, "fps"),
        "width": int(finite(s.get("width", 0), 0, 16384, "width")),
        "height": int(finite(s.get("height", 0), 0, 16384, "height")),
        "source_codec": safe_text(s.get("source_codec", ""), 16, "source_codec"),
        "viewers": int(finite(s.get("viewers", 0), 0, 1e6, "viewers")),
        "publisher": safe_text(s.get("publisher", "") or "", 16, "publisher"),
        "passthrough": s.get("passthrough") is True,
    }
