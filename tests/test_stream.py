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
