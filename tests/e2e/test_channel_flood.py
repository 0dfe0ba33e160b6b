"""A viewer that abuses its data channels: a dozen extra channels, garbage by the hundred,
pings whose fields are not numbers. The extra channels are closed at once (no hello, no
marker snapshot each), garbage is counted and said three times at most, only numbers are
echoed, and the viewer's picture and the other viewers go on."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.helpers import RelayHandle, WhepViewer, wait_for


async def test_a_channel_flood_is_bounded(live: RelayHandle, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "relay.egress")
    clean = WhepViewer(live.url, "drone1", rendition="low", read_stamps=False)
    await clean.start()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    relay_ch = pc.createDataChannel("relay")
    got: dict[str, list[str]] = {}
    extra = [pc.createDataChannel(f"x{i}") for i in range(12)] + [pc.createDataChannel("relay")]
    for ch in [relay_ch, *extra]:
        key = ch.label + str(id(ch))
        got[key] = []
        ch.on("message", got[key].append)
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"{live.url}/whep/drone1?rendition=low", data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"}) as r:
            assert r.status == 201
            answer = await r.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        mine = str(id(relay_ch))
        await wait_for(lambda: any('"hello"' in m for m in got["relay" + mine]), 15, "hello on the page's channel")
        await wait_for(lambda: all(ch.readyState == "closed" for ch in extra), 10, "extra channels closed")
        assert not any(got[ch.label + str(id(ch))] for ch in extra), "an extra channel was greeted"
        for _ in range(300):
            relay_ch.send("{not json")
        relay_ch.send(json.dumps({"type": "ping", "id": "x" * 3000, "t0": 1.0}))
        relay_ch.send(json.dumps({"type": "ping", "id": 7, "t0": float("1e300")}))
        relay_ch.send(json.dumps({"type": "ping", "id": 8, "t0": 123.5}))
        await wait_for(lambda: any('"pong"' in m for m in got["relay" + mine]), 10, "the numeric ping's pong")
        await asyncio.sleep(0.5)
        pongs = [json.loads(m) for m in got["relay" + mine] if '"pong"' in m]
        assert [p["id"] for p in pongs] == [8], pongs
        viewer: Any = next(v for v in live.viewers("drone1").values() if v.bad_messages)
        # 300 not JSON, and the two pings whose fields are not finite numbers in range.
        assert viewer.bad_messages == 302 and viewer.channels_refused == 13
        lines = [r for r in caplog.records if r.getMessage() in ("bad data channel message",
                                                                 "data channel refused: a viewer opens the page's two only")]
        assert len(lines) <= 3, [r.getMessage() for r in lines]
        # The well-behaved viewer beside it kept its picture.
        n = clean.seen.frames
        await clean.wait_frames(n + 20, timeout=10)
    finally:
        await pc.close()
        await clean.close()
