"""HTTP: routes and middlewares only (status codes, auth, CORS, JSON, the static viewer)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .auth import Action, authenticate, bearer_token
from .config import PASSTHROUGH, STREAM_NAME, Config
from .egress import WhepEgress
from .errors import RelayError
from .pipeline import Pipeline
from .registry import Entry, Registry
from .sources import RtmpIngest, WhipIngest

__all__ = ["Services", "build_routes"]

log = logging.getLogger("relay.http")

VIEWER_DIR = Path(__file__).resolve().parent.parent / "viewer"
MAX_SDP = 64 * 1024
S = "{stream:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}}"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Post, Accept-Patch",
    "Access-Control-Max-Age": "600",
}

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


SERVICES = web.AppKey("services", Services)


# --------------------------------------------------------------------------- middlewares


@web.middleware
async def errors_and_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RelayError as exc:
        log.info(
            "request refused",
            extra={"method": request.method, "path": request.path, "status": exc.status,
                   "reason": exc.reason, "remote": request.remote},
        )
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="drone-relay"'
        response = web.Response(status=exc.status, text=exc.reason + "\n", headers=headers)
    except web.HTTPException as exc:
        response = exc
    if request.path.startswith(("/whip", "/whep", "/api")):
        response.headers.update(CORS)
    return response


# --------------------------------------------------------------------------- helpers


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def _token(request: web.Request) -> str | None:
    token = bearer_token(request.headers.get("Authorization"))
    return token or request.query.get("token") or None


def _authorize(request: web.Request, action: Action, stream: str) -> None:
    decision = authenticate(_services(request).config, action, stream, _token(request))
    if not decision.allowed:
        raise RelayError(decision.status, decision.reason)


async def _read_offer(request: web.Request) -> str:
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        raise RelayError(415, f"Content-Type must be application/sdp, got {ctype or 'none'!r}")
    if request.content_length is not None and request.content_length > MAX_SDP:
        raise RelayError(413, f"SDP offer is larger than {MAX_SDP} bytes")
    body = await request.content.read(MAX_SDP + 1)
    if len(body) > MAX_SDP:
        raise RelayError(413, f"SDP offer is larger than {MAX_SDP} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise RelayError(400, "SDP offer is not UTF-8") from None


def _created(location: str, session_id: str, answer: str, config: Config) -> web.Response:
    headers = {
        "Location": location,
        "ETag": f'"{session_id}"',
        "Content-Type": "application/sdp",
    }
    links = [f'<{u}>; rel="ice-server"' for u in config.webrtc.stun_servers]
    if links:
        headers["Link"] = ", ".join(links)
    return web.Response(status=201, text=answer, headers=headers)


def _remote(request: web.Request) -> str:
    return request.remote or "?"


# --------------------------------------------------------------------------- WHIP / WHEP


async def options(request: web.Request) -> web.Response:
    return web.Response(
        status=204, headers={"Accept-Post": "application/sdp", "Allow": "POST, OPTIONS"}
    )


async def session_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Allow": "DELETE, PATCH, OPTIONS"})


async def whip_post(request: web.Request) -> web.Response:
    stream = request.match_info["stream"]
    _authorize(request, "publish", stream)
    offer = await _read_offer(request)
    svc = _services(request)
    session_id, answer = await svc.whip.publish(stream, offer, _remote(request))
    return _created(f"/whip/{stream}/{session_id}", session_id, answer, svc.config)


async def whip_delete(request: web.Request) -> web.Response:
    stream = request.match_info["stream"]
    _authorize(request, "publish", stream)
    await _services(request).whip.stop(stream, request.match_info["session"])
    return web.Response(status=200, text="session ended\n")


async def whep_post(request: web.Request) -> web.Response:
    stream = request.match_info["stream"]
    _authorize(request, "view", stream)
    offer = await _read_offer(request)
    svc = _services(request)
    rendition = request.query.get("rendition") or None
    session_id, answer = await svc.whep.play(stream, offer, _remote(request), rendition)
    return _created(f"/whep/{stream}/{session_id}", session_id, answer, svc.config)


async def whep_delete(request: web.Request) -> web.Response:
    stream = request.match_info["stream"]
    _authorize(request, "view", stream)
    await _services(request).whep.stop(stream, request.match_info["session"])
    return web.Response(status=200, text="session ended\n")


async def trickle(request: web.Request) -> web.Response:
    # Answers carry every candidate (non-trickle); RFC 9725 §4.3.1: 405 when unsupported.
    raise RelayError(405, "trickle ICE is not supported: the answer carries all candidates")


# --------------------------------------------------------------------------- API


def _visible(request: web.Request, entry: Entry) -> bool:
    return authenticate(_services(request).config, "view", entry.name, _token(request)).allowed


def stream_doc(svc: Services, entry: Entry) -> dict[str, Any]:
    doc = entry.summary()
    sc = svc.config.stream(entry.name)
    doc["title"] = sc.title if sc else ""
    doc["mode"] = entry.mode
    doc["renditions"] = []
    for r in svc.config.renditions if entry.mode != "passthrough" else ():
        enc = entry.encoders.get(r.name)
        doc["renditions"].append({
            "name": r.name,
            "codec": r.codec,
            "height": r.height,
            "bitrate_kbps": r.bitrate_kbps,
            "viewers": len(entry.renditions[r.name].readers),
            "encoding": enc is not None,
            "size": f"{getattr(enc, 'width', 0)}x{getattr(enc, 'height', 0)}" if enc else None,
            "passthrough": False,
        })
    if entry.passthrough is not None and entry.passthrough_source:
        doc["renditions"].append({
            "name": PASSTHROUGH, "codec": "h264", "height": entry.height, "bitrate_kbps": None,
            "viewers": len(entry.passthrough.readers), "encoding": False,
            "size": f"{entry.width}x{entry.height}" if entry.width else None, "passthrough": True,
        })
    return doc


async def api_streams(request: web.Request) -> web.Response:
    svc = _services(request)
    docs = [stream_doc(svc, e) for e in svc.registry.entries.values() if _visible(request, e)]
    if svc.config.auth.enabled and not docs and _token(request) is None:
        raise RelayError(401, "listing streams needs an Authorization: Bearer token")
    return web.json_response({"streams": docs, "server_time": time.time()})


def _entry(request: web.Request) -> Entry:
    stream = request.match_info["stream"]
    _authorize(request, "view", stream)
    entry = _services(request).registry.get(stream)
    if entry is None:
        raise RelayError(404, f"no stream {stream!r}")
    return entry


async def api_stream(request: web.Request) -> web.Response:
    return web.json_response(stream_doc(_services(request), _entry(request)))


async def api_stats(request: web.Request) -> web.Response:
    svc = _services(request)
    entry = _entry(request)
    now = time.time()
    viewers = []
    for v in entry.viewers.values():
        viewers.append({
            "id": v.id,
            "rendition": v.rendition,
            "remote": v.remote,
            "connected_s": round(now - v.started, 1),
            "rtt_ms": v.rtt_ms,
            "report": v.report,
            "report_age_s": round(now - v.report_time, 2) if v.report_time else None,
            "creep_resets": v.creep_resets,
            "queue": svc.whep.reader_stats(v.id),
        })
    return web.json_response({
        "stream": stream_doc(svc, entry),
        "relay_latency": entry.latency.summary(),
        "viewers": viewers,
    })


async def api_snapshot(request: web.Request) -> web.Response:
    entry = _entry(request)
    pipeline = _services(request).pipelines.get(entry.name)
    jpeg = await pipeline.snapshot() if pipeline else None
    if jpeg is None:
        raise RelayError(404, f"stream {entry.name!r} has no picture yet")
    return web.Response(body=jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    svc = _services(request)
    if svc.metrics is None:
        raise RelayError(404, "metrics are disabled")
    return web.Response(body=svc.metrics(), headers={
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def healthz(request: web.Request) -> web.Response:
    svc = _services(request)
    return web.json_response({"ok": True, "uptime_s": round(time.time() - svc.started, 1)})


# --------------------------------------------------------------------------- pages


def _page(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "stream" in request.match_info and not STREAM_NAME.match(request.match_info["stream"]):
            raise RelayError(404, "no such stream")
        return web.FileResponse(VIEWER_DIR / name, headers={"Cache-Control": "no-cache"})

    return handler


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
    r.add_get("/metrics", metrics)
    r.add_get("/healthz", healthz)
    r.add_get("/", _page("index.html"))
    r.add_get("/wall", _page("wall.html"))
    r.add_get(f"/view/{S}", _page("view.html"))
    r.add_get(f"/publish/{S}", _page("publish.html"))
    r.add_static("/static/", VIEWER_DIR, append_version=False)
