"""relay.sources.feed: SRT's bytes to the demuxer, publisher by publisher, bounded."""

from __future__ import annotations

import threading

from relay.sources.feed import Feed, FeedReader


def _all(reader: FeedReader) -> bytes:
    out = bytearray()
    buf = bytearray(5)
    while n := reader.readinto(memoryview(buf)):
        out += buf[:n]
    return bytes(out)


def test_each_publisher_is_read_to_its_end_and_the_next_from_its_first_byte() -> None:
    feed, stop = Feed("d1"), threading.Event()
    feed.new_publisher()
    feed.push(b"first-one")
    feed.new_publisher()  # the first ended; the second's bytes wait behind its end
    feed.push(b"second")
    feed.push(b"-more")
    feed.close()  # (else the second reader waits for more, as it should)
    assert _all(FeedReader(feed, stop)) == b"first-one"
    assert _all(FeedReader(feed, stop)) == b"second-more"


def test_a_reader_behind_by_more_than_the_bound_loses_the_oldest_data_never_an_end() -> None:
    feed, stop = Feed("d1", max_bytes=10), threading.Event()
    feed.new_publisher()
    feed.push(b"aaaa")
    feed.new_publisher()
    for chunk in (b"bbbb", b"cccc", b"dddd"):
        feed.push(chunk)
    feed.close()
    assert feed.dropped == 2  # "aaaa", then "bbbb" went; the first publisher's end stayed
    assert _all(FeedReader(feed, stop)) == b""
    assert _all(FeedReader(feed, stop)) == b"ccccdddd"


def test_a_waiting_reader_ends_when_the_source_stops() -> None:
    feed, stop = Feed("d1"), threading.Event()
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(_all(FeedReader(feed, stop))))
    t.start()
    feed.new_publisher()
    feed.push(b"x")
    stop.set()
    t.join(3)
    assert not t.is_alive() and got in ([b"x"], [b""])
