"""One stream's recorder: a reader of the hub like a viewer, feeding its segment writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..aio import within
from ..registry import Entry, State
from ..stream import Reader, Stream
from .writer import SegmentWriter

if TYPE_CHECKING:
    from .service import RecordService

__all__ = ["Segment", "StreamRecorder"]

log = logging.getLogger("relay.record")


@dataclass
class Segment:
    file: str  # relative to the record's root
    start_ms: int
    end_ms: int
    size: int
    kind: str = "segment"  # or "snapshot"
    open: bool = False  # still being written


@dataclass
class StreamRecorder:
    """Feeds one stream's writer from the hub; decides which stream to record."""

    service: RecordService
    entry: Entry
    writer: SegmentWriter
    task: asyncio.Task[None] | None = None
    recording_from: str = ""  # "source" or a rendition name
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # state, publisher or pause

    def choose(self) -> tuple[Stream, str] | None:
        e = self.entry
        if e.passthrough is not None and e.slot.forwards_packets and e.source_info.codec in ("", "h264"):
            return e.passthrough, "source"
        for r in self.service.config.renditions:  # the best H.264 rung
            if r.codec == "h264" and r.name in e.renditions:
                return e.renditions[r.name], r.name
        return None

    def should_record(self) -> bool:
        return self.entry.state is State.LIVE and self.entry.publisher is not None \
            and not self.service.paused

    async def run(self) -> None:
        while True:
            while not self.should_record():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await within(1.0, self.changed.wait())
            choice = self.choose()
            if choice is None:
                log.warning("nothing to record (no H.264 rendition)", extra={"stream": self.entry.name})
                await asyncio.sleep(5)
                continue
            stream, name = choice
            publisher = self.entry.publisher
            reader = stream.subscribe("record", maxlen=self.service.config.record.queue_frames,
                                      viewer=False)
            self.recording_from = name
            reason = "publisher left"
            try:
                reason = await self._pump(reader, publisher)
            finally:
                reader.close()
                self.recording_from = ""
                self.writer.cut(reason)

    async def _pump(self, reader: Reader, publisher: str | None) -> str:
        while True:
            if self.service.paused:
                return "recording paused: " + self.service.paused
            if self.entry.state is not State.LIVE:
                return f"stream {self.entry.state.value}"
            if self.entry.publisher != publisher:
                return "publisher changed"
            try:
                unit = await within(0.5, reader.get())
            except TimeoutError:
                continue
            packet = unit.payload
            pts = int(packet.pts) if packet.pts is not None else 0
            wall = unit.arrival_wall_ms or int(time.time() * 1000)
            self.writer.put(bytes(packet), pts, unit.keyframe, wall)
