"""Admission limits: offers per client address per minute, refusals counted for /metrics.

Pure bookkeeping (no network, no clock of its own: callers pass ``now``), so a test can
drive it directly. Sessions per client and viewers per stream are counted where the
sessions live (WHIP/WHEP); this module keeps the rate windows and the refusal counters.
"""

from __future__ import annotations

import time
from collections import Counter, deque

from .config import LimitsConfig
from .errors import RelayError

__all__ = ["Limiter"]

MAX_TRACKED_CLIENTS = 10000


class Limiter:
    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.refused: Counter[str] = Counter()
        self._offers: dict[str, deque[float]] = {}

    def refuse(self, what: str, status: int, reason: str) -> RelayError:
        """Count a refusal and return the error to raise."""
        self.refused[what] += 1
        return RelayError(status, reason)

    def offer(self, client: str, now: float | None = None) -> None:
        """Admit one SDP offer from ``client`` or raise 429."""
        t = time.monotonic() if now is None else now
        window = self._offers.get(client)
        if window is None:
            if len(self._offers) >= MAX_TRACKED_CLIENTS:
                self._prune(t)
            window = self._offers.setdefault(client, deque())
        while window and window[0] <= t - 60.0:
            window.popleft()
        if len(window) >= self.limits.offers_per_client_per_min:
            raise self.refuse("offers_per_client", 429,
                              f"too many offers from {client}: at most "
                              f"{self.limits.offers_per_client_per_min} a minute")
        window.append(t)

    def _prune(self, t: float) -> None:
        for client in [c for c, w in self._offers.items() if not w or w[-1] <= t - 60.0]:
            del self._offers[client]
