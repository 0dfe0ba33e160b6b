"""The DJI pieces that need no broker: the lens table, dead reckoning between 0.5 Hz samples,
the config's refusals, errors in words."""

from __future__ import annotations

import math

import pytest

from drone_sim.flight import Flight
from relay.config import ConfigError, parse
from relay.dji import error_words
from relay.dji.estimate import DeadReckoning
from relay.dji.lenses import Lenses


def test_the_lens_table_knows_its_cameras_and_says_when_it_does_not() -> None:
    lenses = Lenses([("98-0/wide", 70.0)])
    assert lenses.fov("53-0-0", "normal", None, None) == (71.5, pytest.approx(math.degrees(2 * math.atan(math.tan(math.radians(35.75)) * 9 / 16)), abs=0.01))
    h, _ = lenses.fov("53-0-0", "zoom", 4.0, None) or (0, 0)
    assert h == pytest.approx(math.degrees(2 * math.atan(math.tan(math.radians(35.75)) / 4)), abs=0.01)
    assert lenses.fov("53-0-0", "ir", None, None)[0] == 49.4  # type: ignore[index]
    assert lenses.fov("52-0-0", "ir", None, None) is None  # an M30 has no IR lens
    assert lenses.fov("177-0-0", "normal", None, None) is None  # unknown: no footprint, not a wrong one
    assert lenses.fov("98-0-0", "wide", None, None)[0] == 70.0  # type: ignore[index]  # the brigade's own figure


def test_dead_reckoning_carries_an_orbit_forward_within_its_bound() -> None:
    """On a 100 m orbit at 10 m/s, sampled every 2 s: t seconds after a sample the straight
    line along the last chord is off by about v·t·θ/2 (the chord lags the turn by half its
    angle θ = v·2 s/r) plus v²t²/(2r) (the turn since): 3.7 m at 1.9 s; past the horizon the
    last measurement stands and nothing is called estimated."""
    f = Flight(lat=52.39, lon=13.06, altitude=70, radius=100, speed=10, start=0.0)
    dr = DeadReckoning(horizon_s=3.0)
    worst = 0.0
    for k in range(1, 10):
        t0 = 2.0 * k
        s = f.at(t0)
        dr.measured(t0, {key: s[key] for key in ("lat", "lon", "rel_alt", "hdg", "gimbal_yaw", "gimbal_pitch")})
        if k < 2:
            continue
        for dt in (0.5, 1.0, 1.5, 1.9):
            est, truth = dr.at(t0 + dt), f.at(t0 + dt)
            assert est is not None and est["est_s"] == dt
            err = math.hypot((est["lat"] - truth["lat"]) * 111_320,
                             (est["lon"] - truth["lon"]) * 111_320 * math.cos(math.radians(truth["lat"])))
            worst = max(worst, err)
            assert abs((est["gimbal_yaw"] - truth["gimbal_yaw"] + 180) % 360 - 180) < 3
    assert worst < 4.0, worst
    late = dr.at(18.0 + 5.0)
    assert late is not None and "est_s" not in late and late["lat"] == round(f.at(18.0)["lat"], 7)
    dr.measured(10.0, {"lat": 0.0})  # older than the last: ignored
    assert dr.last is not None and dr.last[0] == 18.0


def test_dji_credentials_come_only_from_the_environment() -> None:
    base = {"broker": "mqtt://127.0.0.1:1883", "password_env": "P"}
    ok = parse({"dji": base, "rtmp": {"enabled": True}}, env={"P": "secret-pass"})
    assert ok.dji.enabled and ok.dji.password == "secret-pass"
    for bad, problem in (
        ({**base, "password": "secret-pass"}, "dji.password: credentials come only from the environment"),
        ({**base, "broker": "mqtt://u:p@host:1883"}, "dji.broker: must be mqtt://"),
        ({**base, "broker": "http://host"}, "dji.broker: must be mqtt://"),
        ({**base, "aircraft": {"SN-1": "d1"}}, "dji.aircraft.SN-1: is not a DJI serial"),
        ({**base, "fov": {"53-0/tele": 12}}, "dji.fov.53-0/tele: must be"),
        ({**base, "fov": {"53-0/ir": 500}}, "dji.fov.53-0/ir: must be the lens's horizontal field of view"),
        ({"broker": "mqtt://127.0.0.1:1883"}, "dji.password_env: the relay's broker account needs a password"),
    ):
        with pytest.raises(ConfigError, match=problem.replace(".", "\\.").replace("?", "\\?")[:60]):
            parse({"dji": bad, "rtmp": {"enabled": True}}, env={"P": "secret-pass"})
    with pytest.raises(ConfigError, match=r"dji\.push"):
        parse({"dji": base}, env={"P": "secret-pass"})  # RTMP off: the aircraft could not push
    with pytest.raises(ConfigError, match=r"dji\.password_env: environment variable P is not set"):
        parse({"dji": base, "rtmp": {"enabled": True}}, env={})


def test_dji_errors_are_said_in_words() -> None:
    assert error_words(0) == "done"
    assert error_words(613006) == "the pilot is not on the camera view: ask them to open it (DJI 613006)"
    assert error_words(513010).startswith("the aircraft cannot reach the relay's address")
    assert error_words(700001) == "error (DJI 700001)"
