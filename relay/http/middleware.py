"""The middleware: precise refusals (status + one line, logged), CORS for the API, security
headers (CSP, HSTS) on every answer."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..auth import public_id
from ..config import Config
from ..errors import RelayError
from .common import Handler, services_of

__all__ = ["errors_and_cors"]

log = logging.getLogger("relay.http")

# Pages load only our own scripts and styles; nothing inline, nothing from elsewhere.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "geolocation=(), microphone=()",
}
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Post, Accept-Patch",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def errors_and_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RelayError as exc:
        log.info(
            "request refused",
            extra={"method": request.method, "path": loggable(request), "status": exc.status,
                   "reason": exc.reason, "remote": request.remote},
        )
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="drone-relay"'
        response = web.Response(status=exc.status, text=exc.reason + "\n", headers=headers)
    except web.HTTPException as exc:
        add_headers(request, exc.headers)
        raise
    add_headers(request, response.headers)
    return response


def loggable(request: web.Request) -> str:
    """The path with a session's secret replaced by its public id (the secret ends the session)."""
    secret = request.match_info.get("session")
    return request.path.replace(secret, f"~{public_id(secret)}") if secret else request.path


def tile_origin(config: Config) -> str:
    """The map tile server's origin (scheme://host[:port]), or "" without tiles."""
    url = config.telemetry.tile_url
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def add_headers(request: web.Request, headers: Any) -> None:
    if request.path.startswith(("/whip", "/whep", "/api")):
        headers.update(CORS)
    headers.update(SECURITY_HEADERS)
    svc = services_of(request)
    csp = CSP
    tiles = tile_origin(svc.config)
    if tiles:  # the map's images may come from the configured tile server, nothing else
        csp = csp.replace("img-src 'self'", f"img-src 'self' {tiles}")
    if svc.cluster is not None:  # the other nodes: a 307 to the owner, a session's DELETE
        nodes = " ".join(svc.cluster.origins())
        csp = csp.replace("connect-src 'self'", f"connect-src 'self' {nodes}")
    headers["Content-Security-Policy"] = csp
    if services_of(request).config.tls_cert:
        headers["Strict-Transport-Security"] = "max-age=31536000"
