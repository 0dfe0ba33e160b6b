"""The slate: what viewers see while there is no picture ("WAITING FOR DRONE", "SIGNAL
LOST": the last frame dimmed, with the time since), and the encoder that gives "source"
(passthrough) viewers a picture when the source yields no H.264 packets to pass through
(a WHIP publisher, decoded on receipt) or no packets at all (the slate)."""

from __future__ import annotations

import time

from ..config import PASSTHROUGH, Rendition
from ..registry import Entry, State
from .encoders import EncoderPool
from .frames import FrameProcessor, Image
from .overlay import draw_slate

__all__ = ["Slate"]


class Slate:
    # Encoded at the source's size (2160: never scaled down), on the passthrough track.
    rendition = Rendition(PASSTHROUGH, 2160, 1500, "h264")

    def __init__(self, entry: Entry, pool: EncoderPool) -> None:
        self.entry = entry
        self.pool = pool
        self.on_passthrough = False  # passthrough viewers are being fed by our encoder
        self.frames = 0

    def serve_passthrough(self, renditions: list[Rendition], always: bool = False) -> None:
        """Add the passthrough encoder to ``renditions`` when "source" viewers need it:
        ``always`` for the slate; otherwise only for a source without H.264 packets."""
        pt = self.entry.passthrough
        if pt is None or not pt.readers or (not always and self.entry.slot.forwards_packets):
            return
        renditions.append(self.rendition)
        if not self.on_passthrough:
            self.on_passthrough = True
            self.pool.want_key(PASSTHROUGH)  # they change over at our first keyframe

    def source_back(self) -> object | None:
        """The source is live again: passthrough viewers resume at its next keyframe; our
        passthrough encoder (returned, to be closed in the worker) is no longer needed."""
        if self.on_passthrough and self.entry.passthrough is not None:
            self.on_passthrough = False
            self.entry.passthrough.reset()
        return self.pool.drop(PASSTHROUGH)

    def text(self) -> tuple[str, str]:
        e = self.entry
        if e.source_info.problem and e.publisher is not None:
            return "UNSUPPORTED VIDEO", f"{e.name}: {e.source_info.problem}"
        if e.state is State.LOST:  # since the last picture, not since it was called lost
            since = e.source_info.last_frame_time or e.state_since
            return "SIGNAL LOST", f"{e.name}: no picture for {time.time() - since:.0f} s"
        return "WAITING FOR DRONE", f"{e.name}: no publisher yet"

    def image(self, frames: FrameProcessor) -> tuple[Image, tuple[int, int]]:
        """The slate picture (worker thread): the last frame dimmed, or a plain card."""
        title, detail = self.text()
        w, h = frames.last_size
        return draw_slate(frames.last_image, w, h, self.entry.name, title, detail), (w, h)
