"""Keyframe isolation: one viewer's PLI storm must not multiply keyframes for the others."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.helpers import Drone, WhepViewer, wait_for

WINDOW_S = 8.0


async def _keyframes_in(entry: Any, rendition: str, seconds: float) -> int:
    enc = entry.encoders[rendition]
    k0 = enc.keyframes
    await asyncio.sleep(seconds)
    return int(enc.keyframes - k0)


async def _pli_storm(viewer: WhepViewer, per_s: float, stop: asyncio.Event) -> int:
    """Send PLIs for the relay's video SSRC as fast as a broken decoder would."""
    assert viewer.pc.remoteDescription is not None
    ssrc = int(re.search(r"a=ssrc:(\d+) ", viewer.pc.remoteDescription.sdp).group(1))  # type: ignore[union-attr]
    receiver = viewer.pc.getTransceivers()[0].receiver
    sent = 0
    while not stop.is_set():
        await receiver._send_rtcp_pli(ssrc)
        sent += 1
        await asyncio.sleep(1 / per_s)
    return sent


async def test_a_pli_storm_does_not_raise_a_clean_viewers_keyframe_rate(relay_factory: Any) -> None:
    relay = await relay_factory({
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "media": {"keyframe_interval_s": 2.0},
    })
    drone = Drone(f"{relay.url}/whip/d1", size=(640, 360))
    clean = WhepViewer(relay.url, "d1", rendition="low", read_stamps=False)
    lossy = WhepViewer(relay.url, "d1", rendition="low", read_stamps=False)
    stop = asyncio.Event()
    try:
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 15, "d1")
        await clean.start()
        await clean.wait_frames(10)
        entry = relay.entry("d1")
        await asyncio.sleep(1.0)
        alone = await _keyframes_in(entry, "low", WINDOW_S)
        await lossy.start()
        await lossy.wait_frames(5)
        await asyncio.sleep(1.0)  # its join keyframe is not part of the comparison
        storm = asyncio.ensure_future(_pli_storm(lossy, 20, stop))
        beside = await _keyframes_in(entry, "low", WINDOW_S)
        stop.set()
        sent = await storm
        n = clean.seen.frames
        await clean.wait_frames(n + 10, timeout=5)
        stats = relay.services.whep.reader_stats(next(iter(
            s for s, info in relay.viewers("d1").items() if info.session == lossy.location.rsplit("/", 1)[1])))
        print(f"\nkeyframes in {WINDOW_S:.0f} s: alone {alone}, beside a {sent}-PLI storm {beside} "
              f"(ratio {beside / max(alone, 1):.2f}); storm requests refused {stats['keyframe_requests_refused']}")
        assert sent > 100 and stats["keyframe_requests_refused"] > 100
        assert beside <= alone + 2, f"the PLI storm raised keyframes from {alone} to {beside}"
    finally:
        stop.set()
        await lossy.close()
        await clean.close()
        await drone.stop()
