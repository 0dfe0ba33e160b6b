"""Who may do what, as configured: static tokens with their roles, the vehicles allowed to
forward here, the auth switches, and who may place markers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .checks import MARKER_KINDS, ROLES, ed25519_public_pem, grant, public_url, vehicle_name
from .fields import (
    ConfigError,
    Ctx,
    choice,
    flag,
    integer,
    number,
    pairs,
    required,
    secret,
    strings,
    tables,
    text,
)

__all__ = ["AuthConfig", "MarkersConfig", "TokenConfig", "VehicleConfig", "check_tokens_unique"]


def _role(key: str, role: str) -> str:
    if role not in ROLES:
        raise ConfigError(key, f"must be one of {', '.join(ROLES)}, got {role!r}")
    return role


@dataclass(frozen=True)
class TokenConfig:
    """A static token with a role: publisher/viewer for some streams, control, admin."""

    token: str = secret()  # required: check() refuses None
    role: str = text("", check=_role)
    streams: tuple[str, ...] = strings(("*",), item=grant,
                                       what="must be an array of stream names (or \"*\" for all)")
    name: str = text("", default_from=lambda ctx: f"{ctx.given['role']}-{ctx.given['index']}")
    playback: bool = flag(False)  # may list, replay and download the record (control/admin always may)
    mark: bool = flag(False)  # may place, move and remove markers (markers.roles always may)

    def check(self, path: str, ctx: Ctx) -> None:
        if self.token is None:
            raise ConfigError(f"{path}token", "is required (token or token_env)")


@dataclass(frozen=True)
class VehicleConfig:
    """Another relay (a command vehicle's) allowed to forward its streams here and send its
    record: the token it publishes with, the public key its record is signed with."""

    name: str = required(vehicle_name)
    token: str = secret()  # required: check() refuses None
    public_key: str = text("", check=ed25519_public_pem)
    # Required: the streams this vehicle forwards (and sends the record of); "*" written out
    # means any, never implied.
    streams: tuple[str, ...] = strings((), item=grant,
                                       what="must be an array of stream names (or \"*\" for all)")

    def check(self, path: str, ctx: Ctx) -> None:
        if self.token is None:
            raise ConfigError(f"{path}token", "is required (token or token_env)")
        if not self.public_key:
            raise ConfigError(f"{path}public_key", "is required: the vehicle's record key "
                                                   "(its <record dir>/signing-key.pub.pem)")
        if not self.streams:
            raise ConfigError(f"{path}streams", "is required: the streams this vehicle forwards "
                                                "(write [\"*\"] for any)")


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = flag(False)
    publish_token: str | None = secret()  # accepted for any stream
    view_token: str | None = secret()  # accepted for any stream
    tokens: tuple[TokenConfig, ...] = tables(TokenConfig, "must be an array of tables ([[auth.tokens]])")
    jwt_secret: str | None = secret(min_len=32)  # HS256 secret for signed short-lived tokens
    jwt_max_ttl_s: float = number(7 * 86400.0, 10, 366 * 86400)
    # Share links: the book of live links (a JSON file); empty keeps it in memory, and a
    # restart then ends every share link (fail closed).
    shares_file: str = text("")
    public_url: str = text("", check=public_url)  # as phones reach it; default: the request's


def _role_item(key: str, role: str) -> None:
    _role(key, role)


MAX_KIND_NAME = 40


def _kind_name(key: str, kind: str, name: Any) -> tuple[str, str]:
    """``[markers.names]``: a brigade's own word for a kind (``hotspot = "Glutnest"``): a
    marker kind, and 1-40 printable characters."""
    if kind not in MARKER_KINDS:
        raise ConfigError(f"{key}.{kind}", f"is not a marker kind (one of {', '.join(MARKER_KINDS)})")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_KIND_NAME or not name.isprintable():
        raise ConfigError(f"{key}.{kind}", f"must be 1-{MAX_KIND_NAME} printable characters")
    return kind, name.strip()


@dataclass(frozen=True)
class MarkersConfig:
    """Markers on the ground, shared by every page: who may place them, how many, how fast."""

    enabled: bool = flag(True)
    # Roles that may place, move and remove markers; a viewer or publisher token may when it
    # is granted (``mark = true`` in [[auth.tokens]], a signed token's or share link's claim).
    roles: tuple[str, ...] = strings(("control", "admin"), item=_role_item,
                                     what="must be an array of roles")
    rate_per_min: int = integer(30, 1, 10000)  # changes a minute per token
    max: int = integer(500, 1, 100000)  # markers at once
    # The language of the kinds' names on the pages: "auto" follows each browser's language.
    lang: str = choice("auto", ("auto", "en", "de"))
    names: tuple[tuple[str, str], ...] = pairs(_kind_name, "must be a table of kind = name")


def check_tokens_unique(auth: AuthConfig, vehicles: Iterable[VehicleConfig], streams: Iterable[Any]) -> None:
    """A static token names one holder: the same token in two places would be taken as the
    first everywhere (a second stream's publish token publishing the first stream)."""
    places: list[tuple[str, str | None]] = [("auth.publish_token", auth.publish_token),
                                            ("auth.view_token", auth.view_token)]
    places += [(f"auth.tokens[{i}].token", t.token) for i, t in enumerate(auth.tokens)]
    places += [(f"vehicles[{i}].token", v.token) for i, v in enumerate(vehicles)]
    for s in streams:
        places += [(f"streams.{s.name}.publish_token", s.publish_token),
                   (f"streams.{s.name}.view_token", s.view_token)]
    seen: dict[str, str] = {}
    for key, token in places:
        if token is None:
            continue
        if token in seen:  # (the message never shows the token)
            raise ConfigError(key, f"is the same token as {seen[token]}: each token names one holder")
        seen[token] = key
