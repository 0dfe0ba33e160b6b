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


@dataclass
class Trend:
    """The controller's view of the link over the last seconds, smoothed: the receiver's
    estimate (falls at once, rises smoothly), loss over 1 and 2 s, what the viewer is sent
    (over ~2 s), and what the link usually loses and NACKs while nothing points to
    congestion (the mean of the first samples, then over about ten seconds)."""

    remb: float | None = None  # kbit/s
    sent_kbps: float | None = None
    base_loss: float | None = None
    base_nack: float | None = None
    rembs: deque[tuple[float, float]] = field(default_factory=deque)  # raw, the last 2 s
    losses: deque[tuple[float, float]] = field(default_factory=deque)  # the last 2 s
    _n_loss: int = 0
    _n_nack: int = 0

    def take(self, t: float, remb_kbps: float | None, loss: float | None, sent_kbps: float | None) -> None:
        if remb_kbps is not None:
            self.rembs.append((t, remb_kbps))
            while self.rembs[0][0] < t - 2.0:
                self.rembs.popleft()
            # Fall at once, rise smoothly: a falling estimate is the news that matters.
            self.remb = remb_kbps if self.remb is None or remb_kbps < self.remb else (
                0.7 * self.remb + 0.3 * remb_kbps)
        if loss is not None:
            self.losses.append((t, loss))
        while self.losses and self.losses[0][0] < t - 2.0:
            self.losses.popleft()
        # Compared with what the viewer is actually sent: REMB is capped near 1.5x that, so
        # a rung whose pictures need less than its budget must not look congested.
        if sent_kbps is not None:
            self.sent_kbps = sent_kbps if self.sent_kbps is None else (
                0.75 * self.sent_kbps + 0.25 * sent_kbps)  # over ~2 s: keyframes come and go

    def loss_1s(self, t: float) -> float:
        """The last second: trouble."""
        recent = [x for at, x in self.losses if at >= t - 1.0]
        return sum(recent) / len(recent) if recent else 0.0

    def loss_2s(self) -> float:
        """Over two seconds, for "clean": a low rung sends few packets, one loss in a second
        of them is not a trend."""
        return sum(x for _, x in self.losses) / len(self.losses) if self.losses else 0.0

    @property
    def remb_peak(self) -> float:
        """The estimate's high of the last 2 s."""
        return max((r for _, r in self.rembs), default=0.0)

    @property
    def remb_dropped(self) -> bool:
        """It fell by a third or more within the last 2 s."""
        return bool(self.rembs) and self.remb_peak >= 1.5 * self.rembs[-1][1]

    def learn_base(self, loss: float | None, nacks: int, sent: int) -> None:
        """What the link usually loses and NACKs (called only while it looks clean)."""
        if loss is not None:
            self._n_loss += 1
            a = max(0.05, 1 / self._n_loss)
            self.base_loss = loss if self.base_loss is None else (1 - a) * self.base_loss + a * loss
        if sent >= 10:
            self._n_nack += 1
            a = max(0.05, 1 / self._n_nack)
            share = nacks / sent
            self.base_nack = share if self.base_nack is None else (1 - a) * self.base_nack + a * share
