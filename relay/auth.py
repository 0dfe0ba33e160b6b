"""Who may do what: roles, static and signed tokens, one decision with a precise reason.

Roles (``config.ROLES``):

- ``publisher``: publish (and watch) its streams;
- ``viewer``: watch its streams;
- ``control``: the control centre — watch every stream, per-viewer stats, ``/metrics``,
  mint short-lived viewer tokens (share links), drive a DJI drone's camera (``camera``:
  start and stop its stream, switch lens and quality);
- ``admin``: everything.

A token is either static (``[auth]`` tokens, per-stream ``publish_token``/``view_token``,
``[[auth.tokens]]`` with a role) or a JWT signed with ``auth.jwt_secret`` (HS256) carrying
``role``, ``streams`` and ``exp``. Every comparison with a static token is constant-time and
every candidate is compared, so timing tells nothing about which token nearly matched.
Nothing else in the relay decides who may do what.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt

from .config import ROLES, Config, IceServer
from .share import ShareBook

__all__ = [
    "Action",
    "Decision",
    "Principal",
    "authenticate",
    "authorize",
    "bearer_token",
    "ice_servers_for",
    "identify",
    "may_mint",
    "mint_token",
    "public_id",
    "share_has_room",
]

Action = Literal["publish", "view", "stats", "metrics", "mint", "list", "playback", "snapshot", "mirror",
                 "mark", "camera"]

# Which roles may perform an action (stream scope is checked separately).
_ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "publisher": frozenset({"publish", "view", "list", "snapshot"}),
    "viewer": frozenset({"view", "list", "snapshot"}),
    "control": frozenset({"view", "list", "stats", "metrics", "mint", "snapshot", "playback", "camera"}),
    "admin": frozenset({"publish", "view", "list", "stats", "metrics", "mint", "snapshot", "playback",
                        "camera"}),
}
# "playback" (list, replay and download the record) is a permission of its own: control and
# admin have it; a publisher's or viewer's token has it only when granted (``playback = true``
# in [[auth.tokens]], or a signed token's ``playback`` claim), e.g. an incident commander's.
_ALL_STREAMS_ROLES = frozenset({"control", "admin"})


@dataclass(frozen=True)
class Principal:
    role: str
    streams: tuple[str, ...] = ("*",)
    name: str = ""
    expires: float | None = None
    jti: str | None = None
    playback: bool = False
    share: bool = False  # from a share link: honoured only while the link is in the share book
    vehicle: bool = False  # a [[vehicles]] token: may also send that vehicle's record ("mirror")
    mark: bool = False  # granted: may place, move and remove markers whatever its role
    node: str = ""  # a cluster node's pull (signed by the cluster): a relay, not a person

    def covers(self, stream: str | None) -> bool:
        if stream is None or self.role in _ALL_STREAMS_ROLES:
            return True
        return "*" in self.streams or stream in self.streams

    def may(self, action: Action, stream: str | None = None) -> bool:
        if action == "mirror":  # only a vehicle, for the streams it may publish
            return self.vehicle and self.covers(stream)
        granted = action in _ROLE_ACTIONS.get(self.role, frozenset()) or (
            action == "playback" and self.playback and self.role in ("viewer", "publisher"))
        return granted and self.covers(stream)


ANONYMOUS_ADMIN = Principal("admin", name="auth disabled")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int = 200
    reason: str = ""
    principal: Principal | None = field(default=None, compare=False)


def public_id(session_secret: str) -> str:
    """A session's id for stats, metrics and logs: derived from, never revealing, its secret."""
    return hashlib.sha256(session_secret.encode()).hexdigest()[:12]


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _static(config: Config) -> Iterable[tuple[str, Principal]]:
    a = config.auth
    if a.publish_token:
        yield a.publish_token, Principal("publisher", ("*",), "auth.publish_token")
    if a.view_token:
        yield a.view_token, Principal("viewer", ("*",), "auth.view_token")
    for t in a.tokens:
        yield t.token, Principal(t.role, t.streams, t.name, playback=t.playback, mark=t.mark)
    for v in config.vehicles:
        yield v.token, Principal("publisher", v.streams, v.name, vehicle=True)
    for s in config.streams:
        if s.publish_token:
            yield s.publish_token, Principal("publisher", (s.name,), f"streams.{s.name}.publish_token")
        if s.view_token:
            yield s.view_token, Principal("viewer", (s.name,), f"streams.{s.name}.view_token")


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def identify(config: Config, token: str | None) -> Principal | Decision:
    """The principal a token stands for, or a refusal (401 no token, 403 unknown/expired)."""
    if not config.auth.enabled:
        return ANONYMOUS_ADMIN
    if token is None:
        return Decision(False, 401, "this needs an Authorization: Bearer token")
    if config.auth.jwt_secret and _looks_like_jwt(token):
        return _verify_jwt(config, token)
    found: Principal | None = None
    given = token.encode()
    for candidate, principal in _static(config):
        # Compare with every candidate, constant time each; keep the first match.
        if hmac.compare_digest(given, candidate.encode()) and found is None:
            found = principal
    if found is None:
        return Decision(False, 403, "token not recognised")
    return found


def _verify_jwt(config: Config, token: str) -> Principal | Decision:
    secret = config.auth.jwt_secret
    assert secret is not None
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=5,
            options={"require": ["exp", "iat", "role", "streams"]},
        )
    except jwt.ExpiredSignatureError:
        return Decision(False, 403, "signed token has expired")
    except jwt.InvalidTokenError as exc:
        return Decision(False, 403, f"signed token rejected: {exc}")
    role = claims.get("role")
    streams = claims["streams"]  # required: a token without it must not mean "every stream"
    if role not in ROLES:
        return Decision(False, 403, f"signed token has an unknown role {role!r}")
    if isinstance(streams, str):
        streams = [streams]
    if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
        return Decision(False, 403, "signed token's streams claim must be a list of names")
    exp, iat = float(claims["exp"]), float(claims["iat"])
    if exp - iat > config.auth.jwt_max_ttl_s + 5:
        return Decision(False, 403, "signed token lives longer than auth.jwt_max_ttl_s allows")
    share = claims.get("share") is True
    node = claims.get("node", "")
    if not isinstance(node, str) or len(node) > 64 or (node and (role != "viewer" or share)):
        return Decision(False, 403, "signed token: a node claim names a cluster node's viewer pull")
    if share and (role != "viewer" or len(streams) != 1 or not claims.get("jti")):
        return Decision(False, 403, "signed token: a share link is a viewer of one stream")
    return Principal(role, tuple(streams), str(claims.get("sub", "jwt")), exp,
                     str(claims.get("jti")) if claims.get("jti") else None,
                     playback=claims.get("playback") is True, share=share, mark=claims.get("mark") is True,
                     node=node)


def authenticate(
    config: Config, action: Action, stream: str | None, token: str | None
) -> Decision:
    """May the holder of ``token`` perform ``action`` on ``stream``? Allowed or status + reason."""
    who = identify(config, token)
    if isinstance(who, Decision):
        what = f"{action} of {stream!r}" if stream else action
        reason = who.reason
        if who.status == 401:
            reason = f"{what} needs an Authorization: Bearer token"
        return Decision(False, who.status, reason)
    if action == "mark":  # markers: the configured roles, admin, and tokens granted it
        if (who.mark or who.role == "admin" or who.role in config.markers.roles) and who.covers(stream):
            return Decision(True, principal=who)
        what = f"place or change markers on {stream!r}" if stream else "place or change markers"
        return Decision(False, 403, f"role {who.role!r} ({who.name}) may not {what}", who)
    if who.may(action, stream):
        return Decision(True, principal=who)
    what = f"{action} {stream!r}" if stream else f"use {action}"
    return Decision(False, 403, f"role {who.role!r} ({who.name}) may not {what}", who)


def authorize(config: Config, shares: ShareBook, action: Action, stream: str | None,
              token: str | None) -> Decision:
    """:func:`authenticate`, and a share link's token only while its link is in the book."""
    decision = authenticate(config, action, stream, token)
    who = decision.principal
    if decision.allowed and who is not None and who.share and shares.active(who.jti) is None:
        share = shares.get(who.jti)
        return Decision(False, 403, "this share link was revoked" if share is not None and share.revoked
                        else "this share link has expired or is unknown", who)
    return decision


def may_mint(who: Principal | None, role: str) -> Decision:
    """Who may mint a signed token of ``role``: control mints viewer tokens (share links),
    admin also publisher and control tokens."""
    if role not in ("viewer", "publisher", "control") or (
        who is not None and who.role != "admin" and role != "viewer"
    ):
        return Decision(False, 403, f"role {who.role if who else '?'!r} may not mint {role!r} tokens", who)
    return Decision(True, principal=who)


def share_has_room(who: Principal | None, shares: ShareBook, sessions: int) -> Decision:
    """A share link with a viewer cap admits a new session while ``sessions`` (its open
    ones) are under the cap."""
    share = shares.active(who.jti) if who is not None and who.share else None
    if share is not None and share.max_viewers and sessions >= share.max_viewers:
        return Decision(False, 429, f"this share link allows {share.max_viewers} viewer(s) at a time", who)
    return Decision(True, principal=who)


def mint_token(
    config: Config, role: str, streams: Iterable[str], ttl_s: float, label: str = "",
    now: float | None = None, share: bool = False, mark: bool = False, node: str = "",
) -> tuple[str, float, str]:
    """A signed token (JWT, HS256); returns (token, expiry, jti). ``node``: minted by this
    cluster node for its own pull (never through the HTTP API)."""
    secret = config.auth.jwt_secret
    if not secret:
        raise ValueError("auth.jwt_secret is not configured")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    t = time.time() if now is None else now
    ttl = min(float(ttl_s), config.auth.jwt_max_ttl_s)
    jti = secrets.token_urlsafe(12)
    claims = {"role": role, "streams": list(streams), "iat": int(t), "exp": int(t + ttl),
              "sub": label or role, "jti": jti}
    if share:
        claims["share"] = True
    if mark:
        claims["mark"] = True
    if node:
        claims["node"] = node
    return jwt.encode(claims, secret, algorithm="HS256"), int(t + ttl), jti


def turn_rest_credentials(server: IceServer, label: str, now: float | None = None) -> tuple[str, str]:
    """coturn's ``use-auth-secret`` credentials: user ``expiry:label``, HMAC-SHA1 password."""
    assert server.secret is not None
    expiry = int((time.time() if now is None else now) + server.ttl_s)
    # coturn refuses a user part with spaces or odd characters: keep it to a safe alphabet.
    user = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:32] or "user"
    username = f"{expiry}:{user}"
    digest = hmac.new(server.secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(config: Config, label: str = "relay") -> list[dict[str, Any]]:
    """The ICE servers a client (or the relay's own peer) should use, credentials filled in."""
    out: list[dict[str, Any]] = []
    for s in config.webrtc.ice_servers:
        doc: dict[str, Any] = {"urls": list(s.urls)}
        if s.secret is not None:
            doc["username"], doc["credential"] = turn_rest_credentials(s, label)
        elif s.username is not None:
            doc["username"], doc["credential"] = s.username, s.credential
        out.append(doc)
    out.extend({"urls": [u]} for u in config.webrtc.stun_servers)
    return out
