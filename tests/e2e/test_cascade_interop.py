"""Relay to relay through a WebRTC stack we did not write: the vehicle forwards over WHIP
into a werift (TypeScript) forwarder, and the centre pulls from it over WHEP. Both of our
client sides (the forward's WHIP offer, the pull's WHEP offer, ICE, DTLS, SRTP, RTCP)
against werift's; werift answers our data channels but never speaks on them."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SMALL, Drone, RelayHandle, WhepViewer, wait_for

Factory = Callable[..., Awaitable[RelayHandle]]
# Two or three relays and a drone each: one of these at a time, so the slow lane's other
# whole-system tests (Chromium reading stamps) keep the cores they need.
pytestmark = pytest.mark.xdist_group("cascade")
SFU = Path(__file__).resolve().parents[2] / "tools" / "werift-sfu"


@pytest.fixture
def werift() -> Iterator[str]:
    """werift's forwarder on a free loopback port (scripts/setup.sh --dev installs it)."""
    assert shutil.which("node"), "node is missing: run scripts/setup.sh --dev"
    assert (SFU / "node_modules" / "werift").is_dir(), "werift is missing: run scripts/setup.sh --dev"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["node", str(SFU / "sfu.mjs"), str(port), "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/stats", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "werift died"
                assert time.monotonic() < deadline, "werift did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


def sfu_stats(url: str) -> dict[str, Any]:
    return dict(json.loads(urllib.request.urlopen(f"{url}/stats", timeout=2).read()))


async def test_forward_and_pull_through_werift(relay_factory: Factory, werift: str) -> None:
    vehicle = await relay_factory({**SMALL, "server": {"name": "vehicle"}, "streams": {"drone1": {
        "forward": [f"{werift}/whip/drone1"], "forward_token": "werift-ignores-it"}}})
    centre = await relay_factory({**SMALL, "server": {"name": "centre"}, "streams": {
        "drone1": {"source": f"whep+{werift}/whep/drone1"}}})
    drone = Drone(f"{vehicle.url}/whip/drone1")
    viewer = WhepViewer(centre.url, "drone1", rendition="low")
    try:
        await wait_for(lambda: vehicle.services.forwards.forwarders[0].state == "up", 20, "the forward into werift")
        await wait_for(lambda: centre.entry("drone1").frames_in > 30, 30, "the pull from werift at the centre")
        await viewer.start()
        await viewer.wait_frames(60, 20)
        ages = [at * 1000 - st.capture_ms for st, at in viewer.seen.stamps[-30:]]
        assert ages and max(ages) < 1000, ages  # the drone's stamp, read at the centre's viewer
        st = sfu_stats(werift)
        assert st["whip"] >= 1 and st["whep"] >= 1 and st["rtp_out"] > 100, st
        assert st["datachannels"] >= 1, st  # our channels were opened; werift never answers on them
        # No route came (werift does not speak the relay channel): the centre says nothing of one.
        assert centre.entry("drone1").source_info.path == []
        pull = centre.services.pulls["drone1"]
        assert pull.state == "up" and pull.sessions == 1, pull.status()
    finally:
        await viewer.close()
        await drone.stop()
