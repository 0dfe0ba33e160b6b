"""Is the source alive? The pipeline reads source frames with a timeout from here; a
silence longer than ``signal_lost_after_s`` marks the stream LOST (viewers keep their
sessions and get the slate). Arrival statistics (frames in, fps, size) are kept here too."""

from __future__ import annotations

import logging
import time

from ..config import MediaConfig
from ..media import Unit, now
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
        """No frame within the timeout: True when the picture is gone (slate now). Media may
        still flow without decoded frames (passthrough only): then it is not lost."""
        if self.entry.state is State.LIVE:
            if now() - self.entry.last_media < self.media.signal_lost_after_s:
                return False
            self.entry.set_state(State.LOST)
            log.warning("signal lost", extra={"stream": self.entry.name,
                                              "after_s": self.media.signal_lost_after_s})
        return True

    def arrived(self, unit: Unit, was_live: bool) -> None:
        e = self.entry
        if not was_live:
            e.touch()  # live again after the hysteresis (resets passthrough viewers)
        e.frames_in += 1
        e.last_frame_time = time.time()
        frame = unit.payload
        e.width, e.height = frame.width, frame.height
        arr = self._arrivals
        arr.append(unit.arrival)
        if len(arr) > 31:
            del arr[0]
        if len(arr) >= 2 and arr[-1] > arr[0]:
            e.fps = (len(arr) - 1) / (arr[-1] - arr[0])
