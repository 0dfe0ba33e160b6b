"""Whole relay on loopback: simulated drone → WHIP → relay → WHEP → aiortc viewers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import SMALL, Drone, RelayHandle, WhepViewer, wait_for

pytestmark = pytest.mark.quick


async def test_viewer_gets_720p_frames_with_advancing_stamps(live720: RelayHandle) -> None:
    live = live720
    viewer = WhepViewer(live.url, "drone1", rendition="high")
    await viewer.start()
    try:
        await viewer.wait_frames(60, timeout=10)
    finally:
        await viewer.close()
    assert (1280, 720) in viewer.seen.sizes
    stamps = [s.frame for s, _ in viewer.seen.stamps]
    assert len(stamps) >= 50, f"only {len(stamps)} stamps read of {viewer.seen.frames} frames"
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 50
    # Capture → decoded in this viewer, same machine clock: live, not replayed.
    ages = sorted(now * 1000 - s.capture_ms for s, now in viewer.seen.stamps[-30:])
    assert 0 < ages[len(ages) // 2] < 1000, ages


async def test_ten_viewers_share_one_encoder_per_rendition(live: RelayHandle) -> None:
    viewers = [WhepViewer(live.url, "drone1", rendition="low", read_stamps=False)
               for _ in range(10)]
    await asyncio.gather(*(v.start() for v in viewers))
    try:
        await asyncio.gather(*(v.wait_frames(30, timeout=20) for v in viewers))
        doc = (await live.streams())["drone1"]
        assert doc["viewers"] == 10
        assert doc["encoders"] == 1  # only the watched rendition encodes, once
        low = next(r for r in doc["renditions"] if r["name"] == "low")
        assert low["viewers"] == 10 and low["encoding"] and low["size"] == "320x180"
        high = next(r for r in doc["renditions"] if r["name"] == "high")
        assert high["viewers"] == 0 and not high["encoding"]
        # A second rendition adds exactly one encoder, not one per viewer.
        hv = WhepViewer(live.url, "drone1", rendition="high", read_stamps=False)
        await hv.start()
        await hv.wait_frames(10)
        assert (await live.streams())["drone1"]["encoders"] == 2
        await hv.close()
    finally:
        await asyncio.gather(*(v.close() for v in viewers))
    await wait_for(lambda: len(live.viewers("drone1")) == 0, 5, "viewers to leave")


async def test_late_viewer_gets_picture_fast(relay_factory: Any) -> None:
    """A viewer that joins a shared encoder mid-GOP gets a keyframe made for it at once. The
    GOP here is 30 s: without the keyframe on join its first picture would come up to 30 s
    later, and the wait below gives up at 15 s; the encoder made one keyframe more than its
    GOP gives (counted where it is made, not where it is asked for)."""
    relay = await relay_factory({**SMALL, "media": {"keyframe_interval_s": 30}})
    drone = Drone(f"{relay.url}/whip/drone1")
    first = WhepViewer(relay.url, "drone1", rendition="low", read_stamps=False)
    late = WhepViewer(relay.url, "drone1", rendition="low", read_stamps=False)
    try:
        await wait_for(lambda: relay.entry("drone1") is not None and relay.entry("drone1").frames_in > 5, 15,
                       "drone1 live")
        await first.start()
        await first.wait_frames(10)
        encoder = relay.entry("drone1").encoders["low"]
        keys = encoder.keyframes
        await late.start()
        await late.wait_frames(1, timeout=15)  # a picture decodes only from a keyframe
        assert encoder.keyframes > keys, "the late viewer's picture came without a keyframe made for it"
    finally:
        await late.close()
        await first.close()
        await drone.stop()


async def test_publisher_delete_shows_slate_then_recovers(live: RelayHandle) -> None:
    viewer = WhepViewer(live.url, "drone1", rendition="low", read_stamps=False)
    await viewer.start()
    try:
        await viewer.wait_frames(10)
        await live.drone.stop()  # type: ignore[attr-defined]
        entry = live.entry("drone1")
        await wait_for(lambda: entry.state.value == "lost", 5, "stream to be lost")
        assert (await live.streams())["drone1"]["state"] == "lost"
        before = viewer.seen.frames
        await asyncio.sleep(1.5)
        assert viewer.seen.frames > before, "slate frames keep the session alive"
        pipeline = live.services.pipelines["drone1"]
        assert pipeline.slate_frames > 0
        from tests.helpers import Drone

        drone = Drone(f"{live.url}/whip/drone1")
        try:
            await wait_for(lambda: entry.state.value == "live", 10, "stream to come back")
            n = viewer.seen.frames
            await viewer.wait_frames(n + 20, timeout=5)  # same session, live again
        finally:
            await drone.stop()
    finally:
        await viewer.close()
