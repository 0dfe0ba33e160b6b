"""Viewer reports over the data channel: clock pings, stats, and the latency-creep guard."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.helpers import RelayHandle, WhepViewer, wait_for


async def test_ping_report_and_creep_guard(live: RelayHandle) -> None:
    viewer = WhepViewer(live.url, "drone1", rendition="low", read_stamps=False, channel=True)
    await viewer.start()
    try:
        await viewer.wait_frames(10)
        ch = viewer.channel
        await wait_for(lambda: ch.readyState == "open", 5, "data channel")
        await wait_for(lambda: any(m["type"] == "hello" for m in viewer.messages), 5, "hello")
        hello = next(m for m in viewer.messages if m["type"] == "hello")
        assert hello["thresholds"]["creep_ms"] == live.config.latency.creep_ms
        # NTP-style ping: the relay stamps receive and send times on its clock.
        t0 = time.time() * 1000
        ch.send(json.dumps({"type": "ping", "id": 1, "t0": t0}))
        await wait_for(lambda: any(m["type"] == "pong" for m in viewer.messages), 5, "pong")
        pong = next(m for m in viewer.messages if m["type"] == "pong")
        assert pong["t0"] == t0 and t0 <= pong["t1"] <= pong["t2"] <= time.time() * 1000
        # A normal report is stored and shown; junk fields are dropped.
        ch.send(json.dumps({"type": "report", "report": {
            "latency_ms": 120.5, "fps": 30, "loss_pct": 0.0, "latency_kind": "glass-to-glass",
            "evil": "x" * 100}}))
        await wait_for(lambda: any(v.report.get("latency_ms") == 120.5
                                   for v in live.viewers("drone1").values()), 5, "report stored")
        info = next(iter(live.viewers("drone1").values()))
        assert "evil" not in info.report and info.creep_resets == 0
        # Latency past the creep bound: the viewer is moved to the live edge, once.
        whep = live.services.whep
        reader = whep.viewers[info.session].track.reader
        asked_before = reader.keyframe_requests
        for _ in range(3):
            ch.send(json.dumps({"type": "report", "report": {"latency_ms": 5000.0}}))
        await wait_for(lambda: info.creep_resets == 1, 5, "creep reset")
        await asyncio.sleep(0.3)
        assert info.creep_resets == 1  # rate-limited: one reset per 5 s
        assert whep.creep_resets >= 1
        # The reset emptied the viewer's queue and asked for a keyframe to resume at: the
        # reader's own request (removing skip_to_live from the guard fails here).
        assert reader.keyframe_requests == asked_before + 1, (asked_before, reader.keyframe_requests)
        n = viewer.seen.frames
        await viewer.wait_frames(n + 10, timeout=5)  # picture continues from the next keyframe
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{live.url}/metrics") as r:
                text = await r.text()
            async with s.get(f"{live.url}/api/streams/drone1/stats") as r:
                stats = await r.json()
        assert "relay_latency_creep_resets_total 1.0" in text
        v = next(v for v in stats["viewers"] if v["id"] == info.public_id)
        assert v["creep_resets"] == 1 and v["report"]["latency_ms"] == 5000.0
        # Garbage on the channel is ignored; the session lives on.
        ch.send("not json")
        ch.send(json.dumps({"type": "report", "report": [1, 2]}))
        n = viewer.seen.frames
        await viewer.wait_frames(n + 5, timeout=5)
    finally:
        await viewer.close()
