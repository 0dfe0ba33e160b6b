"""HTTP of markers: list, place, move or relabel, remove, export (rights: :mod:`relay.auth`).

``GET /api/markers[?at=T]`` -> {markers, may_mark, recorded, kinds}: now, or as at time T
``GET /api/markers.geojson`` and ``/api/markers.kml`` (``?at=T``): for the brigade's GIS
``POST /api/markers`` {kind, label, lat, lon} (on the map) or {kind, label, stream, u, v, t}
(on the picture: the ground point under (u, v) of the frame captured at ``t``, from that
stream's telemetry at that time) -> 201 the marker
``PATCH /api/markers/<id>`` any of {kind, label, lat, lon} or {stream, u, v, t} -> the marker
``DELETE /api/markers/<id>`` -> the marker as it was (the log keeps it)

Every change reaches every viewer's data channel at once (:class:`relay.markers.MarkerBook`'s
listeners) and, with the record on, the signed marker log first.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from aiohttp import web

from ..auth import ANONYMOUS_ADMIN, Decision
from ..auth import authorize as decide
from ..config import STREAM_NAME
from ..errors import RelayError
from ..geo import ground_point
from ..markers import KINDS, MarkerBook, MarkerError, clean_fields, geojson, kml
from .common import Services, authorize, json_object, label_of, services_of, token_of
from .record import parse_when

__all__ = ["add_routes"]

log = logging.getLogger("relay.markers")
SAMPLE_WINDOW_S = 1.0  # a picture's telemetry: a sample at most this far from its capture time


def _book(request: web.Request) -> MarkerBook:
    book = services_of(request).markers
    if book is None:
        raise RelayError(404, "markers are off (markers.enabled = false)")
    return book


def _sample(svc: Services, stream: str, t: float | None) -> dict[str, Any]:
    """The telemetry of ``stream`` at capture time ``t`` (the newest when None)."""
    entry = svc.registry.get(stream)
    tele = entry.telemetry if entry is not None else None
    samples: list[dict[str, Any]] = []
    if tele is not None:
        tele.flush()
        if t is None and tele.recent and not tele.stale():
            samples = [json.loads(tele.recent[-1][2])]
        elif t is not None:
            samples = [json.loads(doc) for _, st, doc in tele.recent if abs(st - t) <= SAMPLE_WINDOW_S]
    if not samples and t is not None and svc.record is not None:  # a replayed frame
        ms = int(t * 1000)
        samples = svc.record.telemetry_track(stream, ms - 1000, ms + 1000)
    if not samples:
        raise RelayError(422, f"no telemetry for {stream!r} at that frame: the picture cannot be tied "
                              "to the ground; place the marker on the map")
    return min(samples, key=lambda s: abs(float(s.get("t", 0)) - (t or 0))) if t is not None else samples[-1]


def _number(doc: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = doc.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
        raise RelayError(422, f"{key} must be a number in {lo:g}..{hi:g}")
    return float(v)


def _on_picture(request: web.Request, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A body that names a point of a stream's picture: (stream, the body with lat/lon)."""
    stream = doc.pop("stream")
    if not isinstance(stream, str) or not STREAM_NAME.match(stream):
        raise RelayError(422, "stream must be a stream name")
    authorize(request, "view", stream)
    u, v = _number(doc, "u", -1, 1), _number(doc, "v", -1, 1)
    t = _number(doc, "t", 0, 1e11) if doc.get("t") is not None else None
    for k in ("u", "v", "t"):
        doc.pop(k, None)
    sample = _sample(services_of(request), stream, t)
    p = ground_point(sample, u, v)
    if p is None:
        raise RelayError(422, "that point of the picture is not on the ground (above the horizon, too "
                              "far, or no field of view): place the marker on the map")
    return stream, {**doc, "lat": p[0], "lon": p[1]}


async def _change_body(request: web.Request, what: str) -> tuple[str, dict[str, Any], str, MarkerBook]:
    """(stream placed on, the body, who, the book) after the rights and the rate."""
    book = _book(request)
    doc = await json_object(request, what, limit=2048)
    stream = doc.get("stream") if "stream" in doc else None
    decision = authorize(request, "mark", stream if isinstance(stream, str) else None)
    who = _who(decision)
    p = decision.principal
    svc = services_of(request)
    try:
        svc.marker_rate.take(p.jti or p.name if p is not None else who)
    except MarkerError as exc:
        raise RelayError(exc.status, exc.reason) from None
    placed_on = ""
    if "stream" in doc:
        placed_on, doc = _on_picture(request, doc)
    return placed_on, doc, who, book


def _who(decision: Decision) -> str:
    """Who a marker says placed or changed it: the token's label (or role)."""
    return "no login (auth off)" if decision.principal is ANONYMOUS_ADMIN else label_of(decision)


def _answer(exc: MarkerError) -> RelayError:
    return RelayError(exc.status, exc.reason)


async def api_place(request: web.Request) -> web.Response:
    stream, doc, who, book = await _change_body(request, "marker")
    try:
        m = book.add(clean_fields(doc, partial=False), who, stream)
    except MarkerError as exc:
        raise _answer(exc) from None
    log.info("marker placed", extra={"marker": m.id, "kind": m.kind, "by": who, "stream": stream})
    return web.json_response({**m.doc(), "n": book.version}, status=201)


async def api_change(request: web.Request) -> web.Response:
    stream, doc, who, book = await _change_body(request, "marker change")
    try:
        m = book.change(request.match_info["marker"], clean_fields(doc, partial=True), who)
    except MarkerError as exc:
        raise _answer(exc) from None
    log.info("marker changed", extra={"marker": m.id, "by": who, "stream": stream})
    return web.json_response({**m.doc(), "n": book.version})


async def api_remove(request: web.Request) -> web.Response:
    book = _book(request)
    decision = authorize(request, "mark")
    who = _who(decision)
    p = decision.principal
    try:
        services_of(request).marker_rate.take(p.jti or p.name if p is not None else who)
        m = book.remove(request.match_info["marker"], who)
    except MarkerError as exc:
        raise _answer(exc) from None
    log.info("marker removed", extra={"marker": m.id, "by": who})
    return web.json_response({**m.doc(), "removed_by": who, "n": book.version})


def _listing(request: web.Request) -> tuple[list[dict[str, Any]], MarkerBook]:
    book = _book(request)
    authorize(request, "list")
    at = parse_when(request, "at")
    return (book.listing() if at is None else book.at(at / 1000)), book


async def api_list(request: web.Request) -> web.Response:
    markers, book = _listing(request)
    svc = services_of(request)
    may = decide(svc.config, svc.shares, "mark", None, token_of(request)).allowed
    return web.json_response({"markers": markers, "version": book.version, "may_mark": may,
                              "recorded": book.recorded,
                              "kinds": list(KINDS), "lang": svc.config.markers.lang,
                              "names": dict(svc.config.markers.names), "server_time": time.time()},
                             headers={"Cache-Control": "no-store"})


def _download(body: str, kind: str, name: str) -> web.Response:
    return web.Response(text=body, content_type=kind, headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


async def api_geojson(request: web.Request) -> web.Response:
    markers, _ = _listing(request)
    return _download(json.dumps(geojson(markers)), "application/geo+json",
                     f"markers-{services_of(request).config.name}.geojson")


async def api_kml(request: web.Request) -> web.Response:
    markers, _ = _listing(request)
    name = services_of(request).config.name
    return _download(kml(markers, f"Markers ({name})"), "application/vnd.google-earth.kml+xml",
                     f"markers-{name}.kml")


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/markers", api_list)
    r.add_get("/api/markers.geojson", api_geojson)
    r.add_get("/api/markers.kml", api_kml)
    r.add_post("/api/markers", api_place)
    r.add_patch("/api/markers/{marker:[A-Za-z0-9_-]{1,16}}", api_change)
    r.add_delete("/api/markers/{marker:[A-Za-z0-9_-]{1,16}}", api_remove)
