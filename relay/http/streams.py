"""The streams API: the listing, one stream, its viewers' stats, a snapshot; /metrics, /healthz."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..auth import Action, authenticate
from ..config import PASSTHROUGH, Config
from ..errors import RelayError
from ..registry import Entry
from .common import Services, authorize, services_of, token_of

__all__ = ["api_snapshot", "api_stats", "api_stream", "api_streams", "entry_of", "healthz", "map_doc",
           "metrics", "stream_doc"]


def visible(request: web.Request, entry: Entry) -> bool:
    # A listing shows only the streams this token may watch.
    return authenticate(services_of(request).config, "view", entry.name, token_of(request)).allowed


def stream_doc(svc: Services, entry: Entry) -> dict[str, Any]:
    doc = entry.summary()
    sc = svc.config.stream(entry.name)
    doc["title"] = (sc.title if sc else "") or entry.source_info.upstream_title
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
    if entry.passthrough is not None and entry.mode != "transcode" and entry.source_info.codec != "hevc":
        info = entry.source_info
        doc["renditions"].append({
            "name": PASSTHROUGH, "codec": "h264", "height": info.height, "bitrate_kbps": None,
            "viewers": entry.passthrough.viewer_count, "encoding": False,
            "size": f"{info.width}x{info.height}" if info.width else None, "passthrough": True,
        })
    doc["viewers"] = svc.whep.count(entry.name)
    aircraft = svc.dji.of_stream(entry.name) if svc.dji is not None else None
    if aircraft is not None:  # a DJI drone: which aircraft, lens, camera, thermal range, live state
        doc["dji"] = aircraft.doc()
    # Short of CPU: what the relay sheds for every stream, and what this stream skipped for age.
    doc["overload"] = svc.governor.doc()
    doc["skipped_for_age"] = {s.name.rsplit("/", 1)[-1]: s.stale for s in entry.all_streams()}
    pull = svc.pulls.get(entry.name)
    if pull is not None:
        doc["pull"] = pull.status()
    if svc.forwards is not None and svc.forwards.forwarders:
        doc["forwards"] = svc.forwards.of(entry.name)
    if svc.record is not None:
        doc["record"] = svc.record.status(entry.name)
    return doc


async def api_streams(request: web.Request) -> web.Response:
    svc = services_of(request)
    authorize(request, "list")
    docs = [stream_doc(svc, e) for e in svc.registry.entries.values() if visible(request, e)]
    if svc.cluster is not None:  # every node's streams, each with the node it lives on
        config, token = svc.config, token_of(request)
        docs = svc.cluster.listing(docs, lambda name: authenticate(config, "view", name, token).allowed)
    return web.json_response({"streams": docs, "server_time": time.time(), "map": map_doc(svc.config),
                              "overload": svc.governor.doc(),
                              "node": svc.cluster.me if svc.cluster is not None else svc.config.name,
                              "nodes": svc.cluster.nodes() if svc.cluster is not None else [],
                              "markers": svc.markers.listing() if svc.markers is not None else [],
                              "markers_version": svc.markers.version if svc.markers is not None else 0})


def map_doc(config: Config) -> dict[str, Any]:
    tc = config.telemetry
    return {"tile_url": tc.tile_url, "attribution": tc.tile_attribution,
            "stale_after_s": tc.stale_after_s, "track_minutes": tc.track_minutes}


def entry_of(request: web.Request, action: Action = "view") -> Entry:
    stream = request.match_info["stream"]
    authorize(request, action, stream)
    entry = services_of(request).registry.get(stream)
    if entry is None:
        raise RelayError(404, f"no stream {stream!r}")
    return entry


async def api_stream(request: web.Request) -> web.Response:
    return web.json_response(stream_doc(services_of(request), entry_of(request)))


async def api_stats(request: web.Request) -> web.Response:
    svc = services_of(request)
    entry = entry_of(request, "stats")
    now = time.time()
    viewers = []
    for v in svc.whep.viewers_of(entry.name).values():
        viewers.append({
            "id": v.public_id,  # never the session's secret (it ends the session)
            "who": v.who,
            "screen": "wall" if v.tile else "view",
            "rendition": v.rendition,
            "remote": v.remote,
            "connected_s": round(now - v.started, 1),
            "rtt_ms": v.rtt_ms,
            "report": v.report,
            "report_age_s": round(now - v.report_time, 2) if v.report_time else None,
            "creep_resets": v.creep_resets,
            "auto": v.auto,
            "relay": v.relay,  # another relay pulling (a cluster edge): keyframes outside a viewer budget
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
    entry = entry_of(request)
    pipeline = services_of(request).pipelines.get(entry.name)
    jpeg = await pipeline.snapshot() if pipeline else None
    if jpeg is None:
        raise RelayError(404, f"stream {entry.name!r} has no picture yet")
    return web.Response(body=jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    svc = services_of(request)
    authorize(request, "metrics")
    if svc.metrics is None:
        raise RelayError(404, "metrics are disabled")
    return web.Response(body=svc.metrics(), headers={
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def healthz(request: web.Request) -> web.Response:
    svc = services_of(request)
    return web.json_response({"ok": True, "uptime_s": round(time.time() - svc.started, 1)})
