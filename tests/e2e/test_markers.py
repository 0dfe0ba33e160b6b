"""Markers over HTTP and the viewers' data channel: who may do what (each role and action
tried, nothing changed by a refusal), a click on the picture tied to the ground by the
telemetry of that frame's capture time, the live feed on the channel the page already has,
the signed log across a restart with replay and verify, exports, bad input and the rate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drone_sim.flight import Flight
from relay.geo import distance_m, ground_point
from tests.helpers import WhepViewer, call, wait_for

pytestmark = pytest.mark.quick
SECRET = "marker-test-secret-0123456789abcdef-xyz"
TOKENS = {
    "control": "control-secret", "viewer": "viewer-secret", "marker": "viewer-mark-secret",
    "publisher": "pub-secret", "admin": "admin-secret",
}


def config(tmp_path: Path, **markers: Any) -> dict[str, Any]:
    return {
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "record": {"enabled": True, "dir": str(tmp_path / "rec"), "min_free_mb": 0},
        "markers": markers,
        "auth": {"enabled": True, "jwt_secret": SECRET,
                 "tokens": [{"token": TOKENS["control"], "role": "control", "name": "Leitstelle"},
                            {"token": TOKENS["viewer"], "role": "viewer", "name": "tablet"},
                            {"token": TOKENS["marker"], "role": "viewer", "name": "ELW 1", "mark": True},
                            {"token": TOKENS["admin"], "role": "admin", "name": "admin"}]},
        "streams": {"d1": {"publish_token": TOKENS["publisher"]}, "d2": {}},
    }



async def telemetry(url: str, samples: list[dict[str, Any]]) -> None:
    st, body = await call("POST", f"{url}/api/streams/d1/telemetry", TOKENS["publisher"], samples)
    assert st == 204 or st == 200, body


def log_lines(tmp_path: Path) -> int:
    p = tmp_path / "rec" / "markers.jsonl"
    return len(p.read_bytes().splitlines()) if p.exists() else 0


async def test_each_role_and_action(relay_factory: Any, tmp_path: Path) -> None:
    relay = await relay_factory(config(tmp_path))
    url = relay.url
    book = relay.services.markers
    # Share links with and without the right to mark, made by the control centre.
    links = {}
    for name, mark in (("share", False), ("share-mark", True)):
        st, share = await call("POST", f"{url}/api/shares", TOKENS["control"],
                               {"stream": "d1", "label": name, "ttl_s": 600, "mark": mark})
        assert st == 201, share
        links[name] = share["token"]
    # A viewer may not hand out what it does not have: a share link that may mark.
    st, body = await call("POST", f"{url}/api/tokens", TOKENS["marker"], {"streams": ["d1"], "mark": True})
    assert st == 403, body
    who = {**TOKENS, **links, "nobody": None, "forged": "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYWRtaW4ifQ.x"}
    may = {"control", "admin", "marker", "share-mark"}
    spot = {"kind": "person", "label": "two on the roof", "lat": 52.52, "lon": 13.405}
    st, placed = await call("POST", f"{url}/api/markers", TOKENS["control"], spot)
    assert st == 201 and placed["by"] == "Leitstelle", placed
    for name, token in who.items():
        expect_refusal = 401 if token is None else 403
        for method, path, body in (("POST", "/api/markers", spot),
                                   ("PATCH", f"/api/markers/{placed['id']}", {"label": f"by {name}"}),
                                   ("DELETE", f"/api/markers/{placed['id']}", None)):
            if method == "DELETE" and name in may:
                continue  # removing is tried once, below
            before, lines = book.listing(), log_lines(tmp_path)
            st, answer = await call(method, f"{url}{path}", token, body)
            if name in may:
                assert st in (200, 201), (name, method, answer)
            else:
                assert st == expect_refusal, (name, method, st, answer)
                assert book.listing() == before and log_lines(tmp_path) == lines, (name, method)
        # Everyone who may watch sees the markers and whether they may mark.
        st, listing = await call("GET", f"{url}/api/markers", token)
        if token is None or name == "forged":
            assert st in (401, 403)
        else:
            assert st == 200 and listing["may_mark"] is (name in may), (name, listing)
    st, removed = await call("DELETE", f"{url}/api/markers/{placed['id']}", links["share-mark"])
    assert st == 200 and removed["removed_by"] == "share-mark"
    assert placed["id"] not in {m["id"] for m in book.listing()}
    # The configured roles decide: here a plain viewer may mark, control may not.
    relay2 = await relay_factory(config(tmp_path / "2", roles=["viewer", "admin"]))
    st, _ = await call("POST", f"{relay2.url}/api/markers", TOKENS["viewer"], spot)
    assert st == 201
    st, _ = await call("POST", f"{relay2.url}/api/markers", TOKENS["control"], spot)
    assert st == 403


async def test_picture_click_is_tied_to_the_ground_at_the_frames_capture_time(
        relay_factory: Any, tmp_path: Path) -> None:
    relay = await relay_factory(config(tmp_path))
    url, ctl = relay.url, TOKENS["control"]
    body = {"kind": "hotspot", "label": "glow", "stream": "d1", "u": 0.4, "v": -0.3}
    st, answer = await call("POST", f"{url}/api/markers", ctl, {**body, "t": time.time()})
    assert st == 422 and "no telemetry" in answer and "map" in answer
    now = time.time()
    flight = Flight(start=now - 20)
    await telemetry(url, [{**flight.at(now - 5 + k * 0.5), "t": now - 5 + k * 0.5} for k in range(11)])
    for t in (now - 4.5, now - 1.0):
        st, m = await call("POST", f"{url}/api/markers", ctl, {**body, "t": t})
        assert st == 201, m
        s = flight.at(round((t - (now - 5)) / 0.5) * 0.5 + now - 5)
        want = ground_point(s, 0.4, -0.3)
        assert want is not None and m["stream"] == "d1"
        assert distance_m(m["lat"], m["lon"], *want) < 0.5, (m, want)
    # The two frames were taken 3.5 s apart: the same pixel is another place on the ground.
    a, b = relay.services.markers.listing()
    assert distance_m(a["lat"], a["lon"], b["lat"], b["lon"]) > 5
    # Above the horizon, out of range, a stream the token may not watch: refused, said why.
    for bad, status, why in (({**body, "v": 1.0, "u": 0.0, "t": now - 1}, 422, None),
                             ({**body, "u": 2.0}, 422, "u must be"),
                             ({**body, "stream": "../x"}, 422, "stream must be")):
        st, answer = await call("POST", f"{url}/api/markers", ctl, bad)
        if st == 201:  # the top edge may still meet the ground at 80 m: then it is on it
            assert why is None
            continue
        assert st == status and (why is None or why in answer), answer
    st, answer = await call("POST", f"{url}/api/markers", TOKENS["marker"],
                            {**body, "stream": "d2", "t": now - 1})
    assert st == 422 and "no telemetry" in answer  # may watch d2 (any stream), no telemetry there


async def test_markers_on_the_viewers_data_channel(relay_factory: Any, tmp_path: Path) -> None:
    from tests.helpers import Drone

    relay = await relay_factory(config(tmp_path))
    drone = Drone(f"{relay.url}/whip/d1", token=TOKENS["publisher"], size=(320, 180))
    viewer = WhepViewer(relay.url, "d1", token=TOKENS["viewer"], channel=True)
    try:
        st, first = await call("POST", f"{relay.url}/api/markers", TOKENS["control"],
                               {"kind": "water", "label": "hydrant", "lat": 52.52, "lon": 13.4})
        assert st == 201
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        await viewer.start()
        await wait_for(lambda: any(m.get("type") == "markers" for m in viewer.messages), 10, "every marker")
        snap = next(m for m in viewer.messages if m.get("type") == "markers")
        assert [m["id"] for m in snap["all"]] == [first["id"]]
        t0 = time.monotonic()
        st, second = await call("POST", f"{relay.url}/api/markers", TOKENS["control"],
                                {"kind": "person", "label": "<img src=x onerror=alert(1)>", "lat": 52.521,
                                 "lon": 13.401})
        assert st == 201
        await wait_for(lambda: any(m.get("type") == "marker" and m["m"]["id"] == second["id"]
                                   for m in viewer.messages), 5.0, "the new marker on the channel")
        print(f"marker placed -> on the viewer's channel: {(time.monotonic() - t0) * 1000:.0f} ms")
        got = next(m for m in viewer.messages if m.get("type") == "marker")
        assert got["op"] == "add" and got["m"]["label"] == "<img src=x onerror=alert(1)>"  # data, as given
        st, _ = await call("DELETE", f"{relay.url}/api/markers/{first['id']}", TOKENS["control"])
        await wait_for(lambda: any(m.get("type") == "marker" and m["op"] == "remove"
                                   for m in viewer.messages), 1.0, "the removal")
        # ...and the wall reads them from /api/streams.
        st, streams = await call("GET", f"{relay.url}/api/streams", TOKENS["control"])
        assert [m["id"] for m in streams["markers"]] == [second["id"]]
    finally:
        await viewer.close()
        await drone.stop()


async def test_signed_log_restart_replay_export_verify(relay_factory: Any, tmp_path: Path) -> None:
    relay = await relay_factory(config(tmp_path))
    url, ctl = relay.url, TOKENS["control"]
    st, a = await call("POST", f"{url}/api/markers", ctl,
                       {"kind": "hazard", "label": "gas <tank> & pipe", "lat": 52.52, "lon": 13.4})
    st, b = await call("POST", f"{url}/api/markers", ctl, {"kind": "access", "label": "gate", "lat": 52.5205,
                                                          "lon": 13.4003})
    await asyncio.sleep(0.05)
    before_removal = time.time()
    await asyncio.sleep(0.05)
    st, _ = await call("DELETE", f"{url}/api/markers/{a['id']}", ctl)
    assert st == 200
    await relay.runner.cleanup()
    # Another relay on the same record: the markers are back, the removed one gone, and
    # replay at a time before the removal shows it.
    relay = await relay_factory(config(tmp_path))
    url = relay.url
    st, now = await call("GET", f"{url}/api/markers", ctl)
    assert [m["id"] for m in now["markers"]] == [b["id"]] and now["recorded"] is True
    st, then = await call("GET", f"{url}/api/markers?at={before_removal}", ctl)
    assert {m["id"] for m in then["markers"]} == {a["id"], b["id"]}
    st, gj = await call("GET", f"{url}/api/markers.geojson?at={before_removal}", ctl)
    assert st == 200 and len(gj["features"]) == 2
    st, kml = await call("GET", f"{url}/api/markers.kml", ctl)
    assert st == 200 and "gate" in kml and "gas" not in kml
    # verify covers the log, and names a line someone changed.
    rec = tmp_path / "rec"
    out = subprocess.run([sys.executable, "-m", "relay", "verify", str(rec)], capture_output=True, text=True)
    assert out.returncode == 0 and "marker log: 3 entries verified" in out.stdout, out.stdout + out.stderr
    log = rec / "markers.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"gate"', b'"wall"'))
    out = subprocess.run([sys.executable, "-m", "relay", "verify", str(rec)], capture_output=True, text=True)
    assert out.returncode != 0 and "markers.jsonl line 2" in out.stdout + out.stderr, out.stdout


async def test_bad_input_and_the_rate(relay_factory: Any, tmp_path: Path) -> None:
    relay = await relay_factory(config(tmp_path, rate_per_min=10))  # every attempt counts
    url = relay.url
    book = relay.services.markers
    for body, status, why in (
            ("not json", 400, "JSON object"),
            ({"kind": "note", "label": "x" * 81, "lat": 1, "lon": 1}, 422, "longer than 80"),
            ({"kind": "note", "label": "ok", "lat": 1e9, "lon": 1}, 422, "lat must be"),
            ({"kind": "bomb", "label": "ok", "lat": 1, "lon": 1}, 422, "kind must be"),
            ({"kind": "note", "label": "ok", "lat": 1, "lon": 1, "by": "someone else"}, 422, "unknown")):
        async with aiohttp.ClientSession() as s, s.post(
                f"{url}/api/markers", data=body if isinstance(body, str) else json.dumps(body),
                headers={"Authorization": f"Bearer {TOKENS['marker']}"}) as r:
            assert r.status == status and why in await r.text(), (body, r.status)
    assert book.listing() == []
    st, m = await call("POST", f"{url}/api/markers", TOKENS["marker"], {"kind": "note", "label": "a", "lat": 1,
                                                                       "lon": 1})
    assert st == 201
    st, _ = await call("PATCH", f"{url}/api/markers/nosuchmarker", TOKENS["marker"], {"label": "b"})
    assert st == 404
    statuses = [(await call("PATCH", f"{url}/api/markers/{m['id']}", TOKENS["marker"], {"label": str(i)}))[0]
                for i in range(5)]
    assert statuses.count(429) >= 1 and statuses[0] == 200, statuses
    # Another token is not held up by this one's rate.
    st, _ = await call("PATCH", f"{url}/api/markers/{m['id']}", TOKENS["control"], {"label": "fine"})
    assert st == 200
