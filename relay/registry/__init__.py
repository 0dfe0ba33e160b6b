"""Stream name → entry: one publisher, a raw source stream, one encoded stream per rendition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..config import Config
from ..errors import RelayError
from .entry import Entry, KeyframeRequests
from .parts import Liveness, PublisherSlot, SourceInfo, State

__all__ = ["Entry", "KeyframeRequests", "Liveness", "PublisherSlot", "Registry", "SourceInfo", "State"]

log = logging.getLogger("relay.registry")
WATCH_EVERY_S = 0.1


class Registry:
    """Holds the entries; creates one on first publish or from the config."""

    def __init__(self, config: Config, keyframes: KeyframeRequests | None = None) -> None:
        self.config = config
        self.keyframes = keyframes  # given to every rendition stream as it is built
        self.entries: dict[str, Entry] = {}
        self.on_created: list[Callable[[Entry], None]] = []
        self.on_removed: list[Callable[[Entry], None]] = []
        self.refused = 0  # streams not created because of limits.unconfigured_streams
        self.guard: Callable[[Entry, str], None] | None = None  # every entry's (a cluster's claims)
        # Awaited before a publisher claims a stream (a cluster: its view of the claim, fresh).
        self.confirm: Callable[[str], Awaitable[None]] | None = None

    def start(self) -> None:
        for s in self.config.streams:
            self._create(s.name, configured=True)

    async def watch(self) -> None:
        """Liveness's watchdog, for every source kind: a live stream whose media stopped
        is lost after ``signal_lost_after_s`` (whether or not anything decodes it)."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            for entry in tuple(self.entries.values()):
                if entry.state is State.LIVE:
                    entry.liveness.check()

    async def ready_to_claim(self, name: str) -> Entry:
        """The entry a publisher is about to claim, with the cluster's view of it fresh."""
        if self.confirm is not None:
            await self.confirm(name)
        return self.get_or_create(name)

    def get(self, name: str) -> Entry | None:
        return self.entries.get(name)

    def get_or_create(self, name: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            configured = self.config.stream(name) is not None
            if not configured and self.unconfigured_count() >= self.config.limits.unconfigured_streams:
                self.refused += 1
                raise RelayError(503, f"no room for stream {name!r}: "
                                      f"{self.config.limits.unconfigured_streams} unconfigured streams "
                                      "exist (limits.unconfigured_streams)")
            entry = self._create(name, configured=configured)
        return entry

    def unconfigured_count(self) -> int:
        return sum(1 for e in self.entries.values() if not e.configured)

    def _create(self, name: str, configured: bool) -> Entry:
        entry = Entry(name, self.config, configured, self.keyframes)
        entry.guard = self.guard
        self.entries[name] = entry
        for cb in tuple(self.on_created):
            cb(entry)
        return entry

    def remove(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is None:
            return
        for cb in tuple(self.on_removed):
            cb(entry)
        entry.source.close()
        for s in entry.renditions.values():
            s.close()
        if entry.passthrough is not None:
            entry.passthrough.close()
