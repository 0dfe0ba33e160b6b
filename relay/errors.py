"""Errors the relay answers with: a status (HTTP-shaped) and a one-line reason."""

from __future__ import annotations

__all__ = ["RelayError"]


class RelayError(Exception):
    """A request the relay refuses; ``status`` maps to an HTTP status, ``reason`` is one line."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"RelayError({self.status}, {self.reason!r})"
