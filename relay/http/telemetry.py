"""Telemetry over HTTP: samples in from an app without MAVLink or KLV; the state and track out."""

from __future__ import annotations

import time

from aiohttp import web

from ..errors import RelayError
from ..telemetry import TelemetryError, clean_update
from ..wire import json_doc
from .common import authorize, read_body, services_of
from .streams import entry_of, map_doc

__all__ = ["api_telemetry", "api_telemetry_post"]

MAX_TELEMETRY_BYTES = 16 * 1024
MAX_CLOCK_SKEW_S = 60.0


async def api_telemetry_post(request: web.Request) -> web.Response:
    """Telemetry from an app that has neither MAVLink nor KLV (a DJI MSDK app, a phone).

    A JSON object, or an array of up to 50, each with the fields of ``relay.telemetry.FIELDS``
    and optionally ``t`` (the time measured, Unix seconds; default: now). The publisher's
    token of the stream is needed. All or nothing: one bad sample refuses the request."""
    stream = request.match_info["stream"]
    authorize(request, "publish", stream)
    entry = services_of(request).registry.get(stream)
    if entry is None:
        raise RelayError(404, f"no stream {stream!r}")
    body = await read_body(request, MAX_TELEMETRY_BYTES, "telemetry")
    now = time.time()
    try:
        doc = json_doc(body, "telemetry")
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
    entry = entry_of(request)
    tele = entry.telemetry
    return web.json_response({"stream": entry.name, "state": tele.summary(),
                              "track": tele.track_points(), "server_time": time.time(),
                              "map": map_doc(services_of(request).config)},
                             headers={"Cache-Control": "no-store"})
