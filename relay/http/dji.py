"""DJI drones over the DJI Cloud API (relay/dji/): their state, live control, Pilot 2's page.

``GET /api/dji`` -> the broker connection and every aircraft (those the token may watch)
``GET /api/dji/<stream>`` -> the stream's aircraft (lens, camera, live state) and ``may_control``
``POST /api/dji/<stream>`` {"action": "start"|"stop"|"lens"|"quality", "lens", "quality"}
    (control role): the service sent to the aircraft, its reply in words
``GET /api/dji/pilot`` -> what DJI Pilot 2's page needs to join (publisher or admin token)
``GET /dji`` -> that page (Pilot 2 -> Cloud Service -> Open Platform opens it)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import authorize as decide
from ..config import STREAM_NAME
from ..dji import DjiError, DjiPlatform
from ..errors import RelayError
from .common import S, authorize, json_object, page, services_of, token_of

__all__ = ["add_routes"]


def _platform(request: web.Request) -> DjiPlatform:
    dji = services_of(request).dji
    if dji is None:
        raise RelayError(404, "DJI is off (no [dji] broker in the config)")
    return dji


def _stream(request: web.Request) -> str:
    stream = request.match_info["stream"]
    if not STREAM_NAME.match(stream):
        raise RelayError(404, "no such stream")
    return stream


async def api_dji(request: web.Request) -> web.Response:
    dji = _platform(request)
    authorize(request, "list")
    svc = services_of(request)
    doc = dji.status()
    token = token_of(request)
    doc["aircraft"] = [a for a in doc["aircraft"]
                       if a["stream"] and decide(svc.config, svc.shares, "view", a["stream"], token).allowed]
    return web.json_response(doc, headers={"Cache-Control": "no-store"})


async def api_dji_stream(request: web.Request) -> web.Response:
    dji, stream = _platform(request), _stream(request)
    authorize(request, "view", stream)
    a = dji.of_stream(stream)
    if a is None:
        raise RelayError(404, f"no DJI aircraft for {stream!r}")
    svc = services_of(request)
    may = decide(svc.config, svc.shares, "camera", stream, token_of(request)).allowed
    return web.json_response({**a.doc(), "may_control": may, "connected": dji.connected},
                             headers={"Cache-Control": "no-store"})


def _action(doc: dict[str, Any]) -> tuple[str, str | None, int | None]:
    action = doc.get("action")
    if action not in ("start", "stop", "lens", "quality"):
        raise RelayError(422, "action must be start, stop, lens or quality")
    lens = doc.get("lens")
    if action == "lens" and lens not in ("normal", "wide", "zoom", "ir"):
        raise RelayError(422, "lens must be normal, wide, zoom or ir")
    quality = doc.get("quality")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)
                                or not 0 <= quality <= 4):
        raise RelayError(422, "quality must be 0 (adaptive) .. 4 (UHD)")
    if action == "quality" and quality is None:
        raise RelayError(422, "quality must be 0 (adaptive) .. 4 (UHD)")
    return action, lens, quality


async def api_dji_control(request: web.Request) -> web.Response:
    dji, stream = _platform(request), _stream(request)
    authorize(request, "camera", stream)
    action, lens, quality = _action(await json_object(request, "DJI control"))
    try:
        out = await dji.live(stream, action, lens=lens, quality=quality)
    except DjiError as e:
        raise RelayError(e.status, e.reason) from None
    return web.json_response(out, status=200 if out["result"] == 0 else 502)


async def api_dji_pilot(request: web.Request) -> web.Response:
    """For DJI Pilot 2's page: the app's license and the broker account the remote
    controller joins with (credentials: only to a publisher's or admin's token)."""
    dji = _platform(request)
    authorize(request, "publish")
    cfg = dji.dji
    if not (cfg.app_id and cfg.app_key and cfg.app_license and cfg.pilot_password):
        raise RelayError(409, "DJI Pilot 2 cannot join yet: [dji] needs app_id_env, app_key_env, "
                              "app_license_env and pilot_password_env")
    broker = cfg.pilot_broker or cfg.broker
    host = broker.replace("mqtts://", "ssl://").replace("mqtt://", "tcp://")
    return web.json_response({"app_id": cfg.app_id, "app_key": cfg.app_key, "license": cfg.app_license,
                              "thing": {"host": host, "username": cfg.pilot_username,
                                        "password": cfg.pilot_password},
                              "platform": services_of(request).config.name},
                             headers={"Cache-Control": "no-store"})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/dji", api_dji)
    r.add_get("/api/dji/pilot", api_dji_pilot)
    r.add_get(f"/api/dji/{S}", api_dji_stream)
    r.add_post(f"/api/dji/{S}", api_dji_control)
    r.add_get("/dji", page("dji.html"))
