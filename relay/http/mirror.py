"""A vehicle's record arriving at the control centre (``relay.record.mirror`` checks it).

``GET /api/mirror/<stream>``: how far this centre holds the calling vehicle's record of the
stream (``seq``, ``prev``, the key it verifies with). ``PUT /api/mirror/<stream>/<seq>``:
one manifest line (``X-Manifest-Line``, base64) and the file it seals as the body — the line
verified before the body is read, the body streamed to disk, bounded by the size the line
seals and by a stall timeout. Only a
``[[vehicles]]`` token may call them, for the streams it may publish; the vehicle is the
token's, never a name the caller gives.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from pathlib import Path

from aiohttp import web

from ..aio import within
from ..errors import RelayError
from ..record import RecordService
from ..record.mirror import Arrival, Mirror, MirrorError
from .common import S, authorize, remote_of, services_of

__all__ = ["add_routes"]

log = logging.getLogger("relay.http")
STALL_S = 30.0  # a body with nothing new this long: the vehicle's link is gone, the slot freed
WRITE_BYTES = 1 << 20  # a body is written in pieces of this size, in a worker thread


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
    gone = request.headers.get("X-File-Gone") == "1"
    loop = asyncio.get_running_loop()
    try:
        # The line first: nothing of the body is read for a line that does not verify.
        arrival = await loop.run_in_executor(None, mirror.check, stream, raw, gone)
        if arrival is None:
            return web.json_response({"seq": seq, "kept": False}, status=200)
        tmp, digest, size = await _receive(request, mirror, arrival)
        kept = await loop.run_in_executor(None, mirror.commit, arrival, tmp, digest, size)
    except MirrorError as exc:  # the line's, the body's (413, 408, 422, 400) or the keeping's
        mirror.refuse(exc)
        log.warning("vehicle record refused", extra={"vehicle": mirror.vehicle, "stream": stream, "seq": seq,
                                                       "status": exc.status, "reason": exc.reason})
        raise RelayError(exc.status, exc.reason) from None
    if kept and size:
        rec.log_access(action="mirror", stream=stream, vehicle=mirror.vehicle, seq=seq, bytes=size,
                       remote=remote_of(request))
    return web.json_response({"seq": seq, "kept": kept}, status=201 if kept else 200)


async def _receive(request: web.Request, mirror: Mirror, arrival: Arrival) -> tuple[Path | None, str, int]:
    """The body, streamed to a temporary file beside its place and hashed on the way: never
    more than the line seals (413), never a stalled sender holding a slot for ever (408)."""
    want = arrival.size if arrival.path is not None else 0
    if request.content_length is not None and request.content_length != want:
        raise MirrorError(422, f"line {arrival.seq} seals {want} bytes; "
                               f"the body has {request.content_length}")
    if arrival.path is None:
        if await within(STALL_S, request.content.read(1)):
            raise arrival.stray_body()
        return None, "", 0
    tmp = mirror.part(arrival)
    digest, size = hashlib.sha256(), 0
    loop = asyncio.get_running_loop()
    held = bytearray()  # at most WRITE_BYTES before it goes to disk, off the event loop
    try:
        with tmp.open("wb") as f:
            while True:
                try:
                    chunk = await within(STALL_S, request.content.readany())
                except TimeoutError:
                    raise MirrorError(408, f"line {arrival.seq}: the file stopped coming "
                                           f"({size} of {want} bytes, nothing for {STALL_S:.0f} s)") from None
                size += len(chunk)
                if size > want:
                    raise MirrorError(413, f"line {arrival.seq} seals {want} bytes; more came")
                digest.update(chunk)
                held += chunk
                if held and (not chunk or len(held) >= WRITE_BYTES):
                    await loop.run_in_executor(None, f.write, bytes(held))
                    held.clear()
                if not chunk:
                    break
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest(), size


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(f"/api/mirror/{S}", api_mirror_position)
    r.add_put(f"/api/mirror/{S}/{{seq:[0-9]{{1,12}}}}", api_mirror_put)
