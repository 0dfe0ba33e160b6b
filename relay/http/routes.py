"""Every route of the relay, in one place."""

from __future__ import annotations

from pathlib import Path

import xstatic.pkg.leaflet
from aiohttp import web

from . import dji, markers, mirror, record, share
from .common import SERVICES, VIEWER_DIR, S, Services, page
from .middleware import errors_and_cors
from .streams import api_snapshot, api_stats, api_stream, api_streams, healthz, metrics
from .telemetry import api_telemetry, api_telemetry_post
from .tokens import api_tokens
from .whip_whep import options, session_options, trickle, whep_delete, whep_post, whip_delete, whip_post

__all__ = ["build_routes"]

LEAFLET_DIR = Path(xstatic.pkg.leaflet.BASE_DIR)


async def api_preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def favicon(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(VIEWER_DIR / "favicon.svg", headers={
        "Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"})


def build_routes(app: web.Application, services: Services) -> None:
    app[SERVICES] = services
    app.middlewares.append(errors_and_cors)
    r = app.router
    for proto, post, delete in (("whip", whip_post, whip_delete), ("whep", whep_post, whep_delete)):
        r.add_post(f"/{proto}/{S}", post)
        r.add_route("OPTIONS", f"/{proto}/{S}", options)
        r.add_delete(f"/{proto}/{S}/{{session}}", delete)
        r.add_patch(f"/{proto}/{S}/{{session}}", trickle)
        r.add_route("OPTIONS", f"/{proto}/{S}/{{session}}", session_options)
    r.add_get("/api/streams", api_streams)
    r.add_get(f"/api/streams/{S}", api_stream)
    r.add_get(f"/api/streams/{S}/stats", api_stats)
    r.add_get(f"/api/streams/{S}/snapshot.jpg", api_snapshot)
    r.add_post(f"/api/streams/{S}/telemetry", api_telemetry_post)
    r.add_get(f"/api/streams/{S}/telemetry", api_telemetry)
    r.add_post("/api/tokens", api_tokens)
    r.add_get("/metrics", metrics)
    r.add_get("/healthz", healthz)
    record.add_routes(r)
    mirror.add_routes(r)
    share.add_routes(r)
    markers.add_routes(r)
    dji.add_routes(r)
    # A browser's CORS pre-flight for any API call with a token from another origin (the
    # stream list of another cluster node fetches that node's snapshots): 204 with the CORS
    # headers. Added last: a path's own routes answer first, every other method stays 405.
    r.add_route("OPTIONS", "/api/{tail:.*}", api_preflight)
    # (a browser asks for /favicon.ico before it reads a page's <link rel="icon">)
    r.add_get("/favicon.ico", favicon)
    r.add_get("/", page("index.html"))
    r.add_get("/wall", page("wall.html"))
    r.add_get(f"/view/{S}", page("view.html"))
    r.add_get(f"/publish/{S}", page("publish.html"))
    # Leaflet from its PyPI package (XStatic-Leaflet), not a copy in the repository.
    r.add_static("/static/leaflet/", LEAFLET_DIR, append_version=False)
    r.add_static("/static/", VIEWER_DIR, append_version=False)
