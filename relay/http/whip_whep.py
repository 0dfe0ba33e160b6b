"""WHIP and WHEP (RFC 9725): offers in, answers out, sessions ended by DELETE."""

from __future__ import annotations

from aiohttp import web

from ..auth import Action, Decision, ice_servers_for, share_has_room
from ..config import Config
from ..errors import RelayError
from .common import Services, authorize, label_of, read_body, remote_of, services_of, share_sessions, token_of

__all__ = ["options", "session_options", "trickle", "whep_delete", "whep_post", "whip_delete", "whip_post"]

MAX_SDP = 64 * 1024


async def read_offer(request: web.Request) -> str:
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        raise RelayError(415, f"Content-Type must be application/sdp, got {ctype or 'none'!r}")
    body = await read_body(request, MAX_SDP, "SDP offer")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise RelayError(400, "SDP offer is not UTF-8") from None


def link_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ice_links(config: Config, label: str) -> str | None:
    """RFC 9725 §4.6: one ``Link: <url>; rel="ice-server"`` per STUN/TURN URL."""
    links = []
    for server in ice_servers_for(config, label):
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += (f"; username={link_value(server['username'])}"
                         f"; credential={link_value(server['credential'])}"
                         '; credential-type="password"')
            links.append(link)
    return ", ".join(links) or None


def created(location: str, session_id: str, answer: str, config: Config, label: str) -> web.Response:
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


def admit_offer(request: web.Request) -> None:
    limiter = services_of(request).limiter
    if limiter is not None:
        limiter.offer(remote_of(request))


async def options(request: web.Request) -> web.Response:
    """CORS pre-flight, and (with a token) the ICE servers to use before the offer is made."""
    headers = {"Accept-Post": "application/sdp", "Allow": "POST, OPTIONS"}
    if request.headers.get("Authorization") or not services_of(request).config.auth.enabled:
        action: Action = "publish" if request.path.startswith("/whip") else "view"
        decision = authorize(request, action, request.match_info["stream"])
        links = ice_links(services_of(request).config, label_of(decision))
        if links:
            headers["Link"] = links
        headers["Cache-Control"] = "no-store"
    return web.Response(status=204, headers=headers)


async def session_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Allow": "DELETE, PATCH, OPTIONS"})


async def _offered(request: web.Request, action: Action) -> tuple[str, Decision, str]:
    """An offer's common steps: may the token ``action`` the stream, the SDP body, the
    client's offer budget. Returns (stream, decision, offer)."""
    stream = request.match_info["stream"]
    svc = services_of(request)
    if svc.cluster is not None:  # a share link made on another node a moment ago
        await svc.cluster.book.learn_share(token_of(request))
    decision = authorize(request, action, stream)
    offer = await read_offer(request)
    admit_offer(request)
    return stream, decision, offer


async def whip_post(request: web.Request) -> web.Response:
    stream, decision, offer = await _offered(request, "publish")
    svc = services_of(request)
    session_id, answer = await svc.whip.publish(stream, offer, remote_of(request))
    who = decision.principal
    if who is not None and who.vehicle and svc.record is not None:
        svc.record.replays.forwarded(stream, who.name)
    return created(f"{_node(svc)}/whip/{stream}/{session_id}", session_id, answer, svc.config,
                   label_of(decision))


def _node(svc: Services) -> str:
    """A cluster node's sessions are named by its own URL: behind a load balancer the
    DELETE (or a PATCH) must reach the node that holds the session."""
    return svc.config.cluster.url if svc.cluster is not None else ""


async def whip_delete(request: web.Request) -> web.Response:
    return await _end(request, "publish")


async def whep_post(request: web.Request) -> web.Response:
    stream, decision, offer = await _offered(request, "view")
    svc = services_of(request)
    if svc.cluster is not None:  # a stream of another node: pulled here, or 307 to it
        elsewhere = await svc.cluster.serve(stream, request.query_string)
        if elsewhere is not None:
            return web.Response(status=307, headers={"Location": elsewhere, "Cache-Control": "no-store"},
                                text=f"stream {stream!r} is served by its node: {elsewhere}\n")
    rendition = request.query.get("rendition") or None
    screen = request.query.get("screen", "")
    if screen not in ("", "wall"):  # (the wall's tiles say so: the first cut when short of CPU)
        raise RelayError(400, f"screen must be 'wall' or absent, got {screen[:40]!r}")
    who = decision.principal
    if who is not None and who.share:
        room = share_has_room(who, svc.shares, share_sessions(svc, who.jti or ""))
        if not room.allowed:
            raise RelayError(room.status, room.reason)
    session_id, answer = await svc.whep.play(stream, offer, remote_of(request), rendition,
                                             principal=decision.principal, tile=screen == "wall")
    return created(f"{_node(svc)}/whep/{stream}/{session_id}", session_id, answer, svc.config,
                   label_of(decision))


async def whep_delete(request: web.Request) -> web.Response:
    return await _end(request, "view")


async def _end(request: web.Request, action: Action) -> web.Response:
    """DELETE on a session's URL: whoever may publish (WHIP) or view (WHEP) the stream and
    knows the session's secret URL ends it."""
    stream = request.match_info["stream"]
    authorize(request, action, stream)
    svc = services_of(request)
    ingest_or_egress = svc.whip if action == "publish" else svc.whep
    await ingest_or_egress.stop(stream, request.match_info["session"])
    return web.Response(status=200, text="session ended\n")


async def trickle(request: web.Request) -> web.Response:
    # Answers carry every candidate (non-trickle); RFC 9725 §4.3.1: 405 when unsupported.
    raise RelayError(405, "trickle ICE is not supported: the answer carries all candidates")
