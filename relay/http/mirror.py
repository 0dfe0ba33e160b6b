"""A vehicle's record arriving at the control centre (``relay.record.mirror`` checks it).

``GET /api/mirror/<stream>``: how far this centre holds the calling vehicle's record of the
stream (``seq``, ``prev``, the key it verifies with). ``PUT /api/mirror/<stream>/<seq>``:
one manifest line (``X-Manifest-Line``, base64) and the file it seals as the body. Only a
``[[vehicles]]`` token may call them, for the streams it may publish; the vehicle is the
token's, never a name the caller gives.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

from aiohttp import web

from ..errors import RelayError
from ..record import RecordService
from ..record.mirror import Mirror, MirrorError
from .common import S, authorize, read_body, remote_of, services_of

__all__ = ["add_routes"]

log = logging.getLogger("relay.http")
MAX_FILE = 1 << 30  # a segment of a long recording at a high bitrate; refused beyond


def _mirror(request: web.Request) -> tuple[RecordService, Mirror, str]:
    stream = request.match_info["stream"]
    decision = authorize(request, "mirror", stream)
    rec = services_of(request).record
    if rec is None:
        raise RelayError(404, "this relay keeps no record ([record] enabled): nothing to send it")
    who = decision.principal
    mirror = rec.mirrors.get(who.name) if who is not None else None
    if mirror is None:  # (auth off: no vehicle can be told apart, so none is)
        raise RelayError(403, "only a [[vehicles]] token may send a record")
    return rec, mirror, stream


async def api_mirror_position(request: web.Request) -> web.Response:
    _, mirror, stream = _mirror(request)
    pos = mirror.position(stream)
    return web.json_response({"stream": stream, "vehicle": mirror.vehicle, "seq": pos.seq, "prev": pos.prev,
                              "key": mirror.fingerprint}, headers={"Cache-Control": "no-store"})


async def api_mirror_put(request: web.Request) -> web.Response:
    rec, mirror, stream = _mirror(request)
    try:
        seq = int(request.match_info["seq"])
        raw = base64.b64decode(request.headers.get("X-Manifest-Line", ""), validate=True)
    except (ValueError, binascii.Error):
        raise RelayError(400, "needs a numeric seq and X-Manifest-Line: the line, base64") from None
    if not raw or f'"seq":{seq},'.encode() not in raw:
        raise RelayError(400, f"X-Manifest-Line is not line {seq}")
    body = await read_body(request, MAX_FILE, "record file")
    gone = request.headers.get("X-File-Gone") == "1"
    try:
        kept = await asyncio.get_running_loop().run_in_executor(None, mirror.accept, stream, raw, body, gone)
    except MirrorError as exc:
        log.warning("vehicle record refused", extra={"vehicle": mirror.vehicle, "stream": stream, "seq": seq,
                                                       "status": exc.status, "reason": exc.reason})
        raise RelayError(exc.status, exc.reason) from None
    if kept and body:
        rec.log_access(action="mirror", stream=stream, vehicle=mirror.vehicle, seq=seq, bytes=len(body),
                       remote=remote_of(request))
    return web.json_response({"seq": seq, "kept": kept}, status=201 if kept else 200)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(f"/api/mirror/{S}", api_mirror_position)
    r.add_put(f"/api/mirror/{S}/{{seq:[0-9]{{1,12}}}}", api_mirror_put)
