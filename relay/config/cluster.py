"""``[cluster]``: identical relays sharing one directory in Redis (opt-in; no Redis: one node)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .checks import node_name
from .fields import ConfigError, Ctx, choice, number, path_or_none, secret, strings, text

__all__ = ["ClusterConfig"]


def _redis_url(key: str, url: str) -> None:
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(key, "must be a redis://, rediss:// (TLS) or unix:// URL")


def _node_url(key: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
        raise ConfigError(key, f"must be this node's base URL (https://relay-2.example:8443), got {url!r}")
    return url.rstrip("/")


def _peer(key: str, url: str) -> None:
    _node_url(key, url)


@dataclass(frozen=True)
class ClusterConfig:
    # redis://[:password@]host:6379/0 or rediss:// for TLS; give it as redis_env to keep the
    # password out of the file. Empty: no cluster (the default).
    redis: str | None = secret(min_len=8)
    redis_ca: str | None = path_or_none()  # the CA of a rediss:// server (else the system's)
    node: str = text("", check=lambda k, v: node_name(k, v) if v else v)  # default: server.name
    url: str = text("", check=lambda k, v: _node_url(k, v) if v else v)  # how nodes and viewers reach it
    # A viewer of a stream that lives on another node: "pull" serves it here (one pull per
    # stream per node), "redirect" answers 307 to the owner (RFC 9725 §4.5).
    viewers: str = choice("pull", ("pull", "redirect"))
    refresh_s: float = number(1.0, 0.2, 10)  # heartbeat and claim refresh period
    ttl_s: float = number(3.0, 0.6, 60)  # a node (and its claims) not refreshed this long is gone
    linger_s: float = number(10.0, 0, 3600)  # an edge pull nobody watches is let go after this
    peer_ca: str | None = path_or_none()  # the CA of the other nodes' HTTPS (else the system's)
    # The other nodes' URLs (their origins): a node record in Redis with any other URL is not
    # believed, so whoever can write Redis cannot point viewers' pages, redirects or this
    # node's pulls (with their minted tokens) at a host of theirs. Empty: any http(s) URL.
    peers: tuple[str, ...] = strings(item=lambda k, v: _peer(k, v))

    @property
    def enabled(self) -> bool:
        return bool(self.redis)

    def check(self, path: str, ctx: Ctx) -> None:
        if not self.redis:
            return
        _redis_url(f"{path}redis", self.redis)
        if not self.url:
            raise ConfigError(f"{path}url", "a node needs the URL other nodes and viewers reach it by")
        if self.ttl_s < 2 * self.refresh_s:
            raise ConfigError(f"{path}ttl_s", "must be at least twice refresh_s")
