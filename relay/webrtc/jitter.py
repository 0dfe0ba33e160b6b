"""A video jitter buffer that releases a frame on its RTP marker bit.

aiortc's JitterBuffer only knows a frame is complete when the first packet of the *next*
frame arrives, which adds one frame interval (33 ms at 30 fps) to every ingested frame.
The marker bit (RFC 6184 §5.1 for H.264, RFC 7741 §4.1 for VP8) flags a frame's last
packet, so a contiguous run ending in a marker is complete now. A timestamp change still
completes a frame whose marker was lost.
"""

from __future__ import annotations

from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

__all__ = ["MarkerJitterBuffer", "use_marker_jitter_buffer"]


class MarkerJitterBuffer(JitterBuffer):
    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets: list[Any] = []
        timestamp = None
        if self._origin is None:
            return None
        # Padding-only packets (Chromium probes bandwidth with them, after a frame, with
        # that frame's timestamp) carry no media: drop them before looking for a frame.
        while True:
            head: Any = self._packets[self._origin % self._capacity]
            if head is None or head._data:
                break
            self.remove(1)
        origin = self._origin
        for count in range(self.capacity):
            packet = self._packets[(origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
                self.remove(count)
                return frame
            packets.append(packet)
            if packet.marker:
                frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
                self.remove(count + 1)
                return frame
        return None


def use_marker_jitter_buffer(receiver: Any) -> bool:
    """Swap a video receiver's jitter buffer before packets flow; False if aiortc changed."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, attr) or getattr(receiver, "_RTCRtpReceiver__kind", None) != "video":
        return False
    setattr(receiver, attr, MarkerJitterBuffer(capacity=512, is_video=True))
    return True
