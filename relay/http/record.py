"""HTTP for the incident record: list, clip, snapshots; every access goes to the audit log.

Listing, replaying and downloading need the "playback" permission (control, admin, or a
token granted it); taking a snapshot needs "snapshot" (anyone who may watch the stream).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import secrets
import time
from pathlib import Path

from aiohttp import web

from ..auth import Decision
from ..config import STREAM_NAME
from ..errors import RelayError
from ..record import ClipPart, RecordService, cut_clip
from ..record.layout import SNAPSHOT_NAME, iso, stamp
from .common import S, authorize, page, remote_of, services_of

__all__ = ["add_routes", "parse_when"]

log = logging.getLogger("relay.http")
MAX_CLIP_S = 600.0
CLIP_KEEP_S = 600.0  # a cut clip stays this long for range requests


def _record(request: web.Request) -> RecordService:
    rec = services_of(request).record
    if rec is None:
        raise RelayError(404, "recording is not enabled on this relay ([record] enabled)")
    return rec


def _who(decision: Decision) -> dict[str, str]:
    p = decision.principal
    return {"who": p.name if p else "?", "role": p.role if p else "?"}


def parse_when(request: web.Request, key: str, default: float | None = None) -> float | None:
    """A time from the query: ISO 8601 (``2026-11-24T10:15:00Z``) or seconds since the epoch → ms."""
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
        if not math.isfinite(value) or not 0 < value < 1e11:
            raise ValueError
        return value * 1000
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise RelayError(400, f"{key} must be ISO 8601 or seconds since the epoch, "
                              f"got {raw[:40]!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp() * 1000


async def api_recordings(request: web.Request) -> web.Response:
    rec = _record(request)
    stream = request.query.get("stream") or None
    if stream is not None and not STREAM_NAME.match(stream):
        raise RelayError(400, "stream must be a stream name")
    decision = authorize(request, "playback", stream)
    frm, to = parse_when(request, "from"), parse_when(request, "to")
    names = [stream] if stream else rec.streams()
    out = []
    for name in names:
        if decision.principal is not None and not decision.principal.covers(name):
            continue
        lo = None if frm is None else int(frm)
        hi = None if to is None else int(to)
        out.append({
            "stream": name,
            "spans": rec.spans(name, lo, hi),
            "snapshots": [{"file": Path(s.file).name, "time": iso(s.start_ms), "time_ms": s.start_ms,
                           "bytes": s.size} for s in rec.segments(name, lo, hi, kind="snapshot")],
            "status": rec.status(name),
            # The vehicle whose record of this stream is its replay here (verified on arrival).
            "vehicles": [m.vehicle for m in [rec.replays.mirror_for(name)]
                         if m is not None and m.segments(name)],
        })
    rec.log_access(action="list", stream=stream or "*", remote=remote_of(request), **_who(decision),
                   **({"from": iso(frm)} if frm else {}), **({"to": iso(to)} if to else {}))
    return web.json_response({"recordings": out, "replay_minutes": rec.config.record.replay_minutes,
                              "server_time_ms": int(time.time() * 1000)},
                             headers={"Cache-Control": "no-store"})


async def api_clip(request: web.Request) -> web.StreamResponse:
    rec = _record(request)
    stream = request.match_info["stream"]
    decision = authorize(request, "playback", stream)
    start = parse_when(request, "start")
    if start is None:
        raise RelayError(400, "start is required (ISO 8601 or seconds since the epoch)")
    try:
        duration = float(request.query.get("duration", "30"))
    except ValueError:
        raise RelayError(400, "duration must be a number of seconds") from None
    if not math.isfinite(duration) or not 0.5 <= duration <= MAX_CLIP_S:
        raise RelayError(400, f"duration must be between 0.5 and {MAX_CLIP_S:.0f} seconds")
    purpose = request.query.get("purpose", "download")
    if purpose not in ("download", "replay"):
        raise RelayError(400, "purpose must be download or replay")
    start_ms, end_ms = int(start), int(start + duration * 1000)
    # A keyframe can sit up to one segment's length before the start: look that far back.
    segs = rec.segments(stream, start_ms - int(rec.config.record.segment_s * 1000) - 5000, end_ms)
    if not segs:
        raise RelayError(404, f"nothing of {stream!r} is recorded between {iso(start_ms)} and {iso(end_ms)}")
    clips = rec.root / ".clips"
    clips.mkdir(exist_ok=True)
    out = clips / f"{stream}-{secrets.token_hex(8)}.mp4"
    parts = [ClipPart(rec.root / s.file, s.start_ms) for s in segs]
    loop = asyncio.get_running_loop()
    info = await loop.run_in_executor(None, cut_clip, parts, start_ms, end_ms, out)
    loop.run_in_executor(None, _sweep, clips)
    rec.log_access(action="replay" if purpose == "replay" else "clip", stream=stream,
                   start=iso(start_ms), duration_s=duration, remote=remote_of(request),
                   frames=info.frames, **_who(decision))
    if info.frames == 0:
        out.unlink(missing_ok=True)
        raise RelayError(404, f"no decodable picture of {stream!r} between {iso(start_ms)} and {iso(end_ms)}")
    name = f"{stream}_{stamp(info.start_ms)}_{duration:g}s.mp4"
    return web.FileResponse(out, headers={
        "Content-Type": "video/mp4",
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
        "X-Clip-Start": iso(info.start_ms),
        "X-Clip-End": iso(info.end_ms),
        "X-Clip-Frames": str(info.frames),
        "Access-Control-Expose-Headers": "X-Clip-Start, X-Clip-End, X-Clip-Frames, Content-Disposition",
    })


def _sweep(clips: Path) -> None:
    cutoff = time.time() - CLIP_KEEP_S
    for p in clips.glob("*.mp4"):
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass


async def api_track(request: web.Request) -> web.Response:
    """The recorded telemetry between ``from`` and ``to`` (default: the last 10 minutes):
    where the drone was during a replayed clip."""
    rec = _record(request)
    stream = request.match_info["stream"]
    decision = authorize(request, "playback", stream)
    now_ms = time.time() * 1000
    lo = parse_when(request, "from", now_ms - 600_000) or 0.0
    hi = parse_when(request, "to", now_ms) or now_ms
    if hi < lo or hi - lo > 24 * 3600 * 1000:
        raise RelayError(400, "from must be before to, at most 24 hours apart")
    samples = rec.telemetry_track(stream, int(lo), int(hi))
    rec.log_access(action="telemetry", stream=stream, start=iso(lo), end=iso(hi), remote=remote_of(request),
                   samples=len(samples), **_who(decision))
    return web.json_response({"stream": stream, "samples": samples}, headers={"Cache-Control": "no-store"})


async def api_take_snapshot(request: web.Request) -> web.Response:
    rec = _record(request)
    stream = request.match_info["stream"]
    decision = authorize(request, "snapshot", stream)
    svc = services_of(request)
    pipeline = svc.pipelines.get(stream)
    jpeg = await pipeline.snapshot(0) if pipeline else None
    if jpeg is None:
        raise RelayError(409, f"stream {stream!r} has no decoded picture to save yet")
    try:
        seg = await rec.save_snapshot(stream, jpeg, _who(decision)["who"])
    except OSError as exc:
        raise RelayError(507, f"snapshot not saved: {exc}") from None
    rec.log_access(action="snapshot", stream=stream, file=seg.file, remote=remote_of(request),
                   **_who(decision))
    return web.json_response({"file": Path(seg.file).name, "time": iso(seg.start_ms), "bytes": seg.size},
                             status=201)


async def api_get_snapshot(request: web.Request) -> web.StreamResponse:
    rec = _record(request)
    stream, name = request.match_info["stream"], request.match_info["name"]
    decision = authorize(request, "playback", stream)
    if not SNAPSHOT_NAME.match(name):
        raise RelayError(404, "no such snapshot")
    found = next((s for s in rec.segments(stream, kind="snapshot") if Path(s.file).name == name), None)
    if found is None:
        raise RelayError(404, "no such snapshot")
    rec.log_access(action="snapshot-view", stream=stream, file=found.file, remote=remote_of(request),
                   **_who(decision))
    return web.FileResponse(rec.root / found.file, headers={"Content-Type": "image/jpeg",
                                                            "Cache-Control": "no-store"})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/recordings", api_recordings)
    r.add_get(f"/api/recordings/{S}/clip.mp4", api_clip)
    r.add_get(f"/api/recordings/{S}/telemetry", api_track)
    r.add_get(f"/api/recordings/{S}/snapshots/{{name}}", api_get_snapshot)
    r.add_post(f"/api/streams/{S}/snapshot", api_take_snapshot)
    r.add_get("/incident", page("incident.html"))
