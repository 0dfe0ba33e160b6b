"""A byte feed from an in-process ingest (SRT) to the demuxer that reads it, publisher by
publisher.

The SRT listener used to send each caller's datagrams over a loopback UDP port to an
FFmpeg ``udp://`` input. An MPEG-TS reader that stays open across publishers keeps the
first publisher's stream ids: a second encoder (other PIDs) was never shown, and FFmpeg
gives no way to interrupt a read that sees data but yields no packets. Here the ingest
writes into a :class:`Feed`; the demuxer reads a :class:`FeedReader` (a file object
PyAV opens); a new publisher ends the current reader (EOF: the demuxer finishes) and the
next reader starts at the new publisher's first byte — nothing of it lost, no port, no
timeout to wait out.

Bounded: while the reader is behind by more than ``max_bytes`` the oldest datagrams are
dropped (and counted), as a UDP socket's buffer would.
"""

from __future__ import annotations

import io
import threading
from collections import deque

__all__ = ["Feed", "FeedReader"]

_EOF = b""  # queued: the publisher before it ended (a new one follows)


class Feed:
    def __init__(self, name: str, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self._chunks: deque[bytes] = deque()
        self._bytes = 0
        self._cv = threading.Condition()
        self.closed = False
        self.dropped = 0  # datagrams dropped because the reader was too far behind
        self.publishers = 0

    def new_publisher(self) -> None:
        """A new publisher begins: whoever reads the previous one reaches its end."""
        with self._cv:
            self.publishers += 1
            if self._chunks or self.publishers > 1:
                self._chunks.append(_EOF)
            self._cv.notify_all()

    def push(self, data: bytes) -> None:
        if not data:
            return
        with self._cv:
            self._chunks.append(data)
            self._bytes += len(data)
            while self._bytes > self.max_bytes:  # the oldest data goes; a publisher's end stays
                i = next(i for i, c in enumerate(self._chunks) if c)
                self._bytes -= len(self._chunks[i])
                del self._chunks[i]
                self.dropped += 1
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def read(self, n: int, stop: threading.Event) -> bytes:
        """Up to ``n`` bytes of the current publisher; b"" at its end, on ``close`` or when
        ``stop`` is set (checked every half second while nothing comes)."""
        with self._cv:
            while not self._chunks:
                if self.closed or stop.is_set():
                    return b""
                self._cv.wait(0.5)
            head = self._chunks[0]
            if not head:
                self._chunks.popleft()
                return b""
            if len(head) <= n:
                self._chunks.popleft()
                self._bytes -= len(head)
                return head
            self._chunks[0] = head[n:]
            self._bytes -= n
            return head[:n]


class FeedReader(io.RawIOBase):
    """One publisher's bytes of a :class:`Feed`, as the file object PyAV reads."""

    def __init__(self, feed: Feed, stop: threading.Event) -> None:
        super().__init__()
        self.feed = feed
        self.stop = stop
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.ended:
            return 0
        data = self.feed.read(len(buffer), self.stop)
        if not data:
            self.ended = True
            return 0
        buffer[:len(data)] = data
        return len(data)
