"""Checks of single values the schema's fields use (URLs, addresses, names)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from .fields import STREAM_NAME, ConfigError, as_str, is_ip

PASSTHROUGH = "source"  # the rendition name of forwarded source packets
SOURCE_SCHEMES = ("rtsp://", "rtsps://", "udp://", "rtp://", "srt://", "whep+http://", "whep+https://")
ROLES = ("publisher", "viewer", "control", "admin")
# What a marker on the ground may be (relay/markers.py; the pages draw a symbol for each).
MARKER_KINDS = ("person", "hotspot", "hazard", "access", "water", "note")
ICE_URL = re.compile(r"^(stun|stuns|turn|turns):[^\s?]+(\?transport=(udp|tcp))?$")
IFACE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,14}$")
TURN_URLS = "must be stun:/turn:/turns: URLs (turn:host:3478?transport=tcp)"


def rendition_name(key: str, value: Any) -> str:
    name = as_str(key, value)
    if not STREAM_NAME.match(name):
        raise ConfigError(key, f"must match {STREAM_NAME.pattern}, got {name!r}")
    if name == PASSTHROUGH:
        raise ConfigError(key, f"{PASSTHROUGH!r} is reserved for passthrough")
    return name


def stream_name(key: str, name: str) -> None:
    if not STREAM_NAME.match(name):
        raise ConfigError(key, f"stream name must match {STREAM_NAME.pattern}")


def ip_or_iface(key: str, value: str) -> None:
    if not is_ip(value) and not IFACE.match(value):
        raise ConfigError(key, f"not an IP address or interface name: {value!r}")


def ip(key: str, value: str) -> None:
    if not is_ip(value):
        raise ConfigError(key, f"not an IP address: {value!r}")


def network(key: str, value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(key, f"not an address or network: {value!r}") from None


def grant(key: str, value: str) -> None:
    if value != "*" and not STREAM_NAME.match(value):
        raise ConfigError(key.rsplit("[", 1)[0], "must be an array of stream names (or \"*\" for all)")


def ice_url(key: str, value: str) -> None:
    if not ICE_URL.match(value):
        raise ConfigError(key.rsplit("[", 1)[0], TURN_URLS)


def stun_url(key: str, value: str) -> None:
    if not ICE_URL.match(value):
        raise ConfigError(key.rsplit("[", 1)[0], "must be an array of 'stun:host:port' URLs")


def source(key: str, source: str) -> str:
    if not source.startswith(SOURCE_SCHEMES):
        raise ConfigError(key, f"must start with one of {SOURCE_SCHEMES}, got {source!r}")
    try:
        parsed = urlsplit(source)
        port = parsed.port
    except ValueError as exc:
        raise ConfigError(key, f"not a valid URL: {exc}") from None
    if not parsed.hostname or (not source.startswith(("rtsp", "whep")) and not port):
        raise ConfigError(key, "needs a host and a port (e.g. udp://0.0.0.0:5600)")
    return source


def vehicle_name(key: str, value: Any) -> str:
    return node_name(key, as_str(key, value))


def ed25519_public_pem(key: str, path: str) -> str:
    """A vehicle's record key: a PEM file holding an Ed25519 public key (never its private half)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not path:
        raise ConfigError(key, "is required: the vehicle's record key (its <record dir>/signing-key.pub.pem)")
    try:
        data = open(path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" in data:
        raise ConfigError(key, f"{path!r} holds a private key: give the vehicle's public key "
                               "(its record's signing-key.pub.pem)")
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(key, f"{path!r} is not a PEM public key") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigError(key, f"{path!r} is not an Ed25519 public key (a relay's record key is)")
    return path


def node_name(key: str, name: str) -> str:
    if not STREAM_NAME.match(name):
        raise ConfigError(key, f"must match {STREAM_NAME.pattern}, got {name!r}")
    return name


def forward_url(key: str, url: str) -> None:
    """Where a stream is forwarded: another relay's WHIP endpoint for it."""
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise ConfigError(key, f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not parsed.path.strip("/"):
        raise ConfigError(key, f"must be an http(s) WHIP URL (https://centre:8443/whip/drone1), got {url!r}")


def sha256_pin(key: str, value: str) -> str:
    """A certificate's SHA-256 fingerprint: 64 hex digits (colons allowed)."""
    digits = value.replace(":", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ConfigError(key, "must be a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return digits


def mavlink(key: str, url: str) -> str:
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError as exc:
        raise ConfigError(key, f"not a valid URL: {exc}") from None
    if parsed.scheme != "mavlink+udp" or not parsed.hostname or not port:
        raise ConfigError(key, "must be mavlink+udp://HOST:PORT "
                               f"(e.g. mavlink+udp://0.0.0.0:14550), got {url!r}")
    return url


def public_url(key: str, url: str) -> str:
    url = url.rstrip("/")
    if url and not url.startswith(("https://", "http://")):
        raise ConfigError(key, "must start with https:// (or http://)")
    return url


def tile_url(key: str, url: str) -> str:
    if url and (not url.startswith(("https://", "http://"))
                or not all(k in url for k in ("{z}", "{x}", "{y}"))):
        raise ConfigError(key, "must be an http(s) URL with {z}, {x} and {y}, "
                               "e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    return url


def even(key: str, height: int) -> int:
    if height % 2:
        raise ConfigError(key, f"must be even, got {height}")
    return height


def lower(allowed: tuple[str, ...], what: str) -> Any:
    def check(key: str, value: str) -> str:
        v = value.lower()
        if v not in allowed:
            raise ConfigError(key, f"must be {what}, got {v!r}")
        return v
    return check
