"""Relay to relay: this relay forwards its streams to others (the command vehicle's to the
control centre's) over WHIP, the uplink adapting like a viewer's link.

- :mod:`.forward`: one stream to one other relay (dial, publish, redial with backoff);
- :mod:`.backfill`: its record follows, in the room the live stream leaves;
- :mod:`.pull`: a stream pulled from a WHEP server (another relay, or any).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..record import RecordService
from ..registry import Registry
from .backfill import Backfill
from .forward import Backoff, Forwarder, Refused
from .pull import WhepPull

__all__ = ["Backfill", "Backoff", "Forwarder", "Forwards", "Refused", "WhepPull"]


class Forwards:
    """Every configured forward of this relay, each running for the relay's life."""

    def __init__(self, registry: Registry, config: Config,
                 ice: Callable[[], list[dict[str, Any]]] | None = None,
                 record: RecordService | None = None) -> None:
        self.forwarders = [Forwarder(registry, config, sc, url, ice)
                           for sc in config.streams for url in sc.forward]
        # Where this relay records a forwarded stream, its record follows to each centre.
        self.backfills = [Backfill(record, f.sc, f) for f in self.forwarders
                          if record is not None and config.records(f.sc.name)]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.ensure_future(f.run()) for f in self.forwarders]
        self._tasks += [asyncio.ensure_future(b.run()) for b in self.backfills]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []

    def of(self, stream: str) -> list[dict[str, Any]]:
        out = []
        for f in self.forwarders:
            if f.sc.name == stream:
                doc = f.status()
                b = next((b for b in self.backfills if b.forwarder is f), None)
                doc["record"] = b.status() if b is not None else None
                out.append(doc)
        return out
