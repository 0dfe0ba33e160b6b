"""Is the source alive? The pipeline reads source frames with a timeout from here; a
silence longer than ``signal_lost_after_s`` marks the stream LOST (viewers keep their
sessions and get the slate). Arrival statistics (frames in, fps, size) are kept here too."""

from __future__ import annotations

import logging

from ..config import MediaConfig
from ..media import Unit
from ..registry import Entry, State

__all__ = ["Liveness"]

log = logging.getLogger("relay.pipeline")


class Liveness:
    def __init__(self, entry: Entry, media: MediaConfig) -> None:
        self.entry = entry
        self.media = media
        self._arrivals: list[float] = []

    def read_timeout(self) -> float:
        """How long to wait for the next frame: until it counts as lost, or a slate frame."""
        if self.entry.state is State.LIVE:
            return self.media.signal_lost_after_s
        return 1.0 / self.media.slate_fps

    def silent(self) -> bool:
        """No frame within the timeout: True when the picture is gone (slate now); the
        entry's liveness decides (media may still flow without decoded frames)."""
        return self.entry.liveness.check()

    def arrived(self, unit: Unit, was_live: bool) -> None:
        e = self.entry
        if not was_live:
            e.touch()  # live again after the hysteresis (resets passthrough viewers)
        frame = unit.payload
        e.source_info.frame(frame.width, frame.height, unit.arrival)
