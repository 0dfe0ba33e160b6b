"""Telemetry: MAVLink over UDP (the simulator's autopilot and pymavlink's own UDP link), the
HTTP endpoint, out to viewers over the data channel, stale when the source goes quiet, and
garbage or intruders skipped without harming the video."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from typing import Any

import aiohttp
import pytest

from drone_sim.flight import Flight
from drone_sim.mavlink import MavlinkSender
from tests.e2e.test_ingest import free_port
from tests.helpers import Drone, WhepViewer, wait_for


def tele_config(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "telemetry": {"stale_after_s": 2.0},
        "streams": {"d1": {"telemetry": f"mavlink+udp://127.0.0.1:{port}",
                           "allow_senders": ["127.0.0.1/32"], **extra}},
    }


def samples(viewer: WhepViewer) -> list[dict[str, Any]]:
    return [s for m in viewer.messages if m.get("type") == "telemetry" for s in m["s"]]


async def test_mavlink_reaches_the_viewer_with_capture_times_and_goes_stale(relay_factory: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(tele_config(port))
    flight = Flight(lat=48.1371, lon=11.5754, altitude=60, start=time.time())
    sender = MavlinkSender(flight, f"mavlink+udp://127.0.0.1:{port}")
    drone = Drone(f"{relay.url}/whip/d1", size=(320, 240))
    viewer = WhepViewer(relay.url, "d1", channel=True)
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        sender.start()
        await viewer.start()
        await viewer.wait_frames(10)
        await wait_for(lambda: len(samples(viewer)) >= 20, 10, "telemetry samples on the data channel")
        got = samples(viewer)
        # Each sample is the drone's state at the time it was measured (its boot clock mapped
        # through SYSTEM_TIME): the flight model at that time gives the same values.
        for s in got[-10:]:
            truth = flight.at(s["t"])
            assert abs(s["lat"] - truth["lat"]) < 3e-6 and abs(s["lon"] - truth["lon"]) < 3e-6, (s, truth)
            assert abs(s["rel_alt"] - 60) < 0.01 and abs(s["gimbal_pitch"] - truth["gimbal_pitch"]) < 0.1
            assert abs(s["center_lat"] - 48.1371) < 1e-5 and abs(s["center_lon"] - 11.5754) < 1e-5
            assert s["hfov"] == 69.0 and 0 < s["battery"] <= 100
        ts = [s["t"] for s in got]
        assert ts == sorted(ts)  # (a later, fuller sample of the same moment may follow)
        distinct = sorted(set(ts))
        gaps = [b - a for a, b in itertools.pairwise(distinct)]
        # 10 Hz from the autopilot; a starved sender thread may bunch a few, never a hole.
        assert 0.08 <= sorted(gaps)[len(gaps) // 2] <= 0.12 and max(gaps) < 1.0, gaps
        # Time-aligned with the picture: the newest sample and the newest frame's capture
        # stamp (sent on the same channel) are from the same moment.
        caps = [f[2] for m in viewer.messages if m.get("type") == "frames" for f in m["f"] if f[2]]
        assert caps and abs(caps[-1] / 1000 - ts[-1]) < 1.0, (caps[-1], ts[-1])
        last_three = [m for m in viewer.messages if m.get("type") == "telemetry"][-3:]
        assert len(last_three) == 3 and all(m["stale"] is False for m in last_three), last_three
        streams = await relay.streams()
        tele = streams["d1"]["telemetry"]
        assert tele["stale"] is False and tele["source"] == "mavlink" and abs(tele["lat"] - 48.1371) < 0.01
        # The autopilot goes quiet: the relay says stale (never a frozen "current" position).
        sender.stop()
        n = len(viewer.messages)
        await wait_for(lambda: any(m.get("type") == "telemetry" and m["stale"]
                                   for m in viewer.messages[n:]), 6, "a stale telemetry message")
        assert (await relay.streams())["d1"]["telemetry"]["stale"] is True
        frames = viewer.seen.frames
        await viewer.wait_frames(frames + 10)  # the video went on
    finally:
        sender.stop()
        await viewer.close()
        await drone.stop()


async def test_pymavlink_udp_link_garbage_and_an_intruder(relay_factory: Any) -> None:
    """pymavlink's own UDP link (as a ground station forwards), then garbage and a sender
    outside allow_senders: counted and skipped, the state unchanged, the video unharmed."""
    from pymavlink import mavutil

    port = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(tele_config(port))
    drone = Drone(f"{relay.url}/whip/d1", size=(320, 240))
    link = mavutil.mavlink_connection(f"udpout:127.0.0.1:{port}", source_system=1, dialect="common")
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        tele = relay.entry("d1").telemetry
        link.mav.global_position_int_send(1000, int(47.3769 * 1e7), int(8.5417 * 1e7), 480_000, 100_000,
                                          0, 0, 0, 9000)
        link.mav.sys_status_send(0, 0, 0, 0, 15800, -1, 77, 0, 0, 0, 0, 0, 0)
        await wait_for(lambda: tele.state.get("battery") == 77.0, 5, "pymavlink's messages")
        assert tele.state["lat"] == 47.3769 and tele.state["rel_alt"] == 100.0 and tele.state["hdg"] == 90.0
        before = dict(tele.state)
        frames_before = relay.entry("d1").frames_in
        # Garbage from the admitted sender's own socket (another port would be a second sender).
        raw = link.port
        for _ in range(20):
            raw.sendto(os.urandom(64), ("127.0.0.1", port))
        raw.sendto(b"\xfd\x09\x00\x00\x00\x01\x01\x21\x00\x00" + b"\xff" * 30, ("127.0.0.1", port))
        # A well-formed message with a latitude no drone has (1e9 * 1e-7 = 100°): refused.
        link.mav.global_position_int_send(2000, 1_000_000_000, 0, 0, 0, 0, 0, 0, 0)
        await wait_for(lambda: tele.malformed.get("mavlink", 0) >= 21, 5, "garbage counted")
        assert tele.state == before
        # An intruder (127.0.0.2 is not in allow_senders) with a valid message: ignored.
        intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        intruder.bind(("127.0.0.2", 0))
        from pymavlink.dialects.v20 import common

        fake = common.MAVLink(None, srcSystem=1).global_position_int_encode(
            3000, 0, 0, 0, 0, 0, 0, 0, 0).pack(common.MAVLink(None, srcSystem=1))
        intruder.sendto(fake, ("127.0.0.1", port))
        await asyncio.sleep(0.5)
        assert tele.state == before
        async with aiohttp.ClientSession() as s, s.get(relay.url + "/metrics") as r:
            text = await r.text()
        assert "relay_refused_sender_not_allowed_total 1.0" in text
        assert "relay_telemetry_malformed_total 2" in text  # 21 and more: random bytes may hold several
        assert relay.entry("d1").frames_in > frames_before  # the video went on
        intruder.close()
    finally:
        link.close()
        await drone.stop()


async def test_http_telemetry_needs_the_publishers_token(relay_factory: Any) -> None:
    relay = await relay_factory({
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "auth": {"enabled": True, "view_token": "v-secret"},
        "streams": {"d1": {"publish_token": "p-secret"}, "d2": {"publish_token": "p2-secret"}},
    })
    url = f"{relay.url}/api/streams/d1/telemetry"
    sample = {"lat": 50.9375, "lon": 6.9603, "rel_alt": 45.5, "battery": 64, "t": time.time()}
    tele = relay.entry("d1").telemetry
    async with aiohttp.ClientSession() as s:
        for token, status in ((None, 401), ("v-secret", 403), ("p2-secret", 403), ("wrong", 403)):
            h = {"Authorization": f"Bearer {token}"} if token else {}
            async with s.post(url, json=sample, headers=h) as r:
                assert r.status == status, (token, r.status, await r.text())
        assert tele.state == {}
        pub = {"Authorization": "Bearer p-secret"}
        for bad, status, why in (
            ({"lat": 91.0}, 422, "outside"),
            ({"lat": "50"}, 422, "must be a number"),
            ({"altitude": 3}, 422, "unknown telemetry field"),
            ({"lat": 50.0, "t": time.time() - 3600}, 422, "Unix time"),
            ("<script>", 400, "JSON"),
        ):
            async with s.post(url, data=bad if isinstance(bad, str) else None,
                              json=None if isinstance(bad, str) else bad, headers=pub) as r:
                body = await r.text()
                assert r.status == status and why in body, (bad, r.status, body)
        assert tele.state == {} and tele.malformed["http"] == 5
        async with s.post(url, json=[sample, {**sample, "battery": 63, "t": sample["t"] + 0.5}],
                          headers=pub) as r:
            assert r.status == 204, await r.text()
        assert tele.state["battery"] == 63 and tele.state["lat"] == 50.9375 and tele.source == "http"
        async with s.get(url, headers={"Authorization": "Bearer v-secret"}) as r:
            doc = await r.json()
        assert doc["state"]["rel_alt"] == 45.5 and doc["state"]["stale"] is False
        assert doc["track"] and doc["track"][0][1:] == [50.9375, 6.9603]


async def test_a_viewer_joining_late_gets_a_small_first_message(relay_factory: Any) -> None:
    """40 s of 10 Hz telemetry fill the ring (300 samples); a viewer joining then gets the
    last 50 in its first message (one message must stay small), and the channel lives on."""
    relay = await relay_factory({"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
                                 "webrtc": {"ice_addresses": ["127.0.0.1"]}, "streams": {"d1": {}}})
    drone = Drone(f"{relay.url}/whip/d1", size=(320, 240))
    viewer = WhepViewer(relay.url, "d1", channel=True, read_stamps=False)
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        t0 = time.time() - 40
        async with aiohttp.ClientSession() as s:
            for batch in range(8):
                docs = [{"t": t0 + (batch * 50 + i) * 0.1, "lat": 50 + (batch * 50 + i) * 1e-5, "lon": 8.0}
                        for i in range(50)]
                async with s.post(f"{relay.url}/api/streams/d1/telemetry", json=docs) as r:
                    assert r.status == 204, await r.text()
        assert relay.entry("d1").telemetry.seq >= 400
        await viewer.start()
        await wait_for(lambda: any(m.get("type") == "telemetry" for m in viewer.messages), 10, "telemetry")
        first = next(m for m in viewer.messages if m.get("type") == "telemetry")
        assert len(first["s"]) == 50 and first["s"][-1]["lat"] == pytest.approx(50 + 399e-5)
        async with aiohttp.ClientSession() as s, s.post(f"{relay.url}/api/streams/d1/telemetry",
                                                        json={"lat": 51.0, "lon": 8.0}) as r:
            assert r.status == 204
        await wait_for(lambda: any(smp["lat"] == 51.0 for m in viewer.messages if m.get("type") == "telemetry"
                                   for smp in m["s"]), 5, "the next sample on the same channel")
    finally:
        await viewer.close()
        await drone.stop()
