"""The stream hub: one publisher writes units, many readers each read through a bounded queue.

A reader that falls behind never slows the publisher or the other readers. For encoded
streams (``gop=True``) an overflowing reader drops everything queued and skips to the next
keyframe (a dropped inter frame would corrupt the picture until then) and asks for one;
for raw frame streams the oldest frame is dropped.

A queue is bounded in **age** too, not only in count (at a lower frame rate, or with a
consumer short of CPU, the same count is older): a reader with ``max_age`` looks at the unit
it is about to hand out, and if that unit arrived at the relay longer ago than ``max_age``
it does not hand it out late. A raw-frame reader skips to the newest frame queued; an
encoded reader jumps to the newest keyframe queued, or drops all and waits for the next
keyframe, asking for one (within its budget). Such drops are counted (``stale``) and
reported once per burst through ``Stream.on_stale``. Units replayed from the GOP cache to
a joining reader are exempt (they are old by design and make the first picture).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from .media import Unit, now

__all__ = ["Reader", "Stream", "StreamClosed"]

log = logging.getLogger("relay.stream")


class StreamClosed(Exception):
    """The reader was closed (its viewer left, or the stream is gone)."""


class Reader:
    """A consumer's view of a :class:`Stream`: a bounded queue with drop counters."""

    def __init__(self, stream: Stream, maxlen: int, label: str = "", viewer: bool = True,
                 max_age: float | None = None) -> None:
        self.stream = stream
        self.viewer = viewer  # False: the record, not a person watching
        self.maxlen = maxlen
        self.max_age = max_age  # seconds since arrival; None: every unit, however late (the record)
        self.stale = 0  # units not handed out because they were older than max_age
        self.stale_skips = 0  # times this reader skipped forward for age
        self._replayed = 0  # GOP-cache units still queued (exempt from the age bound)
        self.label = label
        self._queue: deque[Unit] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.waiting_for_keyframe = stream.gop
        self.closed = False
        self.delivered = 0
        self.dropped = 0
        self.overflows = 0
        self.created = time.monotonic()
        # Keyframe requests this reader may make: one per stream.viewer_keyframe_interval.
        # A viewer on a lossy link must not make every other viewer pay for keyframes;
        # refused requests wait for the encoder's regular keyframe.
        self._last_key_request = -1e9
        # Another relay reads (a cluster edge, the centre of a forward): it asks for keyframes
        # on behalf of all its viewers and after a failover; only the stream's limit applies.
        self.relay = False
        # A wall's tile (one of many pictures on the control centre's screens): the overload
        # governor cuts its rendition's frame rate first when only tiles watch it.
        self.tile = False
        self.keyframe_requests = 0
        self.keyframe_requests_refused = 0

    def request_keyframe(self, reason: str) -> bool:
        """Pass a keyframe request to the stream if this reader's budget allows; True if so."""
        t = time.monotonic()
        self.keyframe_requests += 1
        if not self.relay and t - self._last_key_request < self.stream.viewer_keyframe_interval:
            self.keyframe_requests_refused += 1
            return False
        self._last_key_request = t
        self.stream.request_keyframe(f"{reason} ({self.label})")
        return True

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, unit: Unit) -> None:
        """Called by the stream for every published unit; never blocks."""
        if self.closed:
            return
        if self.waiting_for_keyframe:
            if not unit.keyframe:
                self.dropped += 1
                return
            self.waiting_for_keyframe = False
        if len(self._queue) >= self.maxlen:
            self.overflows += 1
            if self.stream.gop:
                self.dropped += len(self._queue)
                self._queue.clear()
                self._replayed = 0
                if not unit.keyframe:
                    self.dropped += 1
                    self.waiting_for_keyframe = True
                    self.request_keyframe("reader overflowed")
                    self._log_overflow()
                    return
                self._log_overflow()
            else:
                self.stream.stale_unit(self._queue.popleft())  # (it still arrived: counted there)
                self.dropped += 1
        self._queue.append(unit)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _log_overflow(self) -> None:
        if self.overflows == 1 or self.overflows % 50 == 0:
            log.warning(
                "reader is too slow, skipping to next keyframe",
                extra={"stream": self.stream.name, "reader": self.label,
                       "dropped": self.dropped, "overflows": self.overflows},
            )

    def skip_to_live(self, reason: str, ask: bool = True) -> int:
        """Drop everything queued and resume at the next keyframe, asking for one out of this
        reader's budget unless ``ask`` is False (the stream asks); returns frames dropped."""
        n = len(self._queue)
        self.dropped += n
        self._queue.clear()
        self._replayed = 0
        if self.stream.gop:
            self.waiting_for_keyframe = True
            if ask:
                self.request_keyframe(reason)
        return n

    async def wait_ready(self) -> None:
        """Until a unit is queued (without taking it), or the reader is closed."""
        while not self._queue and not self.closed:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self) -> Unit:
        """The next unit that is not too old; raises :class:`StreamClosed` once closed."""
        while True:
            await self.wait_ready()
            if not self._queue:
                raise StreamClosed(self.stream.name)
            if self._replayed == 0 and self.max_age is not None:
                self._drop_stale(now() - self.max_age)
                if not self._queue:
                    continue
            self.delivered += 1
            self._replayed = max(0, self._replayed - 1)
            return self._queue.popleft()

    def _drop_stale(self, limit: float) -> None:
        """Never hand out late: skip forward past units that arrived before ``limit``."""
        q = self._queue
        if q[0].timeline.get("arrival", limit) >= limit:
            return
        if not self.stream.gop:
            n = 0
            while len(q) > 1 and q[0].timeline.get("arrival", limit) < limit:
                self.stream.stale_unit(q.popleft())
                n += 1
            self.dropped += n
            self._count_stale(n)
            return
        key = next((i for i in range(len(q) - 1, -1, -1) if q[i].keyframe), None)
        if key == 0:
            return  # a late keyframe with nothing newer to jump to: it makes the picture
        if key is not None:
            for _ in range(key):
                q.popleft()
            self.dropped += key
            self._count_stale(key)
            return
        self._count_stale(self.skip_to_live("queue too old"))

    def _count_stale(self, n: int) -> None:
        """``n`` units skipped for age (already counted as dropped by the caller)."""
        if n:
            self.stale += n
            self.stale_skips += 1
            self.stream.note_stale(n)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self.stream.unsubscribe(self)


class Stream:
    """Stores readers and lets one publisher write units to all of them."""

    def __init__(
        self,
        name: str,
        *,
        gop: bool,
        reader_maxlen: int,
        keyframe_min_interval: float = 0.3,
        on_keyframe_request: Callable[[str], None] | None = None,
        on_readers_changed: Callable[[Stream], None] | None = None,
        gop_cache: bool = False,
        gop_cache_max: int = 300,
        viewer_keyframe_interval: float = 0.0,
        max_age: float | None = None,
    ) -> None:
        self.name = name
        self.max_age = max_age  # each viewer reader's age bound (see the module's doc)
        self.stale = 0  # units readers skipped for age, all readers together
        # Told of each skip forward for age (units skipped): the overload governor.
        self.on_stale: Callable[[int], None] | None = None
        # Told of each raw unit a reader skips, for age or overflow (it still arrived: frames in).
        self.on_stale_unit: Callable[[Unit], None] | None = None
        # Units since the last keyframe, so a joining reader starts with a picture at once
        # (for sources nobody can ask for a keyframe: RTMP, RTSP, UDP passthrough).
        self.gop_cache_enabled = gop_cache
        self.gop_cache_max = gop_cache_max
        self._gop: list[Unit] = []
        self.gop = gop
        self.reader_maxlen = reader_maxlen
        self.keyframe_min_interval = keyframe_min_interval
        self.viewer_keyframe_interval = viewer_keyframe_interval
        self.on_keyframe_request = on_keyframe_request
        self.on_readers_changed = on_readers_changed
        self.readers: set[Reader] = set()
        self.published = 0
        self.keyframes_requested = 0
        self.keyframes_suppressed = 0
        self._last_request = -1e9
        self._pending: asyncio.TimerHandle | None = None

    def subscribe(self, label: str = "", maxlen: int | None = None, viewer: bool = True,
                  relay: bool = False, tile: bool = False) -> Reader:
        # Only people watching (and forwards) are held to the age bound; the record takes all.
        reader = Reader(self, maxlen or self.reader_maxlen, label, viewer,
                        self.max_age if viewer else None)
        reader.relay = relay
        reader.tile = tile
        # The cache always starts at a keyframe; a GOP longer than the reader's queue could
        # not be replayed whole (its keyframe would be dropped), so the reader waits instead.
        if self._gop and len(self._gop) <= reader.maxlen:
            for unit in self._gop:
                # A replay is not relay latency: keep it out of the histograms.
                unit.timeline.setdefault("replayed", 1.0)
                reader.offer(unit)
            reader._replayed = len(reader)
        self.readers.add(reader)
        if self.on_readers_changed is not None:
            self.on_readers_changed(self)
        if self.gop:
            self.request_keyframe(f"reader {label} joined")
        return reader

    @property
    def gop_cached(self) -> int:
        """Units of the current GOP held for the next reader (0: no cache, or none yet)."""
        return len(self._gop)

    @property
    def tiles_only(self) -> bool:
        """Watched, and only by wall tiles (no commander, no other relay)."""
        viewers = [r for r in self.readers if r.viewer]
        return bool(viewers) and all(r.tile for r in viewers)

    @property
    def viewer_count(self) -> int:
        """Readers that are people watching (the recorder is a reader too)."""
        return sum(1 for r in self.readers if r.viewer)

    def unsubscribe(self, reader: Reader) -> None:
        if reader in self.readers:
            self.readers.discard(reader)
            if self.on_readers_changed is not None:
                self.on_readers_changed(self)

    def note_stale(self, n: int) -> None:
        """``n`` units of this stream were skipped for age (by a reader, or before publishing)."""
        self.stale += n
        if self.on_stale is not None:
            self.on_stale(n)

    def stale_unit(self, unit: Unit) -> None:
        if self.on_stale_unit is not None:
            self.on_stale_unit(unit)

    def publish(self, unit: Unit) -> None:
        self.published += 1
        if self.gop_cache_enabled:
            if unit.keyframe:
                self._gop = [unit]
            elif self._gop and len(self._gop) < self.gop_cache_max:
                self._gop.append(unit)
            else:
                self._gop = []
        for reader in tuple(self.readers):
            reader.offer(unit)

    def request_keyframe(self, reason: str) -> None:
        """Ask the producer for a keyframe, at most once per ``keyframe_min_interval``."""
        if self.on_keyframe_request is None:
            return
        now = time.monotonic()
        wait = self._last_request + self.keyframe_min_interval - now
        if wait <= 0:
            self._last_request = now
            self.keyframes_requested += 1
            self.on_keyframe_request(reason)
            return
        self.keyframes_suppressed += 1
        if self._pending is None:
            # Coalesce: one deferred request answers everyone who asked in the window.
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(wait, self._fire_pending, reason)

    def _fire_pending(self, reason: str) -> None:
        self._pending = None
        self.request_keyframe(reason)

    def reset(self) -> None:
        """The producer restarted (new encoder, new SPS/PPS): everyone resumes at a keyframe,
        asked for once by the stream — not by each reader out of its own budget (a viewer
        that asked in the last 10 s would otherwise wait for the next regular keyframe: the
        second freeze after a failover)."""
        self._gop = []
        for reader in self.readers:
            reader.skip_to_live("producer restarted", ask=False)
        if self.gop and self.readers:
            self.request_keyframe("producer restarted")

    def close(self) -> None:
        self._gop = []
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for reader in tuple(self.readers):
            reader.close()
