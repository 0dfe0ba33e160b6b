"""Telemetry without a network: the merged state, range checks, staleness, KLV and MAVLink
decoding against the simulator's encoders, and the overlay."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from drone_sim.flight import Flight, ground_point
from drone_sim.klv import klv_packet
from relay.pipeline.overlay import draw_telemetry
from relay.sources.klv import KlvError, fields_from_klv
from relay.telemetry import Telemetry, TelemetryError, clean_update


def test_clean_update_refuses_rather_than_clamps() -> None:
    assert clean_update({"lat": 52.123456789, "battery": 50}) == {"lat": 52.1234568, "battery": 50.0}
    for bad in ({"lat": 90.5}, {"lon": float("nan")}, {"battery": True}, {"speed": "3"}, {"x": 1}):
        with pytest.raises(TelemetryError):
            clean_update(bad)


def test_merge_throttle_since_and_stale() -> None:
    tele = Telemetry("d", stale_after_s=3.0)
    assert tele.summary() is None and tele.stale()
    t0 = 1_800_000_000.0
    tele.update("mavlink", {"lat": 1.0, "lon": 2.0}, t=t0, arrival=100.0)
    tele.update("mavlink", {"hdg": 90.0}, t=t0 + 0.01, arrival=100.01)  # merged, not a sample yet
    assert tele.seq == 1 and tele._pending
    tele.flush()
    assert tele.seq == 2 and '"hdg":90.0' in tele.since(1)[0] and '"lat":1.0' in tele.since(1)[0]
    for i in range(1, 30):
        tele.update("mavlink", {"lat": 1.0 + i * 1e-5}, t=t0 + i * 0.1, arrival=100.0 + i * 0.1)
    # At most 10 samples a second: the update 90 ms after the flushed one waits for the next.
    assert tele.seq == 30 and len(tele.since(0)) == 30 and tele.since(30) == []
    assert len(tele.track) == 3  # one point a second
    assert not tele.stale(now=103.0) and tele.stale(now=106.0)


def test_klv_round_trip_and_damage() -> None:
    f = Flight(lat=48.1, lon=11.5, start=0.0)
    state = f.at(12.3)
    t, fields = fields_from_klv(klv_packet(state, 1_800_000_000.25, f.home_alt))
    assert t == pytest.approx(1_800_000_000.25, abs=1e-6)
    assert fields["lat"] == pytest.approx(state["lat"], abs=1e-6)
    assert fields["rel_alt"] == pytest.approx(80, abs=0.5)
    assert fields["gimbal_yaw"] == pytest.approx(state["gimbal_yaw"], abs=0.05)
    assert fields["center_lon"] == pytest.approx(11.5, abs=1e-6)
    good = klv_packet(state, 1_800_000_000.0, f.home_alt)
    for bad in (good[:-1] + bytes([good[-1] ^ 1]), good[:30], b"\x00" * 40):
        with pytest.raises(KlvError):
            fields_from_klv(bad)


def test_mavlink_gimbal_quaternion_and_frames() -> None:
    from pymavlink.dialects.v20 import common
    from pymavlink.quaternion import Quaternion

    from relay.sources.mavlink import fields_of

    q = [float(x) for x in Quaternion([0.0, math.radians(-40), math.radians(10)]).q]
    earth = common.MAVLink_gimbal_device_attitude_status_message(0, 0, 0, 64, q, 0, 0, 0, 0, 0, 0, 0)
    assert fields_of(earth, {}) == pytest.approx({"gimbal_pitch": -40.0, "gimbal_yaw": 10.0})
    vehicle = common.MAVLink_gimbal_device_attitude_status_message(0, 0, 0, 32, q, 0, 0, 0, 0, 0, 0, 0)
    assert fields_of(vehicle, {"hdg": 355.0})["gimbal_yaw"] == pytest.approx(5.0)


def test_flight_looks_at_the_incident() -> None:
    f = Flight(lat=50.0, lon=8.0, altitude=60, radius=100, start=0.0)
    for t in (0.0, 7.0, 31.0):
        s = f.at(t)
        c = ground_point(s["lat"], s["lon"], 60, s["gimbal_yaw"], s["gimbal_pitch"])
        assert c is not None and abs(c[0] - 50.0) < 2e-6 and abs(c[1] - 8.0) < 2e-6


def test_overlay_draws_and_says_stale() -> None:
    w, h = 640, 360
    blank = np.full((h * 3 // 2, w), 128, np.uint8)
    state = {"hdg": 95.0, "rel_alt": 80.0, "lat": 52.5, "lon": 13.4, "battery": 60.0}
    a, b = blank.copy(), blank.copy()
    draw_telemetry(a, w, h, state, False)
    draw_telemetry(b, w, h, state, True)
    assert (a[: h // 6, w // 3 : 2 * w // 3] != 128).any()  # the heading tape, top centre
    assert (a[h - h // 8 : h, w // 2 :] != 128).any()  # position and battery, bottom right
    assert (a[h:] == 128).all()  # chroma untouched
    assert (a[h - h // 8 : h] != b[h - h // 8 : h]).any()  # "TELEMETRY STALE" in the picture
    started = time.perf_counter()
    draw_telemetry(a, w, h, {}, False)
    assert time.perf_counter() - started < 1.0


def test_each_mavlink_sample_keeps_its_own_time_without_system_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """An autopilot that sends no SYSTEM_TIME: each position is its own sample at its
    arrival (it stuck to an earlier sample's time for up to 2 s); a battery message, which
    has no time of its own, joins the newest state."""
    import time as time_module

    from pymavlink.dialects.v20 import ardupilotmega as dialect

    from relay.config import parse
    from relay.registry import Entry
    from relay.sources.mavlink import MavlinkSource

    entry = Entry("d1", parse({}, env={}), configured=True)
    src = MavlinkSource(entry, "mavlink+udp://127.0.0.1:14550", (), 1.0)
    mav = dialect.MAVLink(None, srcSystem=1, srcComponent=1)
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: clock[0])
    for i in range(10):
        clock[0] += 0.1
        msg = mav.global_position_int_encode(1000 * i + 100, int(52.52e7) + i * 100, int(13.405e7), 80000,
                                            80000, 0, 0, 0, 9000)
        src.datagram_received(msg.pack(mav), ("127.0.0.1", 5000))
    battery = mav.battery_status_encode(0, 0, 0, 2500, [16000] + [65535] * 9, -1, -1, -1, 90)
    src.datagram_received(battery.pack(mav), ("127.0.0.1", 5000))
    tele = entry.telemetry
    tele.flush()
    times = [t for _, t, _ in tele.recent]
    # 10 positions at 10 Hz: 10 samples, 0.1 s apart; the battery's is at the last one's time
    assert len(set(times)) == 10 and times[-1] == times[-2], times
    assert times == sorted(times) and times[-1] - times[0] == pytest.approx(0.9, abs=1e-6)
    assert tele.state["battery"] == 90.0 and tele.t == pytest.approx(clock[0])
