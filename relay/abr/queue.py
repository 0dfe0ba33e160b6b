"""A queue standing on a viewer's link, told from echo round trips (pure)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["QueueWatch", "ReportQueue"]


@dataclass
class QueueWatch:
    """A queue standing on a viewer's link, seen from the sender: round trips of small
    messages sent every ~0.1 s over the viewer's "echo" data channel (unordered, never
    retransmitted), which cross the same queue as the media. A keyframe's burst makes a
    few of them late and the queue drains; a link that carries less than it is sent keeps
    its queue full (a shaped link then drops what overflows, echoes too). "Standing": every
    echo for ``stand_s`` came back ``over_s`` late or not at all, the link's own round trip
    being the least of the last ``base_window_s``. Whether the link is too small is then told by
    what the viewer received meanwhile (its receiver reports): a link whose queue is full
    delivers exactly its rate. Pure: the caller passes the times."""

    over_s: float = 0.05
    stand_s: float = 0.3
    base_window_s: float = 10.0
    _echoes: deque[list[float]] = field(default_factory=deque)  # [sent at, round trip or -1]
    _mins: deque[tuple[float, float]] = field(default_factory=deque)  # sliding minimum (at, round trip)

    def sent(self, t: float) -> None:
        self._echoes.append([t, -1.0])
        while self._echoes and self._echoes[0][0] < t - 3.0:
            self._echoes.popleft()

    def answered(self, sent_at: float, t: float) -> None:
        rtt = t - sent_at
        for e in reversed(self._echoes):
            if e[0] == sent_at:
                e[1] = rtt
                break
        while self._mins and self._mins[-1][1] >= rtt:
            self._mins.pop()
        self._mins.append((t, rtt))
        while self._mins[0][0] < t - self.base_window_s:
            self._mins.popleft()

    @property
    def base_rtt(self) -> float | None:
        """The link's own round trip (no queue): the least of the last ``base_window_s``."""
        return self._mins[0][1] if self._mins else None

    def standing(self, t: float) -> tuple[float, float] | None:
        """(since when, how deep in s) a queue has stood on the link, if it has for
        ``stand_s``; echoes not yet due are no evidence either way."""
        base = self.base_rtt
        if base is None:
            return None
        limit = base + self.over_s
        since: float | None = None
        late: list[float] = []
        n = 0
        for sent_at, rtt in reversed(self._echoes):
            if rtt < 0 and t - sent_at <= limit + 0.1:
                continue  # not due yet
            if 0 <= rtt <= limit:
                break  # answered in time: the queue (if any) began after it
            since, n = sent_at, n + 1
            if rtt >= 0:
                late.append(rtt)
        if since is None or n < 3 or not late or t - since < self.stand_s:
            return None
        return since, max(0.0, late[0] - base)  # the newest answer: how deep it is now


@dataclass
class ReportQueue:
    """A queue standing on a viewer's link, told from the round trips of its receiver
    reports (each answers one of our sender reports, which crossed the link's queue), for a
    viewer without the page's echo channel: a WHEP player we did not write, another relay.
    Reports come every 0.1-1.5 s (Chromium: with every RTCP packet; aiortc: about once a
    second), so "standing" here is two reports running, ``over_s`` late, the newest fresh.
    Pure: the caller passes the times."""

    over_s: float = 0.06
    fresh_s: float = 2.5
    base_window_s: float = 20.0
    _reports: deque[tuple[float, float]] = field(default_factory=deque)  # (at, round trip)

    def report(self, t: float, rtt: float) -> None:
        self._reports.append((t, rtt))
        while self._reports and self._reports[0][0] < t - self.base_window_s:
            self._reports.popleft()

    @property
    def base_rtt(self) -> float | None:
        return min(r for _, r in self._reports) if self._reports else None

    def standing(self, t: float) -> tuple[float, float] | None:
        """(since when, how deep in s) the newest reports have come back late."""
        base = self.base_rtt
        if base is None or not self._reports or t - self._reports[-1][0] > self.fresh_s:
            return None
        run: list[tuple[float, float]] = []
        for at, rtt in reversed(self._reports):
            if rtt <= base + self.over_s:
                break
            run.append((at, rtt))
        if len(run) < 2:
            return None
        oldest_at, oldest_rtt = run[-1]
        return oldest_at - oldest_rtt, run[0][1] - base
