"""What a viewer's link showed, smoothed in one place: from the sender's own counters
(packets and bytes sent, a media packet's size) and the viewer's receiver reports (loss
over a window that covers enough packets). Pure: the caller passes the times and counters."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LinkEstimate", "loss_over"]


def loss_over(hist: deque[tuple[float, int, int]], t: float, min_s: float = 1.0,
              min_packets: int = 30) -> float | None:
    """Loss from cumulative receiver-report counters ``(time, lost, expected)`` over at
    least ``min_s`` and ``min_packets`` (one report often covers a handful of packets: one
    lost is not 25 %)."""
    if len(hist) < 2:
        return None
    _, lost1, exp1 = hist[-1]
    for t0, lost0, exp0 in reversed(hist):
        expected = exp1 - exp0
        if t - t0 >= min_s and expected >= min_packets:
            return max(0.0, min(1.0, (lost1 - lost0) / expected))
    return None


@dataclass
class LinkEstimate:
    """One viewer's link, from one poll of its sender's stats to the next."""

    sent: int = 0  # packets sent in the last period
    sent_kbps: float | None = None  # what the viewer was sent in the last period
    pkt_bytes: float = 0.0  # a media packet's mean size, lately (~2 s)
    _sent_total: int | None = None
    _bytes_total: int | None = None
    _last_rr: Any = None  # the newest receiver report's timestamp
    _rr_seen: float = 0.0  # when the previous receiver report arrived (its interval starts there)
    _rr: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=64))

    def new_period(self) -> None:
        """A poll begins: nothing is known of this period's sending yet."""
        self.sent, self.sent_kbps = 0, None

    def outbound(self, packets_sent: int, bytes_sent: int, period: float) -> None:
        """The sender's cumulative counters, ``period`` seconds after the last call."""
        if self._sent_total is not None:
            self.sent = max(0, packets_sent - self._sent_total)
        self._sent_total = packets_sent
        if self._bytes_total is not None:
            grew = max(0, bytes_sent - self._bytes_total)
            self.sent_kbps = 8 * grew / period / 1000
            if self.sent:
                # Over a second or two: what a full queue delivers after a switch down is
                # still the old rung's (larger) packets.
                size = grew / self.sent
                self.pkt_bytes = size if not self.pkt_bytes else 0.7 * self.pkt_bytes + 0.3 * size
        self._bytes_total = bytes_sent

    def receiver_report(self, t: float, stamp: Any, lost: int, received: int, changed_at: float) -> None:
        """A receiver report's cumulative counters (seen at ``t``); one whose interval began
        before the last change of rung (``changed_at``) describes the old rung: not kept."""
        if stamp == self._last_rr:
            return
        self._last_rr = stamp
        if self._rr_seen >= changed_at:
            self._rr.append((t, lost, lost + received))
        self._rr_seen = t

    def forget(self) -> None:
        """A change of rung (or a failed probe): the reports so far describe something else."""
        self._rr.clear()

    def loss(self, t: float) -> float | None:
        return loss_over(self._rr, t)

    def media_kbps(self, pps: float) -> float | None:
        """What ``pps`` media packets a second carry (the link's rate while a queue stands)."""
        return pps * self.pkt_bytes * 8 / 1000 if self.pkt_bytes else None
