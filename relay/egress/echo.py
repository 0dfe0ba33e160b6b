"""The viewer's "echo" data channel: round trips that show a queue filling on its link."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..abr import QueueWatch
from ..media import now
from ..webrtc import RtcpTap

__all__ = ["WATCH_EVERY_S", "Echoes", "watch_queue"]

WATCH_EVERY_S = 0.1  # an auto viewer's link is watched for a standing queue this often (QueueWatch)


class Echoes:
    """Round trips to the viewer over its "echo" data channel (unordered, no retransmission:
    the page sends each message straight back). It shares the viewer's link, so a queue
    filling up on the way (a padding probe the link cannot carry) shows as a growing round
    trip, within tens of milliseconds; a lost message is simply never answered."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._n = 0
        self._sent: dict[int, float] = {}
        self.rtts: deque[tuple[float, float]] = deque(maxlen=64)  # (answered at, round trip s)
        self.watch = QueueWatch()

        @channel.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: Any) -> None:
            if (not isinstance(message, str) or len(message) > 16 or not message.isascii()
                    or not message.isdigit()):
                return
            sent = self._sent.pop(int(message), None)  # only what we sent counts, once
            if sent is not None:
                t = now()
                self.rtts.append((t, t - sent))
                self.watch.answered(sent, t)

    @property
    def open(self) -> bool:
        return bool(self.channel.readyState == "open")

    def send_text(self, text: str) -> None:
        """A message for the page (JSON, never echoed back), if the channel is open."""
        if self.open:
            self.channel.send(text)

    def send(self) -> bool:
        if not self.open:
            return False
        self._n += 1
        self._sent[self._n] = t = now()
        self.watch.sent(t)
        if len(self._sent) > 64:
            self._sent.pop(next(iter(self._sent)))
        self.channel.send(str(self._n))
        return True

    def since(self, t0: float) -> list[float]:
        """Round trips answered at or after ``t0``."""
        return [r for at, r in self.rtts if at >= t0]


async def watch_queue(echo: Echoes, tap: RtcpTap) -> None:
    """An auto viewer's link, watched for a standing queue (:class:`QueueWatch`): an echo
    every WATCH_EVERY_S (~90 bytes each way); a queue that stands, its rate measured, wakes
    the controller at once. Ends with the session (or the channel)."""
    measured = False
    while echo.channel.readyState != "closed":
        echo.send()
        # (Once the queue stands and receiver reports since cover enough of it to tell
        # the link's rate: that is the evidence.)
        standing = echo.watch.standing(now())
        ready = standing is not None and tap.delivered_pps(standing[0]) is not None
        if ready and not measured:
            tap.alarm.set()
        measured = ready
        await asyncio.sleep(WATCH_EVERY_S)
