"""HTTP of share links: create (with a QR code), list, revoke — control-centre users only.

``POST /api/shares`` {stream, ttl_s, label, max_viewers, mark} -> 201 {id, url, qr_svg, expires, ...}
``GET /api/shares`` -> every link with how many viewers use it now
``DELETE /api/shares/<id>`` -> revoked; the sessions opened through it end at once

The QR code (segno) and the link are in the create answer only: the book keeps no tokens,
so a leaked book leaks no links; a lost QR code means a new link.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import segno
from aiohttp import web

from ..auth import mint_token
from ..config import STREAM_NAME
from ..errors import RelayError
from ..share import Share
from .common import SERVICES, authorize, page, services_of, share_sessions
from .tokens import mark_grant, mint_request, token_label, token_ttl

__all__ = ["add_routes", "end_expired_shares"]

log = logging.getLogger("relay.share")


def _base(request: web.Request) -> str:
    cfg = services_of(request).config
    return cfg.auth.public_url or f"{request.scheme}://{request.host}"


def _qr_svg(url: str) -> str:
    buf = io.BytesIO()
    # Error correction M; dark modules on white, as phone cameras read best.
    segno.make(url, error="m").save(buf, kind="svg", scale=6, border=4, dark="#000", light="#fff",
                                    xmldecl=False, svgns=True)
    return buf.getvalue().decode()


async def create(request: web.Request) -> web.Response:
    decision, svc, doc = await mint_request(request, "share links", "share request")
    if svc.cluster is not None:  # a link made now must be known on every node
        svc.cluster.require("share links")
    stream, cap = doc.get("stream"), doc.get("max_viewers", 0)
    if not isinstance(stream, str) or not STREAM_NAME.match(stream):
        raise RelayError(422, "stream must be a stream name")
    ttl = token_ttl(svc.config, doc.get("ttl_s", 4 * 3600))
    label = token_label(doc.get("label", ""))
    if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= 1000:
        raise RelayError(422, "max_viewers must be a whole number 0..1000 (0: no cap)")
    mark = mark_grant(request, doc)
    token, expires, jti = mint_token(svc.config, "viewer", [stream], ttl, label, share=True, mark=mark)
    who = decision.principal.name if decision.principal is not None else "?"
    share = Share(id=jti, stream=stream, label=label, created=time.time(), expires=float(expires),
                  max_viewers=cap, created_by=who, mark=mark)
    try:
        svc.shares.add(share)
    except ValueError as exc:
        raise RelayError(507, str(exc)) from None
    url = f"{_base(request)}/view/{stream}#token={token}"
    log.info("share link created", extra={"share": jti, "stream": stream, "label": label, "by": who,
                                          "expires": expires, "max_viewers": cap})
    return web.json_response({**share.doc(), "url": url, "token": token, "qr_svg": _qr_svg(url)},
                             status=201, headers={"Cache-Control": "no-store"})


async def listing(request: web.Request) -> web.Response:
    authorize(request, "mint")
    docs: list[dict[str, Any]] = services_of(request).shares.listing()
    for d in docs:
        d["viewers"] = share_sessions(services_of(request), d["id"])
    # Whether a link can be made here at all, and why not: the page says so before anyone fills
    # in the form (auth off, or no signing secret: the create would answer 501).
    off = "" if services_of(request).config.auth.jwt_secret else \
        "share links are off: they are signed, and this relay has no auth.jwt_secret in its config"
    return web.json_response({"shares": docs, "can_create": not off, "why_not": off},
                             headers={"Cache-Control": "no-store"})


async def revoke(request: web.Request) -> web.Response:
    decision = authorize(request, "mint")
    svc = services_of(request)
    share_id = request.match_info["share"]
    share = svc.shares.revoke(share_id)
    if share is None:
        raise RelayError(404, "no such share link")
    ended = await svc.whep.end_where(
        lambda s: s.principal is not None and s.principal.jti == share_id, "share link revoked")
    log.info("share link revoked", extra={"share": share_id, "stream": share.stream, "ended": ended,
                                          "by": decision.principal.name if decision.principal else "?"})
    return web.json_response({**share.doc(), "sessions_ended": ended})


async def end_expired_shares(app: web.Application) -> int:
    """End sessions whose token expired, or whose share link was revoked or expired."""
    svc = app[SERVICES]
    now = time.time()

    def doomed(s: Any) -> bool:
        p = s.principal
        if p is None:
            return False
        if p.expires is not None and p.expires < now:
            return True
        return bool(p.share and svc.shares.active(p.jti) is None)

    return await svc.whep.end_where(doomed, "token or share link expired")


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/api/shares", create)
    r.add_get("/api/shares", listing)
    r.add_delete("/api/shares/{share:[A-Za-z0-9_-]{1,64}}", revoke)
    r.add_get("/share", page("share.html"))
