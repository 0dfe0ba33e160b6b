"""HTTP: routes and middlewares only (status codes, auth, CORS, JSON, the static viewer)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xstatic.pkg.leaflet
from aiohttp import web

from .auth import Action, Decision, authenticate, bearer_token, ice_servers_for, mint_token, public_id
from .config import PASSTHROUGH, STREAM_NAME, Config
from .egress import WhepEgress
from .errors import RelayError
from .limits import Limiter
from .pipeline import Pipeline
from .record import RecordService
from .registry import Entry, Registry
from .share import ShareBook
from .sources import RtmpIngest, WhipIngest
from .telemetry import TelemetryError, clean_update

__all__ = ["Services", "build_routes"]

log = logging.getLogger("relay.http")

VIEWER_DIR = Path(__file__).resolve().parent.parent / "viewer"
LEAFLET_DIR = Path(xstatic.pkg.leaflet.BASE_DIR)
MAX_SDP = 64 * 1024
S = "{stream:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}}"
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


SERVICES = web.AppKey("services", Services)


# --------------------------------------------------------------------------- middlewares


@web.middleware
async def errors_and_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RelayError as exc:
        log.info(
            "request refused",
            extra={"method": request.method, "path": _loggable(request), "status": exc.status,
                   "reason": exc.reason, "remote": request.remote},
        )
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="drone-relay"'
        response = web.Response(status=exc.status, text=exc.reason + "\n", headers=headers)
    except web.HTTPException as exc:
        _add_headers(request, exc.headers)
        raise
    _add_headers(request, response.headers)
    return response


def _loggable(request: web.Request) -> str:
    """The path with a session's secret replaced by its public id (the secret ends the session)."""
    secret = request.match_info.get("session")
    return request.path.replace(secret, f"~{public_id(secret)}") if secret else request.path


def _tile_origin(config: Config) -> str:
    """The map tile server's origin (scheme://host[:port]), or "" without tiles."""
    url = config.telemetry.tile_url
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _add_headers(request: web.Request, headers: Any) -> None:
    if request.path.startswith(("/whip", "/whep", "/api")):
        headers.update(CORS)
    headers.update(SECURITY_HEADERS)
    tiles = _tile_origin(_services(request).config)
    if tiles:  # the map's images may come from the configured tile server, nothing else
        headers["Content-Security-Policy"] = CSP.replace("img-src 'self'", f"img-src 'self' {tiles}")
    if _services(request).config.tls_cert:
        headers["Strict-Transport-Security"] = "max-age=31536000"


# --------------------------------------------------------------------------- helpers


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def _token(request: web.Request) -> str | None:
    # Headers only: a token in a query string lands in access logs and Referer headers.
    return bearer_token(request.headers.get("Authorization"))


def _authorize(request: web.Request, action: Action, stream: str | None = None) -> Decision:
    svc = _services(request)
    decision = authenticate(svc.config, action, stream, _token(request))
    if not decision.allowed:
        raise RelayError(decision.status, decision.reason)
    who = decision.principal
    if who is not None and who.share and svc.shares.active(who.jti) is None:
        share = svc.shares.get(who.jti)
        raise RelayError(403, "this share link was revoked" if share is not None and share.revoked
                         else "this share link has expired or is unknown")
    return decision


async def _read_body(request: web.Request, limit: int, what: str) -> bytes:
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


async def _read_offer(request: web.Request) -> str:
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        raise RelayError(415, f"Content-Type must be application/sdp, got {ctype or 'none'!r}")
    body = await _read_body(request, MAX_SDP, "SDP offer")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise RelayError(400, "SDP offer is not UTF-8") from None


def _link_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ice_links(config: Config, label: str) -> str | None:
    """RFC 9725 §4.6: one ``Link: <url>; rel="ice-server"`` per STUN/TURN URL."""
    links = []
    for server in ice_servers_for(config, label):
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += (f"; username={_link_value(server['username'])}"
                         f"; credential={_link_value(server['credential'])}"
                         '; credential-type="password"')
            links.append(link)
    return ", ".join(links) or None


def _label(decision: Decision) -> str:
    p = decision.principal
    return (p.name if p else "anonymous")[:40] or "anonymous"


def _created(location: str, session_id: str, answer: str, config: Config, label: str) -> web.Response:
    headers = {
        "Location": location,
        "ETag": f'"{session_id}"',
        "Content-Type": "application/sdp",
        "Cache-Control": "no-store",
    }
    links = ice_links(config, label)
    if links:
        headers["Link"] = links
    return web.Response(status=201, text=answer, headers=headers)


def _admit_offer(request: web.Request) -> None:
    limiter = _services(request).limiter
    if limiter is not None:
        limiter.offer(_remote(request))


def _remote(request: web.Request) -> str:
    return request.remote or "?"


# --------------------------------------------------------------------------- WHIP / WHEP


async def options(request: web.Request) -> web.Response:
    """CORS pre-flight, and (with a token) the ICE servers to use before the offer is made."""
    headers = {"Accept-Post": "application/sdp", "Allow": "POST, OPTIONS"}
    if request.headers.get("Authorization") or not _services(request).config.auth.enabled:
        action: Action = "publish" if request.path.startswith("/whip") else "view"
        decision = _authorize(request, action, request.match_info["stream"])
        links = ice_links(_services(request).config, _label(decision))
        if links:
            headers["Link"] = links
        headers["Cache-Control"] = "no-store"
    return web.Response(status=204, headers=headers)


async def session_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Allow": "DELETE, PATCH, OPTIONS"})


async def whip_post(request: web.Request) -> web.Response:
    stream = request.match_info["stream"]
    decision = _authorize(request, "publish", stream)
    offer = await _read_offer(request)
    _admit_offer(request)
    svc = _services(request)
    session_id, answer = await svc.whip.publish(stream, offer, _remote(request))
    return _created(f"/whip/{stream}/{session_id}", session_id, answer, svc.config, _label(decision))


async def whip_delete(request: web.Request) -> web.Response:
    stream = request.match_info["stream"]
    _authorize(request, "publish", stream)
    await _services(request).whip.stop(stream, request.match_info["session"])
    return web.Response(status=200, text="session ended\n")


async def whep_post(request: web.Request) -> web.Response:
    stream = request.match_info["stream"]
    decision = _authorize(request, "view", stream)
    offer = await _read_offer(request)
    _admit_offer(request)
    svc = _services(request)
    rendition = request.query.get("rendition") or None
    who = decision.principal
    share = svc.shares.active(who.jti) if who is not None and who.share else None
    if share is not None and share.max_viewers and share_sessions(svc, share.id) >= share.max_viewers:
        raise RelayError(429, f"this share link allows {share.max_viewers} viewer(s) at a time")
    session_id, answer = await svc.whep.play(stream, offer, _remote(request), rendition,
                                             principal=decision.principal)
    return _created(f"/whep/{stream}/{session_id}", session_id, answer, svc.config, _label(decision))


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
    # A listing shows only the streams this token may watch.
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
            "viewers": entry.renditions[r.name].viewer_count,
            "encoding": enc is not None,
            "size": f"{getattr(enc, 'width', 0)}x{getattr(enc, 'height', 0)}" if enc else None,
            "passthrough": False,
        })
    if entry.passthrough is not None and entry.mode != "transcode":
        info = entry.source_info
        doc["renditions"].append({
            "name": PASSTHROUGH, "codec": "h264", "height": info.height, "bitrate_kbps": None,
            "viewers": entry.passthrough.viewer_count, "encoding": False,
            "size": f"{info.width}x{info.height}" if info.width else None, "passthrough": True,
        })
    doc["viewers"] = svc.whep.count(entry.name)
    if svc.record is not None:
        doc["record"] = svc.record.status(entry.name)
    return doc


async def api_streams(request: web.Request) -> web.Response:
    svc = _services(request)
    _authorize(request, "list")
    docs = [stream_doc(svc, e) for e in svc.registry.entries.values() if _visible(request, e)]
    return web.json_response({"streams": docs, "server_time": time.time(), "map": map_doc(svc.config)})


def map_doc(config: Config) -> dict[str, Any]:
    tc = config.telemetry
    return {"tile_url": tc.tile_url, "attribution": tc.tile_attribution,
            "stale_after_s": tc.stale_after_s, "track_minutes": tc.track_minutes}


def _entry(request: web.Request, action: Action = "view") -> Entry:
    stream = request.match_info["stream"]
    _authorize(request, action, stream)
    entry = _services(request).registry.get(stream)
    if entry is None:
        raise RelayError(404, f"no stream {stream!r}")
    return entry


async def api_stream(request: web.Request) -> web.Response:
    return web.json_response(stream_doc(_services(request), _entry(request)))


async def api_stats(request: web.Request) -> web.Response:
    svc = _services(request)
    entry = _entry(request, "stats")
    now = time.time()
    viewers = []
    for v in svc.whep.viewers_of(entry.name).values():
        viewers.append({
            "id": v.public_id,  # never the session's secret (it ends the session)
            "who": v.who,
            "rendition": v.rendition,
            "remote": v.remote,
            "connected_s": round(now - v.started, 1),
            "rtt_ms": v.rtt_ms,
            "report": v.report,
            "report_age_s": round(now - v.report_time, 2) if v.report_time else None,
            "creep_resets": v.creep_resets,
            "auto": v.auto,
            "rendition_reason": v.rendition_reason,
            "estimate_kbps": v.estimate_kbps,
            "switches": v.switches[-10:],
            "probes": v.probes[-10:],
            "link_samples": v.samples[-10:],
            "queue": svc.whep.reader_stats(v.session),
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


MAX_TELEMETRY_BYTES = 16 * 1024
MAX_CLOCK_SKEW_S = 60.0


async def api_telemetry_post(request: web.Request) -> web.Response:
    """Telemetry from an app that has neither MAVLink nor KLV (a DJI MSDK app, a phone).

    A JSON object, or an array of up to 50, each with the fields of ``relay.telemetry.FIELDS``
    and optionally ``t`` (the time measured, Unix seconds; default: now). The publisher's
    token of the stream is needed. All or nothing: one bad sample refuses the request."""
    stream = request.match_info["stream"]
    _authorize(request, "publish", stream)
    entry = _services(request).registry.get(stream)
    if entry is None:
        raise RelayError(404, f"no stream {stream!r}")
    body = await _read_body(request, MAX_TELEMETRY_BYTES, "telemetry")
    now = time.time()
    try:
        doc = json.loads(body)
        items = doc if isinstance(doc, list) else [doc]
        if not 1 <= len(items) <= 50 or not all(isinstance(i, dict) for i in items):
            raise TelemetryError("send a JSON object or an array of 1 to 50 objects")
        updates: list[tuple[float, dict[str, float]]] = []
        for item in items:
            fields = dict(item)
            t = fields.pop("t", now)
            if isinstance(t, bool) or not isinstance(t, int | float) or abs(t - now) > MAX_CLOCK_SKEW_S:
                raise TelemetryError(f"t must be the Unix time measured, within {MAX_CLOCK_SKEW_S:.0f} s "
                                     "of the relay's clock")
            updates.append((float(t), clean_update(fields)))
    except ValueError as exc:  # TelemetryError and JSON errors alike
        entry.telemetry.bad("http")
        reason = str(exc) if isinstance(exc, TelemetryError) else "telemetry must be JSON"
        raise RelayError(422 if isinstance(exc, TelemetryError) else 400, reason) from None
    for t, fields in sorted(updates, key=lambda u: u[0]):
        entry.telemetry.update("http", fields, t=t)
    return web.Response(status=204)


async def api_telemetry(request: web.Request) -> web.Response:
    """The newest state and the track of the last minutes (the map of a page that joins)."""
    entry = _entry(request)
    tele = entry.telemetry
    return web.json_response({"stream": entry.name, "state": tele.summary(),
                              "track": tele.track_points(), "server_time": time.time(),
                              "map": map_doc(_services(request).config)},
                             headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    svc = _services(request)
    _authorize(request, "metrics")
    if svc.metrics is None:
        raise RelayError(404, "metrics are disabled")
    return web.Response(body=svc.metrics(), headers={
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def share_sessions(svc: Services, share_id: str) -> int:
    """Viewing sessions opened through one share link (its token's id)."""
    return sum(1 for sess in svc.whep.sessions.values()
               if sess.principal is not None and sess.principal.jti == share_id)


async def json_object(request: web.Request, what: str, limit: int = 4096) -> dict[str, Any]:
    """The request's body as a JSON object, or a 400 naming what it should have been."""
    try:
        doc = json.loads(await _read_body(request, limit, what))
    except ValueError:
        raise RelayError(400, f"{what} must be a JSON object") from None
    if not isinstance(doc, dict):
        raise RelayError(400, f"{what} must be a JSON object")
    return doc


def token_ttl(config: Config, ttl: Any) -> float:
    max_ttl = config.auth.jwt_max_ttl_s
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 10 <= ttl <= max_ttl:
        raise RelayError(422, f"ttl_s must be between 10 and {max_ttl:.0f}")
    return float(ttl)


def token_label(label: Any) -> str:
    if not isinstance(label, str) or len(label) > 80:
        raise RelayError(422, "label must be a string of at most 80 characters")
    return label


async def api_tokens(request: web.Request) -> web.Response:
    """Mint a signed, short-lived token (a share link's credential). Control: viewer tokens."""
    decision = _authorize(request, "mint")
    svc = _services(request)
    if not svc.config.auth.jwt_secret:
        raise RelayError(501, "signed tokens need auth.jwt_secret in the config")
    doc = await json_object(request, "token request")
    role = doc.get("role", "viewer")
    streams = doc.get("streams")
    if not isinstance(streams, list) or not streams or not all(
        isinstance(s, str) and STREAM_NAME.match(s) for s in streams
    ):
        raise RelayError(422, "streams must be a non-empty list of stream names")
    ttl = token_ttl(svc.config, doc.get("ttl_s", 3600))
    label = token_label(doc.get("label", ""))
    who = decision.principal
    if role not in ("viewer", "publisher", "control") or (
        who is not None and who.role != "admin" and role != "viewer"
    ):
        raise RelayError(403, f"role {who.role if who else '?'!r} may not mint {role!r} tokens")
    token, expires, jti = mint_token(svc.config, role, streams, ttl, label)
    log.info("token minted", extra={"by": who.name if who else "?", "role": role,
                                    "streams": ",".join(streams), "expires": expires, "jti": jti})
    return web.json_response({"token": token, "expires": expires, "role": role, "streams": streams},
                             status=201, headers={"Cache-Control": "no-store"})


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
    r.add_post(f"/api/streams/{S}/telemetry", api_telemetry_post)
    r.add_get(f"/api/streams/{S}/telemetry", api_telemetry)
    r.add_post("/api/tokens", api_tokens)
    r.add_get("/metrics", metrics)
    r.add_get("/healthz", healthz)
    r.add_get("/", _page("index.html"))
    r.add_get("/wall", _page("wall.html"))
    r.add_get(f"/view/{S}", _page("view.html"))
    r.add_get(f"/publish/{S}", _page("publish.html"))
    # Leaflet from its PyPI package (XStatic-Leaflet), not a copy in the repository.
    r.add_static("/static/leaflet/", LEAFLET_DIR, append_version=False)
    r.add_static("/static/", VIEWER_DIR, append_version=False)
