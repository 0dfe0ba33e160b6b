"""DJI drones through the DJI Cloud API, without a DJI device: a Pilot 2 emulator
(drone_sim/dji.py: the documented topics and envelopes) flies the simulator's track against a
real Mosquitto started by the test, and the relay is one more client of that broker.

- the aircraft online under its remote controller becomes its stream; its 0.5 Hz OSD becomes
  the stream's telemetry, carried forward between samples, within metres of the simulator's
  truth (the figure is bench/dji.py's; the bound here is what dead reckoning guarantees on
  the test's orbit, load or not); the camera's field of view comes from the lens table;
- live control: nobody but the control role starts anything; a start that fails as DJI's
  first starts do is tried again; the picture arrives over RTMP with a publish token minted
  for that stream; a lens switch changes the footprint's field of view; stop ends the picture;
- hostile or broken MQTT messages are ignored, counted, and change nothing; a broker that
  goes away and comes back is dialled again while the video goes on;
- DJI Pilot 2's page in Chromium (a stub JSBridge that records the calls) joins with the
  license and broker account from the environment, and says so."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drone_sim.dji import Pilot2
from drone_sim.flight import Flight
from relay.sources.gate import free_tcp_port
from tests.browser import chromium
from tests.e2e.test_markers_browser import until
from tests.helpers import call, wait_for
from tests.mosquitto import PILOT_PASS, PILOT_USER, RELAY_PASS, RELAY_USER, Mosquitto

pytestmark = pytest.mark.slow
INCIDENT = (52.3906, 13.0645)
SECRET = "dji-test-jwt-secret-0123456789abcdef"
CONTROL, VIEWER, PILOT = "dji-control-token-1", "dji-viewer-token-1", "dji-pilot-token-1"
SN = "1581F5BKD00000AC"
ENV = {"DJI_PASS": RELAY_PASS, "DJI_PILOT_PASS": PILOT_PASS, "DJI_APP_ID": "123456",
       "DJI_APP_KEY": "app-key-0123456789", "DJI_LICENSE": "license-0123456789"}


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot((a[0] - b[0]) * 111_320, (a[1] - b[1]) * 111_320 * math.cos(math.radians(a[0])))


def config(broker: str, rtmp_port: int) -> dict[str, Any]:
    return {
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "rtmp": {"enabled": True, "port": rtmp_port},
        "auth": {"enabled": True, "jwt_secret": SECRET,
                 "tokens": [{"token": CONTROL, "role": "control"}, {"token": VIEWER, "role": "viewer"},
                            {"token": PILOT, "role": "publisher"}]},
        "dji": {"broker": broker, "username": RELAY_USER, "password_env": "DJI_PASS", "streams": ["dji1", "dji2"],
                "push_host": "127.0.0.1", "reply_timeout_s": 10,
                "app_id_env": "DJI_APP_ID", "app_key_env": "DJI_APP_KEY", "app_license_env": "DJI_LICENSE",
                "pilot_username": PILOT_USER, "pilot_password_env": "DJI_PILOT_PASS"},
    }



@contextlib.asynccontextmanager
async def flying(broker: str, flight: Flight, **kw: Any) -> AsyncIterator[Pilot2]:
    pilot = Pilot2(broker, PILOT_USER, PILOT_PASS, flight, aircraft_sn=SN, **kw)
    stop = asyncio.Event()
    task = asyncio.ensure_future(pilot.run(stop))
    try:
        yield pilot
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        await pilot.stop_push()


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    m = Mosquitto(tmp_path / "mqtt")
    m.start()
    try:
        yield m
    finally:
        m.stop()


async def test_dji_aircraft_telemetry_control_and_faults(relay_factory: Any, broker: Mosquitto,
                                                         tmp_path: Path) -> None:
    relay = await relay_factory(config(broker.url, free_tcp_port()), env=ENV)
    dji = relay.services.dji
    flight = Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10, start=time.time())
    async with flying(broker.url, flight, fail_starts=1) as pilot:
        await wait_for(lambda: SN in dji.aircraft and dji.aircraft[SN].osd_count >= 2, 20, "two OSD messages")
        a = dji.aircraft[SN]
        assert a.stream == "dji1" and a.model == "0-67-1" and a.gateway == pilot.rc
        tele = relay.entry("dji1").telemetry
        # Carried forward between the 2 s samples: where the relay says the drone is against
        # where the simulator flew it at that moment, for eight seconds of samples.
        errors = []
        for _ in range(80):
            await asyncio.sleep(0.1)
            s = tele.state
            truth = flight.at(tele.t)
            errors.append(metres((s["lat"], s["lon"]), (truth["lat"], truth["lon"])))
        print(f"DJI 0.5 Hz carried forward: p50 {statistics.median(errors):.1f} m, max {max(errors):.1f} m")
        # v²t²/(2r) on this orbit: 2 m two seconds after a sample; a late OSD (a loaded machine)
        # makes it longer, the horizon (3 s) bounds it.
        assert statistics.median(errors) < 6 and max(errors) < 15, errors
        assert 0 <= s["est_s"] <= 3  # an estimate says how far it carried the report (0: measured)
        assert abs(s["hfov"] - 71.5) < 0.01 and s["vfov"] < s["hfov"]  # M30T-class camera, wide lens
        assert abs(((s["gimbal_yaw"] - truth["gimbal_yaw"]) + 180) % 360 - 180) < 15
        assert s["target_lat"] and a.target_gap_m is not None and a.target_gap_m < 25  # laser vs footprint
        doc = (await call("GET", f"{relay.url}/api/dji/dji1", VIEWER))[1]
        assert doc["serial"] == SN and doc["lens"] == "normal" and doc["may_control"] is False
        listed = (await call("GET", f"{relay.url}/api/streams/dji1", VIEWER))[1]
        assert listed["dji"]["name"] == "M30T" and listed["dji"]["thermal"]["max_c"] == 312.0

        # Nobody but the control role drives the camera; nothing is sent for them.
        url = f"{relay.url}/api/dji/dji1"
        sent = len(pilot.services)
        assert (await call("POST", url, None, {"action": "start"}))[0] == 401
        st, why = await call("POST", url, VIEWER, {"action": "start"})
        assert st == 403, why
        assert (await call("POST", url, PILOT, {"action": "lens", "lens": "ir"}))[0] == 403
        st, why = await call("POST", url, CONTROL, {"action": "lens", "lens": "<b>"})
        assert st == 422 and why == "lens must be normal, wide, zoom or ir"
        assert len(pilot.services) == sent and relay.entry("dji1").state.value == "waiting"

        # Start: the first try fails as DJI's first starts do (13006), the second pushes.
        t0 = time.monotonic()
        st, out = await call("POST", url, CONTROL, {"action": "start", "quality": 2})
        assert st == 200 and out["result"] == 0, out
        starts = [s for s in pilot.services if s["method"] == "live_start_push"]
        assert len(starts) == 2 and starts[-1]["data"]["url_type"] == 1
        pushed = starts[-1]["data"]["url"]
        assert pushed.startswith(f"rtmp://127.0.0.1:{relay.config.rtmp.port}/live/dji1?token=")
        await wait_for(lambda: relay.entry("dji1").state.value == "live", 30, "the DJI picture live")
        print(f"DJI live start -> picture: {time.monotonic() - t0:.1f} s")
        # Switch to the IR lens: the footprint's field of view follows at the next OSD.
        st, out = await call("POST", url, CONTROL, {"action": "lens", "lens": "ir"})
        assert st == 200 and out["aircraft"]["lens"] == "ir" and pilot.lens == "ir"
        await wait_for(lambda: abs(tele.state.get("hfov", 0) - 49.4) < 0.01, 6, "the IR lens's field of view")
        assert tele.state["lens"] == 2 and tele.state["scene_max_c"] == 312.0  # (so in the record too)
        import aiomqtt

        # A Dock connecting asks for the platform's license (requests/config): answered with it.
        async with aiomqtt.Client("127.0.0.1", broker.port, username=PILOT_USER, password=PILOT_PASS) as dock:
            await dock.subscribe("thing/product/DOCK0000001/requests_reply")
            await dock.publish("thing/product/DOCK0000001/requests", json.dumps(
                {"tid": "t1", "bid": "b1", "timestamp": int(time.time() * 1000), "method": "config",
                 "data": {"config_type": "json", "config_scope": "product"}}).encode())
            async with asyncio.timeout(10):
                reply = json.loads(bytes((await anext(aiter(dock.messages))).payload))
        assert reply["tid"] == "t1" and reply["method"] == "config"
        assert reply["data"]["app_id"] == "123456" and reply["data"]["app_license"] == "license-0123456789"
        # Hostile messages on the broker (someone with a controller's account): ignored, counted.

        before = sum(dji.refused.values())
        osd_before = a.osd_count
        async with aiomqtt.Client("127.0.0.1", broker.port, username=PILOT_USER, password=PILOT_PASS) as evil:
            for payload in (b"x" * 100_000, b"{not json", b"[1,2]", json.dumps({"data": "x"}).encode(),
                            json.dumps({"tid": "t", "bid": "b", "data": {"latitude": "52", "longitude": 1e400}}).encode(),
                            json.dumps({"tid": "t", "bid": "b", "data": {"latitude": 91.0, "longitude": 13.0}}).encode(),
                            b"[" * 5000):
                await evil.publish(f"thing/product/{SN}/osd", payload)
            await evil.publish("thing/product/UNKNOWN0SN/osd", json.dumps({"tid": "t", "bid": "b", "data": {}}).encode())
        await wait_for(lambda: sum(dji.refused.values()) >= before + 4, 10, "the hostile messages counted")
        await wait_for(lambda: a.osd_count > osd_before + 1, 8, "the real OSD still taken")
        truth = flight.at(tele.t)
        assert metres((tele.state["lat"], tele.state["lon"]), (truth["lat"], truth["lon"])) < 15
        assert "UNKNOWN0SN" not in dji.aircraft

        # The broker goes away: the video goes on; it comes back: the relay dials again.
        broker.stop()
        await wait_for(lambda: not dji.connected, 15, "the relay noticing the broker gone")
        assert relay.entry("dji1").state.value == "live"
        st, why = await call("POST", url, CONTROL, {"action": "stop"})
        assert st == 503 and "broker" in why
        broker.start()
        await wait_for(lambda: dji.connected, 40, "the relay back on the broker")


@pytest.mark.browser
@pytest.mark.usefixtures("chromium_required")
async def test_pilot2_page_joins_with_the_license_and_broker_account(relay_factory: Any, broker: Mosquitto) -> None:
    relay = await relay_factory(config(broker.url, free_tcp_port()), env=ENV)
    stub = """
      window.__calls = [];
      window.djiBridge = new Proxy({}, { get: (_, name) => (...args) => {
        window.__calls.push([name, ...args]);
        if (name === 'platformLoadComponent' && args[0] === 'thing') setTimeout(() => window.relayThingConnected(true), 50);
        return JSON.stringify({ code: 0, message: 'ok', data: true }); } });"""
    async with chromium(viewport=(390, 844)) as ctx:
        # A viewer's token does not get the controller's broker account.
        page = await ctx.new_page()
        await page.add_init_script(stub)
        await page.goto(f"{relay.url}/dji#token={VIEWER}")
        said = await until(page, "() => !document.getElementById('said').hidden && document.getElementById('said').textContent")
        assert "403" in said, said
        assert await page.evaluate("() => window.__calls.length") == 0
        await page.close()
        page = await ctx.new_page()
        await page.add_init_script(stub)
        await page.goto(f"{relay.url}/dji#token={PILOT}")
        await until(page, "() => window.__dji && window.__dji.connected === true")
        calls = await page.evaluate("() => window.__calls")
        assert calls[0] == ["platformVerifyLicense", "123456", "app-key-0123456789", "license-0123456789"]
        thing = next(c for c in calls if c[0] == "platformLoadComponent" and c[1] == "thing")
        assert json.loads(thing[2]) == {"host": f"tcp://127.0.0.1:{broker.port}", "username": PILOT_USER,
                                        "password": PILOT_PASS, "connectCallback": "relayThingConnected"}
        assert any(c[0] == "platformLoadComponent" and c[1] == "liveshare" for c in calls)
        steps = await page.evaluate("() => [...document.querySelectorAll('.steps b')].map((b) => b.textContent)")
        assert steps[0] == "verified" and steps[1] == "connected" and steps[2].startswith("ready"), steps


@pytest.mark.browser
@pytest.mark.usefixtures("chromium_required")
async def test_the_view_page_drives_a_dji_drone_and_marks_its_picture(relay_factory: Any, broker: Mosquitto,
                                                                      tmp_path: Path) -> None:
    """The control centre on the view page of a DJI drone: the aircraft and lens said, Start
    brings its picture, IR switches the lens (the footprint narrows), a tap on the picture
    places a marker where the DJI telemetry says that point is on the ground."""
    cfg = config(broker.url, free_tcp_port())
    cfg["markers"] = {"roles": ["control"]}
    relay = await relay_factory(cfg, env=ENV)
    dji = relay.services.dji
    flight = Flight(lat=INCIDENT[0], lon=INCIDENT[1], altitude=70, radius=100, speed=10, start=time.time())
    async with flying(broker.url, flight) as pilot:
        await wait_for(lambda: SN in dji.aircraft and dji.aircraft[SN].osd_count >= 2, 20, "two OSD messages")
        async with chromium(viewport=(1280, 800)) as ctx:
            viewer = await ctx.new_page()
            await viewer.goto(f"{relay.url}/view/dji1#token={VIEWER}")
            await until(viewer, "() => !document.getElementById('djibar').hidden")
            assert await viewer.evaluate("() => document.getElementById('dji-controls').hidden") is True
            await viewer.close()
            page = await ctx.new_page()
            await page.goto(f"{relay.url}/view/dji1#token={CONTROL}")
            await until(page, "() => !document.getElementById('dji-controls').hidden")
            assert (await page.evaluate("() => document.getElementById('dji-what').textContent")).startswith(
                "DJI M30T · lens normal")
            await page.click("button[data-dji=start]")
            await until(page, "() => window.__player && window.__player.stats.frames > 20 && window.__map "
                              "&& window.__marks && window.__marks.mayMark", timeout=40)
            await page.click("button[data-lens=ir]")
            await until(page, "() => document.getElementById('dji-what').textContent.includes('lens ir')")
            assert pilot.lens == "ir"
            await until(page, "() => { const s = window.__player.telemetryShown(); return s && Math.abs(s.hfov - 49.4) < 0.01; }",
                        timeout=10)
            # A tap on the picture's centre: the marker lands where the camera looks.
            box = await page.locator("#video").bounding_box()
            await page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            await page.wait_for_selector("#markform:not([hidden])")
            await page.click("#mark-place")
            await wait_for(lambda: len(relay.services.markers.listing()) == 1, 10, "the marker placed")
            m = relay.services.markers.listing()[0]
            truth = flight.at(time.time())
            # (the camera looks at the incident point from every point of the orbit)
            assert metres((m["lat"], m["lon"]), (truth["center_lat"], truth["center_lon"])) < 20, m
            await page.screenshot(path=str(tmp_path / "dji-view.png"))
            await page.click("button[data-dji=stop]")
            await until(page, "() => document.querySelector('.toast').textContent.startsWith('DJI: done')")
            await wait_for(lambda: pilot.pushing is None, 10, "the push stopped")
