"""The registry's parts without a network: the publisher slot (claim, takeover, release),
liveness (hysteresis, the watchdog for every source kind), source info, keyframe routing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.config import parse
from relay.errors import RelayError
from relay.registry import Entry, Registry, State
from relay.registry import parts as parts_module


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    t = [1000.0]
    monkeypatch.setattr(parts_module.time, "monotonic", lambda: t[0])
    return t


def entry(**media: Any) -> Entry:
    return Entry("s", parse({"media": {"signal_lost_after_s": 1.0, **media}}, env={}), configured=True)


def test_a_live_publisher_keeps_the_stream_a_stale_one_is_taken_over(clock: list[float]) -> None:
    e = entry()
    evicted: list[str] = []
    e.claim("a", "rtmp", "10.0.0.1", evict=evicted.append)
    e.touch()
    clock[0] += 0.5
    with pytest.raises(RelayError) as err:
        e.claim("b", "whip", "10.0.0.2")
    assert err.value.status == 409 and e.publisher == "a" and not evicted
    clock[0] += 1.1  # a's media stopped for longer than signal_lost_after_s
    e.claim("b", "whip", "10.0.0.2")
    assert e.publisher == "b" and evicted == ["a"] and e.takeovers == 1
    assert e.slot.kind == "whip" and e.slot.remote == "10.0.0.2" and not e.slot.forwards_packets


def test_a_new_publisher_has_a_grace_to_send_its_first_frame(clock: list[float]) -> None:
    e = entry()
    e.claim("a", "rtsp", "cam")
    assert e.slot.forwards_packets
    clock[0] += 5.0  # nothing yet, but within the connect grace
    with pytest.raises(RelayError):
        e.claim("b", "rtmp", "x")
    clock[0] += 6.0
    e.claim("b", "rtmp", "x")
    assert e.publisher == "b"


def test_release_by_the_holder_only(clock: list[float]) -> None:
    e = entry()
    e.claim("a", "whip", "r")
    e.touch()
    assert e.state is State.LIVE
    e.release("old-session")  # a session that no longer holds the slot changes nothing
    assert e.publisher == "a" and e.state is State.LIVE
    e.release("a")
    assert e.publisher is None and e.state is State.LOST


def test_liveness_check_is_the_one_rule(clock: list[float]) -> None:
    e = entry()
    changes: list[str] = []
    e.listeners.append(lambda x: changes.append(x.state.value))
    assert e.liveness.check()  # waiting: no picture
    e.touch()
    clock[0] += 0.9
    assert not e.liveness.check() and e.state is State.LIVE
    clock[0] += 0.2
    assert e.liveness.check() and e.state is State.LOST
    assert changes == ["live", "lost"]


async def test_the_watchdog_loses_a_stream_nothing_decodes() -> None:
    """A passthrough-only stream (no transcoder reading with a timeout) is lost too."""
    reg = Registry(parse({"media": {"signal_lost_after_s": 0.2, "default_mode": "passthrough"},
                          "streams": {"pt": {"mode": "passthrough"}}}, env={}))
    reg.start()
    e = reg.get("pt")
    assert e is not None
    e.claim("a", "rtmp", "r")
    e.touch()
    task = asyncio.ensure_future(reg.watch())
    try:
        for _ in range(50):
            if e.state is State.LOST:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert e.state is State.LOST


async def test_keyframe_requests_reach_who_was_given_at_build() -> None:
    asked: list[tuple[str, str, str]] = []
    reg = Registry(parse({"streams": {"d1": {}}}, env={}),
                   keyframes=lambda s, r, why: asked.append((s, r, why)))
    reg.start()
    e = reg.get("d1")
    assert e is not None
    e.renditions["high"].request_keyframe("PLI")
    e.renditions["low"].request_keyframe("FIR")
    assert asked == [("d1", "high", "PLI"), ("d1", "low", "FIR")]


def test_source_info_counts_frames_and_rate() -> None:
    e = entry()
    for i in range(31):
        e.source_info.frame(1280, 720, 100.0 + i / 30)
    assert e.frames_in == 31 and (e.width, e.height) == (1280, 720)
    assert e.fps == pytest.approx(30.0)
    doc = e.summary()
    assert doc["fps"] == 30.0 and doc["frames_in"] == 31 and doc["width"] == 1280


def test_unconfigured_streams_are_limited() -> None:
    reg = Registry(parse({"limits": {"unconfigured_streams": 2}}, env={}))
    reg.get_or_create("a")
    reg.get_or_create("b")
    with pytest.raises(RelayError) as err:
        reg.get_or_create("c")
    assert err.value.status == 503 and reg.refused == 1 and set(reg.entries) == {"a", "b"}
