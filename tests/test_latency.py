from __future__ import annotations

import random

from relay.latency import ClockOffsetEstimator, LatencyBook, Window, percentile


def test_clock_offset_recovers_injected_offset() -> None:
    """Remote clock = local + 1234.5 ms; asymmetric random delays; min-RTT sample wins."""
    rng = random.Random(1)
    est = ClockOffsetEstimator(window=16)
    offset = 1234.5
    t = 1_000_000.0
    for _ in range(16):
        up, down, proc = rng.uniform(1, 40), rng.uniform(1, 40), rng.uniform(0, 2)
        t0 = t
        t1 = t0 + up + offset
        t2 = t1 + proc
        t3 = t2 - offset + down
        est.add(t0, t1, t2, t3)
        t += 500
    best = est.best
    assert best is not None
    assert abs(est.offset - offset) <= best.rtt / 2 + 1e-9
    assert abs(est.offset - offset) < 5.0


def test_percentiles_and_window_bound() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 100) == 4
    w = Window(size=100)
    for i in range(1000):
        w.add(float(i))
    assert len(w.values()) == 100  # bounded
    s = w.summary()
    assert s["p50"] == 949 and s["max"] == 999


def test_book_splits_stages() -> None:
    book = LatencyBook()
    for _ in range(10):
        book.record("high", {"arrival": 0.0, "decoded": 0.001, "processed": 0.003,
                             "encoded": 0.008, "sent": 0.010})
    doc = book.summary()["high"]
    assert doc["relay_ms"]["p50"] == 10.0
    assert doc["stages_ms"]["encoded"]["p50"] == 5.0
    assert abs(sum(doc["stage_share"].values()) - 1.0) < 0.01
