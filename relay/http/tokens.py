"""Signed short-lived tokens: minted by control and admin (who may mint what: :mod:`relay.auth`)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..auth import Decision, may_mint, mint_token
from ..config import STREAM_NAME, Config
from ..errors import RelayError
from ..wire import Refused, safe_text
from .common import Services, authorize, json_object, services_of

__all__ = ["api_tokens", "mark_grant", "mint_request", "token_label", "token_ttl"]

log = logging.getLogger("relay.http")


def token_ttl(config: Config, ttl: Any) -> float:
    max_ttl = config.auth.jwt_max_ttl_s
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 10 <= ttl <= max_ttl:
        raise RelayError(422, f"ttl_s must be between 10 and {max_ttl:.0f}")
    return float(ttl)


def token_label(label: Any) -> str:
    """A minted token's or share link's label: plain text (it reaches pages, the record's
    audit log and KML as the author of markers)."""
    try:
        return safe_text(label, 80, "label")
    except Refused as exc:
        raise RelayError(422, f"label must be plain text of at most 80 characters ({exc})") from None


def mark_grant(request: web.Request, doc: dict[str, Any]) -> bool:
    """``mark``: the minted token may place markers; only who may mark may pass that on."""
    mark = doc.get("mark", False)
    if not isinstance(mark, bool):
        raise RelayError(422, "mark must be true or false")
    if mark:
        authorize(request, "mark")
    return mark


async def mint_request(request: web.Request, things: str,
                       body: str) -> tuple[Decision, Services, dict[str, Any]]:
    """A request to mint ``things`` (signed tokens, share links): who asks (may they mint at
    all), the services, the JSON ``body``; 501 while no ``auth.jwt_secret`` is configured."""
    decision = authorize(request, "mint")
    svc = services_of(request)
    if not svc.config.auth.jwt_secret:
        raise RelayError(501, f"{things} need auth.jwt_secret in the config")
    return decision, svc, await json_object(request, body)


TOKEN_FIELDS = frozenset({"role", "streams", "ttl_s", "label", "mark"})


async def api_tokens(request: web.Request) -> web.Response:
    """Mint a signed, short-lived token (a share link's credential). Control: viewer tokens."""
    decision, svc, doc = await mint_request(request, "signed tokens", "token request")
    unknown = sorted(set(doc) - TOKEN_FIELDS)
    if unknown:  # (a "node" claim, say: only a cluster node mints that, for its own pull)
        raise RelayError(422, f"token request: unknown field {unknown[0][:40]!r}")
    role = doc.get("role", "viewer")
    streams = doc.get("streams")
    if not isinstance(streams, list) or not streams or not all(
        isinstance(s, str) and STREAM_NAME.match(s) for s in streams
    ):
        raise RelayError(422, "streams must be a non-empty list of stream names")
    ttl = token_ttl(svc.config, doc.get("ttl_s", 3600))
    label = token_label(doc.get("label", ""))
    who = decision.principal
    allowed = may_mint(who, role)
    if not allowed.allowed:
        raise RelayError(allowed.status, allowed.reason)
    mark = mark_grant(request, doc)
    token, expires, jti = mint_token(svc.config, role, streams, ttl, label, mark=mark)
    log.info("token minted", extra={"by": who.name if who else "?", "role": role, "mark": mark,
                                    "streams": ",".join(streams), "expires": expires, "jti": jti})
    return web.json_response({"token": token, "expires": expires, "role": role, "streams": streams,
                              "mark": mark},
                             status=201, headers={"Cache-Control": "no-store"})
