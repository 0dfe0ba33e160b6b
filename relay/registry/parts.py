"""The parts of a stream's entry, each with one writer and changed only through its own
methods (MediaMTX's path changes only through requests):

- :class:`PublisherSlot`: who publishes (claim, release, takeover) — the sources;
- :class:`SourceInfo`: codec, size, frame rate, counts — the sources and the pipeline's
  frame arrivals, through its methods;
- :class:`Liveness`: live / lost / waiting with hysteresis — one owner for every source
  kind: sources ``touch()`` it, the registry's watchdog (and the pipeline's read timeout)
  ``check()`` it, a release ``lose()``s it.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import RelayError

__all__ = ["CONNECT_GRACE_S", "LIVE_AGAIN_S", "Liveness", "PublisherSlot", "SourceInfo", "State"]

log = logging.getLogger("relay.registry")

LIVE_AGAIN_S = 0.5  # media must flow this long before a lost stream shows live again
CONNECT_GRACE_S = 10.0  # a new publisher may take this long to send its first frame


class State(enum.Enum):
    WAITING = "waiting"  # no publisher yet
    LIVE = "live"
    LOST = "lost"  # had a publisher, frames stopped


class Liveness:
    """Whether the stream's source is live, for every kind of source alike."""

    def __init__(self, stream: str, lost_after_s: float, changed: Callable[[], None]) -> None:
        self.stream = stream
        self.lost_after_s = lost_after_s
        self._changed = changed  # the entry tells its listeners
        self.state = State.WAITING
        self.since = time.time()  # wall clock of the last change
        self.last_media = 0.0  # monotonic time of the last packet or frame from the source
        self._streak_start = 0.0  # hysteresis: when media started flowing again

    def touch(self) -> None:
        """Media arrived from the source (called on the event loop).

        Hysteresis: a lost stream is live again only after media has flowed for
        ``LIVE_AGAIN_S`` without a gap, so a source that stutters (corrupt packets, a
        failing link) does not flap live/lost on every screen.
        """
        t = time.monotonic()
        if t - self.last_media > self.lost_after_s / 2:
            self._streak_start = t
        self.last_media = t
        if self.state is State.LIVE:
            return
        if self.state is State.WAITING or t - self._streak_start >= LIVE_AGAIN_S:
            self._set(State.LIVE)

    def silent_for(self) -> float:
        return time.monotonic() - self.last_media

    def check(self) -> bool:
        """Whether the source is silent (no media for ``lost_after_s``); a live stream that
        is becomes lost now. Media may flow without decoded frames (passthrough only):
        then it is not lost."""
        if self.state is not State.LIVE:
            return True
        if self.silent_for() < self.lost_after_s:
            return False
        self._set(State.LOST)
        log.warning("signal lost", extra={"stream": self.stream, "after_s": self.lost_after_s})
        return True

    def lose(self) -> None:
        """The publisher left: a live stream is lost at once."""
        if self.state is State.LIVE:
            self._set(State.LOST)

    def _set(self, state: State) -> None:
        if state is self.state:
            return
        log.info("stream state", extra={"stream": self.stream, "from": self.state.value, "to": state.value})
        self.state = state
        self.since = time.time()
        self._changed()


# Publishers over WebRTC: their packets are forwarded only once H.264 is agreed.
WEBRTC_KINDS = frozenset({"whip", "whep-pull", "cluster-edge"})


class PublisherSlot:
    """Who publishes the stream: one at a time; a stale one may be taken over."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.holder: str | None = None  # the publisher's session id
        self.kind = ""
        self.remote = ""
        self.since = 0.0  # monotonic time of the current claim
        self.takeovers = 0
        # The current publisher forwards packets (not WHIP): set at the claim, or announced
        # by a pulled source before its first packet (viewers may join "source" then).
        self.forwards_packets = False
        # Asks the publisher itself for a keyframe (a WebRTC publisher: a PLI), for viewers
        # of its packets; None where it cannot be asked (RTMP: the GOP cache serves them).
        self.keyframe_upstream: Callable[[], None] | None = None
        self._evict: Callable[[str], None] | None = None  # ends the current publisher

    def stale(self, liveness: Liveness) -> bool:
        """The current publisher's media stopped (or never started within the connect grace)."""
        if self.holder is None:
            return True
        t = time.monotonic()
        if liveness.last_media < self.since:  # nothing from this publisher yet
            return t - self.since > CONNECT_GRACE_S
        return t - liveness.last_media > liveness.lost_after_s

    def claim(self, session_id: str, kind: str, remote: str, liveness: Liveness,
              evict: Callable[[str], None] | None = None) -> None:
        """Become the stream's publisher.

        Another publisher whose media flows keeps the stream (409). One whose media
        stopped — a drone whose LTE link died without a goodbye, reconnecting before
        its old socket times out — is evicted (``evict`` of the old claim is called) and
        the new one takes over; viewers keep their sessions.
        """
        if self.holder is not None and self.holder != session_id:
            if not self.stale(liveness):
                raise RelayError(409, f"stream {self.stream!r} already has a live publisher")
            old, old_evict = self.holder, self._evict
            log.warning("publisher taken over", extra={
                "stream": self.stream, "old": self.kind, "new": kind,
                "silent_s": round(liveness.silent_for(), 1)})
            self.takeovers += 1
            self.holder = None
            if old_evict is not None:
                old_evict(old)
        self.holder = session_id
        self.kind = kind
        self.forwards_packets = kind not in WEBRTC_KINDS  # (theirs: once H.264 is agreed)
        self.keyframe_upstream = None
        self.remote = remote
        self.since = time.monotonic()
        self._evict = evict

    @property
    def evictor(self) -> Callable[[str], None] | None:
        """How the current publisher is ended (its session closed), if it can be."""
        return self._evict

    def announce_packets(self, keyframe_upstream: Callable[[], None] | None = None) -> None:
        self.forwards_packets = True
        if keyframe_upstream is not None:
            self.keyframe_upstream = keyframe_upstream

    def release(self, session_id: str) -> bool:
        """The publisher left; False if ``session_id`` no longer held the slot."""
        if self.holder != session_id:
            return False
        self.holder = None
        self._evict = None
        self.keyframe_upstream = None
        return True


class SourceInfo:
    """What the source sends: codec, picture size, frame rate, frames counted."""

    def __init__(self) -> None:
        self.codec = ""
        self.width = 0
        self.height = 0
        self.fps = 0.0
        self.frames_in = 0
        self.last_frame_time = 0.0  # wall clock of the last source frame
        self.problem = ""  # why the publisher's media cannot be shown (an unsupported codec)
        # A stream forwarded by another relay: the relays it crossed ("drone", "vehicle"),
        # each hop's delay, and the title it had there (set by that session, cleared after).
        self.path: list[str] = []
        self.hops: list[dict[str, Any]] = []
        self.upstream_title = ""
        self._first_hop: deque[int] = deque(maxlen=30)
        self._arrivals: list[float] = []

    def set_route(self, path: list[str], hops: list[dict[str, Any]], title: str) -> None:
        self.path, self.hops, self.upstream_title = path, hops, title

    def note_capture(self, arrival_ms: int, capture_ms: int | None) -> None:
        """A frame's capture time, where its picture or the relay before told it (once a frame)."""
        if capture_ms is not None and arrival_ms:
            self._first_hop.append(arrival_ms - capture_ms)

    def route(self, me: str) -> tuple[list[str], list[dict[str, Any]]]:
        """The path to this relay and each hop's delay (ms): the one the relay before told,
        or, fed by the drone itself, drone → this relay (its capture to our arrival)."""
        if self.path:
            return list(self.path), list(self.hops)
        hop = sorted(self._first_hop)[len(self._first_hop) // 2] if self._first_hop else None
        return ["drone", me], [{"from": "drone", "to": me, "ms": hop}]

    def set_codec(self, codec: str) -> None:
        self.codec = codec

    def set_problem(self, problem: str) -> None:
        """The publisher sends what the relay cannot take ("" when that is over)."""
        self.problem = problem

    def set_size(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def frame(self, width: int, height: int, arrival: float) -> None:
        """A decoded source frame arrived (``arrival``: monotonic)."""
        self.problem = ""
        self.frames_in += 1
        self.last_frame_time = time.time()
        self.width, self.height = width, height
        arr = self._arrivals
        arr.append(arrival)
        if len(arr) > 31:
            del arr[0]
        if len(arr) >= 2 and arr[-1] > arr[0]:
            self.fps = (len(arr) - 1) / (arr[-1] - arr[0])
