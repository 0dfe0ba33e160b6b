"""What every handler shares: the services, the request's token and client, the one
authorization step (every who-may-what decision is :mod:`relay.auth`'s), body readers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..auth import Action, Decision, bearer_token
from ..auth import authorize as decide
from ..cascade import Forwards, WhepPull
from ..cluster import Cluster
from ..config import STREAM_NAME, Config
from ..dji import DjiPlatform
from ..egress import WhepEgress
from ..errors import RelayError
from ..limits import Limiter
from ..markers import MarkerBook, RateBook
from ..overload import Governor
from ..pipeline import Pipeline
from ..record import RecordService
from ..registry import Registry
from ..share import ShareBook
from ..sources import RtmpIngest, WhipIngest
from ..wire import json_doc

__all__ = [
    "SERVICES",
    "VIEWER_DIR",
    "Handler",
    "S",
    "Services",
    "authorize",
    "json_object",
    "label_of",
    "page",
    "read_body",
    "remote_of",
    "services_of",
    "share_sessions",
    "token_of",
]

VIEWER_DIR = Path(__file__).resolve().parent.parent.parent / "viewer"
S = "{stream:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Services:
    config: Config
    registry: Registry
    whip: WhipIngest
    whep: WhepEgress
    rtmp: RtmpIngest | None = None
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    metrics: Callable[[], bytes] | None = None
    limiter: Limiter | None = None
    record: RecordService | None = None
    shares: ShareBook = field(default_factory=ShareBook)
    forwards: Forwards | None = None
    pulls: dict[str, WhepPull] = field(default_factory=dict)  # whep+http(s) sources, by stream
    markers: MarkerBook | None = None  # None: markers.enabled = false
    cluster: Cluster | None = None  # None: one node ([cluster] redis unset)
    marker_rate: RateBook = field(default_factory=lambda: RateBook(30))
    governor: Governor = field(default_factory=Governor)  # what the relay sheds when short of CPU
    rung_shed: Any = None  # the governor's "rungs" step (egress.shed.RungShed), set with the streams
    dji: DjiPlatform | None = None  # None: no [dji] broker


SERVICES = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def token_of(request: web.Request) -> str | None:
    # Headers only: a token in a query string lands in access logs and Referer headers.
    return bearer_token(request.headers.get("Authorization"))


def authorize(request: web.Request, action: Action, stream: str | None = None) -> Decision:
    """The request's token may do ``action`` (on ``stream``), or the precise refusal is raised."""
    svc = services_of(request)
    decision = decide(svc.config, svc.shares, action, stream, token_of(request))
    if not decision.allowed:
        raise RelayError(decision.status, decision.reason)
    return decision


def remote_of(request: web.Request) -> str:
    return request.remote or "?"


def label_of(decision: Decision) -> str:
    p = decision.principal
    return (p.name if p else "anonymous")[:40] or "anonymous"


async def read_body(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body (aiohttp's ``content.read(n)`` returns only what has arrived so far)."""
    if request.content_length is not None and request.content_length > limit:
        raise RelayError(413, f"{what} is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise RelayError(413, f"{what} is larger than {limit} bytes")
    return b"".join(chunks)


async def json_object(request: web.Request, what: str, limit: int = 4096) -> dict[str, Any]:
    """The request's body as a JSON object, or a 400 naming what it should have been."""
    try:
        doc = json_doc(await read_body(request, limit, what), what)
    except ValueError:
        raise RelayError(400, f"{what} must be a JSON object") from None
    if not isinstance(doc, dict):
        raise RelayError(400, f"{what} must be a JSON object")
    return doc


def share_sessions(svc: Services, share_id: str) -> int:
    """Viewing sessions opened through one share link (its token's id)."""
    here = sum(1 for sess in svc.whep.sessions.values()
               if sess.principal is not None and sess.principal.jti == share_id)
    return here + (svc.cluster.remote_share_sessions(share_id) if svc.cluster is not None else 0)


def page(name: str) -> Handler:
    """A page of the viewer (plain files), for a well-formed stream name."""
    async def handler(request: web.Request) -> web.StreamResponse:
        if "stream" in request.match_info and not STREAM_NAME.match(request.match_info["stream"]):
            raise RelayError(404, "no such stream")
        return web.FileResponse(VIEWER_DIR / name, headers={"Cache-Control": "no-cache"})

    return handler
