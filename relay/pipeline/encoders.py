"""The encoder pool of one stream: one encoder per watched rendition, started lazily and
closed after ``ENCODER_IDLE_S`` unwatched; keyframe wishes (coalesced per rendition: many
requests before the next frame make one keyframe); the per-rendition frame-rate cap.

``watched``, ``want_key``, ``take_keys`` and ``idle`` run on the event loop; ``encode``,
``close`` in the stream's worker thread (``drop`` hands an encoder over for closing there).
"""

from __future__ import annotations

import av

from ..config import MediaConfig, Rendition
from ..media import Unit, now
from .encoder import RenditionEncoder, output_size
from .frames import Image

__all__ = ["ENCODER_IDLE_S", "EncoderPool"]

ENCODER_IDLE_S = 5.0  # keep an unwatched encoder this long before closing it


class EncoderPool:
    def __init__(self, media: MediaConfig) -> None:
        self.media = media
        self.encoders: dict[str, RenditionEncoder] = {}
        self._idle_since: dict[str, float] = {}
        self._want_key: set[str] = set()
        self._last_encoded: dict[str, float] = {}
        # When each rendition last made a keyframe: its GOP is counted in frames, and a frame
        # rate cut by the overload governor would stretch it (a sixth of 30 fps: 12 s to a
        # viewer's recovery after a loss); a keyframe is also due after keyframe_interval_s.
        self._last_key_at: dict[str, float] = {}

    # ------------------------------------------------------------------ event loop

    def watched(self, renditions: list[tuple[Rendition, bool]]) -> list[Rendition]:
        """The renditions someone reads (``(rendition, has_readers)``); the others start idling."""
        t = now()
        out = []
        for r, readers in renditions:
            if readers:
                self._idle_since.pop(r.name, None)
                out.append(r)
            else:
                self._idle_since.setdefault(r.name, t)
        return out

    def want_key(self, name: str) -> None:
        self._want_key.add(name)

    def take_keys(self, renditions: list[Rendition]) -> set[str]:
        keys = {r.name for r in renditions if r.name in self._want_key}
        self._want_key -= keys
        return keys

    def idle(self) -> list[RenditionEncoder]:
        """Encoders nobody has watched for ENCODER_IDLE_S, removed (close them in the worker)."""
        t = now()
        names = [n for n, since in self._idle_since.items()
                 if n in self.encoders and t - since > ENCODER_IDLE_S]
        return [self.encoders.pop(n) for n in names]

    def drop(self, name: str) -> RenditionEncoder | None:
        return self.encoders.pop(name, None)

    # ------------------------------------------------------------------ worker thread

    def due(self, renditions: list[Rendition], media_t: float, keys: set[str],
            divisors: dict[str, int] | None = None) -> list[Rendition]:
        """The renditions this source frame is for: each capped at max_fps / its divisor by
        media time (the overload governor's, per rendition); a wished keyframe is served at once."""
        d = divisors or {}
        return [r for r in renditions if self._rate_ok(r, media_t, d.get(r.name, 1)) or r.name in keys]

    def encode(self, img: Image, size: tuple[int, int], renditions: list[Rendition], keys: set[str],
               pts: int, timeline: dict[str, float], wall_ms: int,
               capture_ms: int | None) -> dict[str, list[Unit]]:
        """Encode one picture for each rendition given (chosen by :meth:`due`, or the slate)."""
        w, h = size
        processed = now()
        out_frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        result: dict[str, list[Unit]] = {}
        for r in renditions:
            ow, oh = output_size(w, h, r)
            enc = self.encoders.get(r.name)
            key = r.name in keys
            if enc is None or (enc.width, enc.height) != (ow, oh):
                if enc is not None:
                    enc.close()
                gop = max(1, round(self.media.keyframe_interval_s * r.max_fps))
                enc = RenditionEncoder(r, ow, oh, gop)
                self.encoders[r.name] = enc
                key = True
            if processed - self._last_key_at.get(r.name, processed) >= self.media.keyframe_interval_s:
                key = True
            f = out_frame if (ow, oh) == (w, h) else out_frame.reformat(
                width=ow, height=oh, interpolation="BILINEAR")
            packets = enc.encode(f, pts, key)
            encoded = now()
            if any(p.is_keyframe for p in packets) or r.name not in self._last_key_at:
                self._last_key_at[r.name] = encoded
            units = []
            for p in packets:
                tl = dict(timeline)
                tl["processed"] = processed
                tl["encoded"] = encoded
                units.append(Unit(p, bool(p.is_keyframe), tl, wall_ms, capture_ms))
            result[r.name] = units
        return result

    def _rate_ok(self, r: Rendition, t: float, divisor: int = 1) -> bool:
        """Cap a rendition at max_fps by media time; a source at or below it passes whole."""
        last = self._last_encoded.get(r.name)
        if last is not None and 0 <= t - last < 0.75 * divisor / r.max_fps:
            return False
        self._last_encoded[r.name] = t
        return True

    def close(self) -> None:
        for enc in self.encoders.values():
            enc.close()
        self.encoders.clear()
