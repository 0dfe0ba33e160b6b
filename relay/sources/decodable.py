"""Whether a publisher's media makes a picture, for every source that decodes it (RTMP, and
the FFmpeg-read RTSP, MPEG-TS and RTP inputs).

A publisher that keeps sending what decodes to nothing (random NAL data) is lost like a
silent one after ``UNDECODABLE_S`` — slate for the transcoded viewers, the passthrough held
at its last good GOP — and live again with its first decodable frames. FFmpeg conceals
errors (random data yields a picture now and then, between errors), so a *clean* frame is
one that comes after three packets in a row decoded without an error. Where nothing is
decoded (passthrough only), media is all there is to go by.
"""

from __future__ import annotations

from ..media import now

__all__ = ["UNDECODABLE_S", "Decodability"]

UNDECODABLE_S = 1.0  # media that decodes to no clean frame for this long is not a live picture
CLEAN_RUN = 3


class Decodability:
    def __init__(self) -> None:
        self.first_packet: float | None = None
        self.decoded_at: float | None = None  # the last clean frame (the decoder's thread writes it)
        self.clean_run = 0  # packets decoded without an error, in a row

    def ok(self, decoding: bool) -> bool:
        """Whether media now counts as a live picture (``decoding``: frames are wanted)."""
        if not decoding:
            return True
        t = now()
        if self.first_packet is None:
            self.first_packet = t
        last = self.decoded_at if self.decoded_at is not None else self.first_packet
        return t - last < UNDECODABLE_S

    def decoded(self, frames: int, error: bool) -> None:
        """One packet through the decoder: ``frames`` it gave, or an ``error``."""
        self.clean_run = 0 if error else self.clean_run + 1
        if frames and self.clean_run >= CLEAN_RUN:
            self.decoded_at = now()
