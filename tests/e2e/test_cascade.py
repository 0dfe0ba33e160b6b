"""Relay to relay (vehicle → centre) in one process: the forward goes live, its times,
telemetry and path cross, a wrong token is refused once in the log and retried slowly."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.helpers import SMALL, Drone, RelayHandle, WhepViewer, wait_for

Factory = Callable[..., Awaitable[RelayHandle]]
# Two or three relays and a drone each: one of these at a time, so the slow lane's other
# whole-system tests (Chromium reading stamps) keep the cores they need.
pytestmark = pytest.mark.xdist_group("cascade")
VEHICLE_TOKEN = "vehicle-one-publish-token"
VIEW = "centre-view-token-1234"


def centre_config() -> dict[str, Any]:
    return {**SMALL, "server": {"name": "centre"},
            "auth": {"enabled": True, "view_token": VIEW,
                     "tokens": [{"token": VEHICLE_TOKEN, "role": "publisher", "name": "vehicle-1",
                                 "streams": ["drone1"]}]}}


def vehicle_config(centre: str, token: str = VEHICLE_TOKEN, **stream: Any) -> dict[str, Any]:
    return {**SMALL, "server": {"name": "vehicle"},
            "streams": {"drone1": {"title": "Brand Hauptstrasse 5", "forward": [f"{centre}/whip/drone1"],
                                   "forward_token": token, **stream}}}


async def api(url: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.get(f"{url}/api/streams", headers=headers) as r:
        assert r.status == 200, await r.text()
        return {d["name"]: d for d in (await r.json())["streams"]}


async def test_forward_to_centre_carries_picture_times_telemetry_and_path(relay_factory: Factory) -> None:
    centre = await relay_factory(centre_config())
    vehicle = await relay_factory(vehicle_config(centre.url))
    drone = Drone(f"{vehicle.url}/whip/drone1")
    viewer = WhepViewer(centre.url, "drone1", rendition="low", token=VIEW, channel=True)
    try:
        await wait_for(lambda: centre.entry("drone1") is not None and centre.entry("drone1").frames_in > 20,
                       20, "the forwarded stream to go live at the centre")
        async with aiohttp.ClientSession() as s:
            r = await s.post(f"{vehicle.url}/api/streams/drone1/telemetry",
                             json={"lat": 47.3769, "lon": 8.5417, "alt": 120.0})
            assert r.status in (200, 204), await r.text()
        await viewer.start()
        await viewer.wait_frames(90, 20)
        # Glass to glass at the centre, from the drone's stamp in the picture: under a second
        # (the last 20 frames: the first ones come from the GOP cache, up to 2 s old).
        ages = [at * 1000 - st.capture_ms for st, at in viewer.seen.stamps[-20:]]
        assert ages and max(ages) < 1000, ages
        await wait_for(lambda: (centre.entry("drone1").telemetry.state.get("lat") == 47.3769), 5,
                       "the vehicle's telemetry at the centre")
        await wait_for(lambda: centre.entry("drone1").source_info.path == ["drone", "vehicle", "centre"],
                       5, "the path to reach the centre")
        doc = (await api(centre.url, VIEW))["drone1"]
        assert doc["path"] == ["drone", "vehicle", "centre"]
        assert doc["title"] == "Brand Hauptstrasse 5"
        assert [(h["from"], h["to"]) for h in doc["hops"]] == [("drone", "vehicle"), ("vehicle", "centre")]
        assert all(h["ms"] is not None and 0 <= h["ms"] < 1000 for h in doc["hops"]), doc["hops"]
        # The frames' capture times crossed: the centre's frames carry the drone's capture time.
        fwd = (await api(vehicle.url))["drone1"]["forwards"][0]
        assert fwd["state"] == "up" and fwd["rendition"] in ("high", "low"), fwd
        frames = [m for m in viewer.messages if m.get("type") == "frames"]
        captured = [f for m in frames for f in m["f"] if f[2] is not None]
        assert captured, "the centre's viewer got no capture times"
    finally:
        await viewer.close()
        await drone.stop()


async def test_the_centre_resumes_when_the_vehicle_redials(relay_factory: Factory) -> None:
    """The uplink's session ends (the centre closed it: a restart, a lost link): the
    vehicle redials by itself and the centre's viewer, kept on its slate, sees the drone
    again; the vehicle's own viewer never notices."""
    centre = await relay_factory(centre_config())
    vehicle = await relay_factory(vehicle_config(centre.url))
    drone = Drone(f"{vehicle.url}/whip/drone1")
    at_centre = WhepViewer(centre.url, "drone1", rendition="low", token=VIEW)
    local = WhepViewer(vehicle.url, "drone1", rendition="low")
    try:
        await wait_for(lambda: centre.entry("drone1") is not None and centre.entry("drone1").frames_in > 10,
                       20, "the forward")
        await at_centre.start()
        await local.start()
        await at_centre.wait_frames(10, 15)
        first = centre.services.whip.sessions
        assert len(first) == 1
        for s in list(first.values()):
            await s.close("test: the uplink's session is cut")
        local_before = local.seen.frames
        await wait_for(lambda: len(centre.services.whip.sessions) == 1
                       and set(centre.services.whip.sessions) != set(first), 15, "the vehicle to redial")
        stamps_before = len(at_centre.seen.stamps)
        await wait_for(lambda: len(at_centre.seen.stamps) > stamps_before + 15, 15,
                       "the centre's viewer to see the drone again")
        assert local.seen.frames > local_before + 30, "the vehicle's own viewer stalled"
        fwd = (await api(vehicle.url))["drone1"]["forwards"][0]
        assert fwd["sessions"] >= 2 and fwd["state"] == "up", fwd
    finally:
        await at_centre.close()
        await local.close()
        await drone.stop()


async def test_a_wrong_token_is_refused_logged_once_and_retried_slowly(
        relay_factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relay.forward")
    centre = await relay_factory(centre_config())
    vehicle = await relay_factory(vehicle_config(centre.url, token="not-the-vehicle-token"))
    drone = Drone(f"{vehicle.url}/whip/drone1")
    try:
        await wait_for(lambda: vehicle.entry("drone1") is not None and vehicle.entry("drone1").frames_in > 5,
                       15, "the drone at the vehicle")
        t0 = time.monotonic()
        await wait_for(lambda: vehicle.services.forwards.forwarders[0].refusals >= 2, 15, "two refusals")
        await asyncio.sleep(6.0)
        fwd = vehicle.services.forwards.forwarders[0]
        # Delays of 2, 4, 8 s: within ~8 s of the first refusal, three or four tries, not dozens.
        elapsed = time.monotonic() - t0
        assert 2 <= fwd.refusals <= 2 + elapsed / 2, (fwd.refusals, elapsed)
        assert fwd.state == "refused" and "403: token not recognised" in fwd.last_error, fwd.status()
        refused = [r for r in caplog.records if r.getMessage() == "forward refused by the other relay"]
        assert len(refused) == 1, [r.__dict__.get("reason") for r in refused]
        assert centre.entry("drone1") is None or centre.entry("drone1").frames_in == 0
    finally:
        await drone.stop()


async def test_the_centre_pulls_from_the_vehicle_over_whep(relay_factory: Factory) -> None:
    """A centre that can reach the vehicle pulls (``source = "whep+http://..."``): the
    vehicle serves it as a viewer on "auto" (its ABR), the capture times, telemetry and path
    cross, a wrong token is refused and logged once."""
    vehicle = await relay_factory({**SMALL, "server": {"name": "vehicle"},
                                   "auth": {"enabled": True, "publish_token": VEHICLE_TOKEN, "view_token": VIEW}})
    centre = await relay_factory({**SMALL, "server": {"name": "centre"}, "streams": {
        "drone1": {"source": f"whep+{vehicle.url}/whep/drone1", "source_token": VIEW},
        "wrong": {"source": f"whep+{vehicle.url}/whep/drone1", "source_token": "not-a-token-at-all"}}})
    drone = Drone(f"{vehicle.url}/whip/drone1", token=VEHICLE_TOKEN)
    viewer = WhepViewer(centre.url, "drone1", rendition="low")
    try:
        await wait_for(lambda: centre.entry("drone1").frames_in > 20, 25, "the pulled stream at the centre")
        pulls = [v for v in vehicle.viewers("drone1").values() if v.who == "auth.view_token"]
        assert len(pulls) == 1 and pulls[0].auto, pulls  # the vehicle runs its ABR for the pull
        await viewer.start()
        await viewer.wait_frames(90, 20)
        ages = [at * 1000 - st.capture_ms for st, at in viewer.seen.stamps[-20:]]
        assert ages and max(ages) < 1000, ages
        await wait_for(lambda: centre.entry("drone1").source_info.path == ["drone", "vehicle", "centre"], 5,
                       "the path")
        doc = (await api(centre.url))["drone1"]
        assert doc["pull"]["state"] == "up" and doc["pull"]["sessions"] == 1, doc["pull"]
        assert doc["publisher"]["kind"] == "whep-pull"
        wrong = centre.services.pulls["wrong"]
        await wait_for(lambda: wrong.refusals >= 1, 10, "the wrong token refused")
        assert "403" in wrong.last_error and centre.entry("wrong").frames_in == 0, wrong.status()
    finally:
        await viewer.close()
        await drone.stop()


async def test_forward_over_tls_trusts_the_given_ca_or_pin_only(relay_factory: Factory, tmp_path: Path) -> None:
    """The centre on HTTPS with the brigade's CA: a vehicle given that CA forwards, one given
    the certificate's pin forwards, one given another CA is refused by TLS (logged once,
    retried slowly) and the centre never sees it."""
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_pem, other_pem = (tmp_path / n for n in ("c.pem", "c.key", "ca.pem", "other.pem"))
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(ca_pem))
    other.cert_pem.write_to_path(str(other_pem))
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    pin = hashlib.sha256(der).hexdigest()
    cfg = centre_config()
    cfg["server"] = {**cfg["server"], "tls_cert": str(cert), "tls_key": str(key)}
    cfg["auth"]["tokens"][0]["streams"] = ["*"]
    centre = await relay_factory(cfg)
    assert centre.url.startswith("https://localhost:")
    by_ca = await relay_factory(vehicle_config(centre.url, peer_ca=str(ca_pem)))
    by_pin = await relay_factory({**vehicle_config(centre.url), "streams": {"drone2": {
        "forward": [f"{centre.url}/whip/drone2"], "forward_token": VEHICLE_TOKEN, "peer_pin": pin}}})
    untrusting = await relay_factory({**vehicle_config(centre.url), "streams": {"drone3": {
        "forward": [f"{centre.url}/whip/drone3"], "forward_token": VEHICLE_TOKEN, "peer_ca": str(other_pem)}}})
    drones = [Drone(f"{by_ca.url}/whip/drone1"), Drone(f"{by_pin.url}/whip/drone2"),
              Drone(f"{untrusting.url}/whip/drone3")]
    try:
        for name in ("drone1", "drone2"):
            await wait_for(lambda n=name: centre.entry(n) is not None and centre.entry(n).frames_in > 10, 25,
                           f"{name} over TLS at the centre")
        fwd = untrusting.services.forwards.forwarders[0]
        await wait_for(lambda: fwd.refusals >= 1, 15, "the untrusted certificate refused")
        assert fwd.state == "refused" and "not trusted" in fwd.last_error, fwd.status()
        assert centre.entry("drone3") is None
    finally:
        for d in drones:
            await d.stop()


async def test_the_centre_serves_the_forwarded_packets_untouched(relay_factory: Factory) -> None:
    """A centre in mode "both": its "source" rendition is the vehicle's forwarded rung as it
    arrived (no second encode), with the drone's capture times; a viewer's keyframe request
    there goes up to the vehicle as a PLI."""
    cfg = centre_config()
    cfg["media"] = {"default_mode": "both"}
    centre = await relay_factory(cfg)
    vehicle = await relay_factory(vehicle_config(centre.url, forward_rendition="low"))
    drone = Drone(f"{vehicle.url}/whip/drone1")
    viewer = WhepViewer(centre.url, "drone1", rendition="source", token=VIEW, channel=True)
    try:
        await wait_for(lambda: centre.entry("drone1") is not None and centre.entry("drone1").frames_in > 10,
                       20, "the forward")
        entry = centre.entry("drone1")
        assert entry.slot.forwards_packets and entry.slot.keyframe_upstream is not None
        await viewer.start()
        await viewer.wait_frames(60, 20)
        # The vehicle's "low" rung (180 lines here), not a re-encode at the centre.
        assert viewer.seen.sizes == {(320, 180)}, viewer.seen.sizes
        ages = [at * 1000 - st.capture_ms for st, at in viewer.seen.stamps[-30:]]
        assert ages and max(ages) < 1000, ages
        assert "source" not in centre.entry("drone1").encoders  # nothing encoded for it here
        frames = [f for m in viewer.messages if m.get("type") == "frames" for f in m["f"]]
        assert any(f[2] is not None for f in frames), "no capture times on the passthrough"
        fwd = vehicle.services.forwards.forwarders[0]
        plis = fwd.viewer.tap.plis
        entry.passthrough.request_keyframe("test: a viewer lost its picture")
        await wait_for(lambda: fwd.viewer.tap.plis > plis, 5, "the PLI to reach the vehicle")
    finally:
        await viewer.close()
        await drone.stop()


async def test_a_killed_centre_is_noticed_by_its_silence_and_redialled_when_it_is_back(
        relay_factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The centre dies (SIGKILL: no BYE, no FIN for the media): the vehicle's forward hears no
    more RTCP and ends the session after CENTRE_SILENT_S (not after the 6 s its reports took,
    nor ICE's 30 s); the centre restarted on its port has the drone again without anyone
    touching the vehicle. Times are printed (bench/cascade.py has the figures)."""
    import signal
    import subprocess
    import sys

    from relay.cascade.forward import CENTRE_SILENT_S
    from relay.sources.gate import free_tcp_port

    caplog.set_level(logging.INFO, logger="relay")
    port = free_tcp_port()
    cfg = tmp_path / "centre.toml"
    cfg.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\nlog_level = "warning"\nname = "centre"\n'
                   '[webrtc]\nice_addresses = ["127.0.0.1"]\n'
                   f'[auth]\nenabled = true\npublish_token = "{VEHICLE_TOKEN}"\nview_token = "{VIEW}"\n'
                   '[[renditions]]\nname = "low"\nheight = 180\nbitrate_kbps = 300\n')
    centre_url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "relay", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def live_at_centre() -> bool:
        try:
            doc = await api(centre_url, VIEW)
        except (aiohttp.ClientError, AssertionError):
            return False
        return "drone1" in doc and doc["drone1"]["state"] == "live"

    centre = start()
    vehicle = await relay_factory({**SMALL, "server": {"name": "vehicle"},
                                   "streams": {"drone1": {"forward": [f"{centre_url}/whip/drone1"],
                                                          "forward_token": VEHICLE_TOKEN}}})
    drone = Drone(f"{vehicle.url}/whip/drone1")
    try:
        await wait_for(live_at_centre, 30, "the drone at the centre")
        sessions = (await api(vehicle.url))["drone1"]["forwards"][0]["sessions"]
        centre.send_signal(signal.SIGKILL)
        centre.wait(10)
        t_kill = time.monotonic()
        silent = f"viewer silent: nothing heard for {CENTRE_SILENT_S:g} s"
        await wait_for(lambda: any(getattr(r, "reason", "") == silent for r in caplog.records), 20,
                       "the forward to end on the centre's silence")
        noticed = time.monotonic() - t_kill
        centre = start()
        t_back = time.monotonic()
        await wait_for(live_at_centre, 30, "the drone at the restarted centre")
        print(f"\ndead centre noticed after {noticed:.1f} s; picture at the restarted centre "
              f"{time.monotonic() - t_back:.1f} s after its start")
        fwd = (await api(vehicle.url))["drone1"]["forwards"][0]
        assert fwd["sessions"] > sessions and fwd["state"] == "up", fwd
    finally:
        await drone.stop()
        centre.kill()
        centre.wait(10)
