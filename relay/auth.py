"""Who may publish or view which stream: a decision with a precise reason."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from .config import Config

__all__ = ["Decision", "authenticate", "bearer_token"]

Action = Literal["publish", "view"]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int = 200
    reason: str = ""


ALLOW = Decision(True)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(config: Config, action: Action, stream: str, token: str | None) -> Decision:
    if not config.auth.enabled:
        return ALLOW
    accepted: list[str] = []
    sc = config.stream(stream)
    if action == "publish":
        if sc is not None and sc.publish_token:
            accepted.append(sc.publish_token)
        if config.auth.publish_token:
            accepted.append(config.auth.publish_token)
    else:
        if sc is not None and sc.view_token:
            accepted.append(sc.view_token)
        if config.auth.view_token:
            accepted.append(config.auth.view_token)
        # Whoever may publish a stream may also watch it.
        if sc is not None and sc.publish_token:
            accepted.append(sc.publish_token)
        if config.auth.publish_token:
            accepted.append(config.auth.publish_token)
    if token is None:
        return Decision(False, 401, f"{action} of {stream!r} needs an Authorization: Bearer token")
    if not accepted:
        return Decision(False, 403, f"no {action} token is configured for stream {stream!r}")
    ok = False
    for candidate in accepted:
        # Compare with every candidate, constant time each.
        ok |= hmac.compare_digest(token.encode(), candidate.encode())
    if not ok:
        return Decision(False, 403, f"token does not allow {action} of {stream!r}")
    return ALLOW
