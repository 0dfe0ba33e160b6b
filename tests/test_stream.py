"""The hub alone: bounded readers, drop to next keyframe, rate-limited keyframe requests."""

from __future__ import annotations

import asyncio

from relay.media import Unit
from relay.stream import Stream, StreamClosed


def unit(key: bool, n: int = 0) -> Unit:
    return Unit(payload=n, keyframe=key, timeline={"arrival": 0.0})


async def test_reader_starts_at_a_keyframe() -> None:
    s = Stream("s", gop=True, reader_maxlen=10)
    r = s.subscribe("a")
    s.publish(unit(False, 1))
    s.publish(unit(True, 2))
    s.publish(unit(False, 3))
    assert [(await r.get()).payload for _ in range(2)] == [2, 3]
    assert r.dropped == 1


async def test_overflow_drops_to_next_keyframe_and_asks_for_one() -> None:
    asked: list[str] = []
    s = Stream("s", gop=True, reader_maxlen=3, keyframe_min_interval=0,
               on_keyframe_request=asked.append)
    slow, fast = s.subscribe("slow"), s.subscribe("fast")
    got: list[int] = []
    s.publish(unit(True, 0))
    for i in range(1, 8):
        s.publish(unit(False, i))
        got.append((await fast.get()).payload)
    assert len(slow) <= 3 and slow.overflows >= 1 and slow.waiting_for_keyframe
    assert any("overflowed" in a for a in asked)
    s.publish(unit(False, 8))  # still waiting: dropped
    s.publish(unit(True, 9))
    assert (await slow.get()).payload == 9
    # The fast reader saw everything, in order.
    assert got == [0, 1, 2, 3, 4, 5, 6]
    assert fast.dropped == 0


async def test_raw_stream_drops_oldest() -> None:
    s = Stream("raw", gop=False, reader_maxlen=2)
    r = s.subscribe()
    for i in range(5):
        s.publish(unit(True, i))
    assert [(await r.get()).payload for _ in range(2)] == [3, 4]
    assert r.dropped == 3


async def test_keyframe_requests_are_rate_limited_and_coalesced() -> None:
    asked: list[str] = []
    s = Stream("s", gop=True, reader_maxlen=5, keyframe_min_interval=0.2,
               on_keyframe_request=asked.append)
    for _ in range(20):
        s.request_keyframe("PLI")
    assert len(asked) == 1
    await asyncio.sleep(0.3)
    assert len(asked) == 2  # one deferred request answered the other 19
    assert s.keyframes_suppressed == 19


async def test_close_wakes_a_waiting_reader() -> None:
    s = Stream("s", gop=False, reader_maxlen=2)
    r = s.subscribe()
    task = asyncio.ensure_future(r.get())
    await asyncio.sleep(0)
    r.close()
    try:
        await asyncio.wait_for(task, 1)
        raise AssertionError("expected StreamClosed")
    except StreamClosed:
        pass
    assert r not in s.readers


async def test_skip_to_live_empties_the_queue() -> None:
    s = Stream("s", gop=True, reader_maxlen=100, keyframe_min_interval=0)
    r = s.subscribe()
    s.publish(unit(True, 0))
    for i in range(1, 30):
        s.publish(unit(False, i))
    assert r.skip_to_live("creep") == 30
    s.publish(unit(False, 31))
    s.publish(unit(True, 32))
    assert (await r.get()).payload == 32


async def test_gop_cache_gives_a_late_reader_the_current_gop() -> None:
    s = Stream("pt", gop=True, reader_maxlen=50, gop_cache=True)
    for i in range(10):
        s.publish(unit(i % 4 == 0, i))  # keyframes at 0, 4, 8
    late = s.subscribe("late")
    assert [(await late.get()).payload for _ in range(2)] == [8, 9]
    assert all("replayed" in u.timeline for u in s._gop)
    s.publish(unit(False, 10))
    assert (await late.get()).payload == 10
    s.reset()  # producer restarted: wait for its next keyframe
    s.publish(unit(False, 11))
    s.publish(unit(True, 12))
    assert (await late.get()).payload == 12


async def test_gop_longer_than_the_queue_is_not_replayed() -> None:
    s = Stream("pt", gop=True, reader_maxlen=3, gop_cache=True)
    for i in range(6):
        s.publish(unit(i == 0, i))  # one keyframe, then a GOP longer than the queue
    late = s.subscribe("late")
    assert len(late) == 0 and late.waiting_for_keyframe
    assert not any("replayed" in u.timeline for u in s._gop)  # live units stay measurable
    s.publish(unit(True, 6))
    assert (await late.get()).payload == 6


# ---- bounded age: a unit older than the reader's max_age is never handed out


def aged(key: bool, n: int, age: float) -> Unit:
    from relay.media import now

    return Unit(payload=n, keyframe=key, timeline={"arrival": now() - age})


async def test_encoded_reader_jumps_to_the_newest_keyframe_past_late_units() -> None:
    s = Stream("s", gop=True, reader_maxlen=100, max_age=0.2)
    skipped: list[int] = []
    s.on_stale = skipped.append
    r = s.subscribe("viewer")
    for i, (key, age) in enumerate([(True, 0.9), (False, 0.8), (True, 0.5), (False, 0.4), (False, 0.1)]):
        s.publish(aged(key, i, age))
    # The newest keyframe (2) is late too, but it is the newest place a picture can start.
    assert (await r.get()).payload == 2
    assert r.stale == 2 and skipped == [2] and s.stale == 2
    # 3 is late and no keyframe is queued after it: 3 and 4 (which needs 3) go, the reader
    # asks for a keyframe and waits for it.
    asked: list[str] = []
    s.on_keyframe_request = asked.append
    got = asyncio.ensure_future(r.get())
    await asyncio.sleep(0)
    assert not got.done() and r.waiting_for_keyframe and len(r) == 0
    assert asked and "too old" in asked[0]
    s.publish(aged(False, 5, 0.0))  # not a place to start
    s.publish(aged(True, 6, 0.0))
    assert (await got).payload == 6
    assert r.stale == 4 and skipped == [2, 2]


async def test_raw_reader_takes_the_newest_frame_and_counts_the_late_ones() -> None:
    s = Stream("raw", gop=False, reader_maxlen=10, max_age=0.1)
    late: list[int] = []
    s.on_stale_unit = lambda u: late.append(u.payload)
    r = s.subscribe("pipeline")
    for i, age in enumerate([0.5, 0.4, 0.3, 0.05]):
        s.publish(aged(False, i, age))
    assert (await r.get()).payload == 3
    assert late == [0, 1, 2] and r.stale == 3
    # Only late frames: the newest is still handed out (the freshest there is).
    s.publish(aged(False, 9, 1.0))
    assert (await r.get()).payload == 9


async def test_the_record_and_a_joining_replay_are_not_held_to_the_age() -> None:
    s = Stream("s", gop=True, reader_maxlen=100, max_age=0.1, gop_cache=True)
    for i, key in enumerate([True, False, False]):
        s.publish(aged(key, i, 1.0 - i * 0.1))
    record = s.subscribe("record", viewer=False)
    joining = s.subscribe("viewer")
    s.publish(aged(False, 3, 0.0))
    assert [(await record.get()).payload for _ in range(4)] == [0, 1, 2, 3]
    assert [(await joining.get()).payload for _ in range(4)] == [0, 1, 2, 3]
    assert record.stale == 0 and joining.stale == 0


async def test_a_producer_restart_asks_for_one_keyframe_whatever_the_readers_asked_before() -> None:
    """After a failover every reader resumes at the next keyframe, and that keyframe is asked
    for at once — not refused because a reader used its own budget a moment ago."""
    asked: list[str] = []
    s = Stream("s", gop=True, reader_maxlen=10, keyframe_min_interval=0.0, viewer_keyframe_interval=10.0,
               on_keyframe_request=asked.append)
    r = s.subscribe("edge")
    s.publish(unit(True, 1))
    assert r.request_keyframe("PLI") is True and r.request_keyframe("PLI") is False  # its budget: used
    asked.clear()
    s.publish(unit(False, 2))
    s.reset()
    assert asked == ["producer restarted"] and len(r) == 0 and r.waiting_for_keyframe
    s.publish(unit(False, 3))
    s.publish(unit(True, 4))
    assert (await r.get()).payload == 4


async def test_another_relay_reading_asks_for_keyframes_outside_a_viewers_budget() -> None:
    """A cluster edge or a forward's centre asks on behalf of all its viewers: only the
    stream's own limit applies to it, while a person's reader keeps its budget."""
    asked: list[str] = []
    s = Stream("s", gop=True, reader_maxlen=10, keyframe_min_interval=0.0, viewer_keyframe_interval=10.0,
               on_keyframe_request=asked.append)
    person, edge = s.subscribe("viewer"), s.subscribe("edge", relay=True)
    asked.clear()
    assert person.request_keyframe("PLI") is True and person.request_keyframe("PLI") is False
    assert edge.request_keyframe("PLI") is True and edge.request_keyframe("PLI") is True
    assert len(asked) == 3 and edge.keyframe_requests_refused == 0 and person.keyframe_requests_refused == 1
