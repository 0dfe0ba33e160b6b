"""Through NAT and firewalls, in a lab of network namespaces this test builds and removes.

(a) A commander's Chromium behind NAT whose UDP is blocked plays through Debian's coturn
    over TCP, with time-limited credentials the relay hands out (RFC 9725 Link headers).
(b) A relay with a private address behind 1:1 NAT is played from outside through the
    public address it announces.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.webrtc import use_host_addresses
from tests.browser import CHROMIUM, chromium
from tests.helpers import Drone, WhepViewer, wait_for
from tests.netlab import Lab, need_lab

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("netlab")]
TURN_SECRET = "coturn-shared-secret-for-the-lab"


async def _tcp_open(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{host}:{port} never opened") from None
            await asyncio.sleep(0.1)


async def test_chromium_behind_nat_without_udp_plays_through_coturn_over_tcp(relay_factory: Any) -> None:
    need_lab()
    assert shutil.which("turnserver"), "coturn is missing: scripts/setup.sh --dev installs it"
    lab = Lab("t")
    try:
        nat, viewer_host = lab.host("nat"), lab.host("cmd")
        out_nat, _ = lab.link(nat, "10.202.2.1/24", None, "10.202.2.2/24")  # the relay's side
        lab.link(viewer_host, "10.202.3.2/24", nat, "10.202.3.1/24")  # the vehicle's LAN
        lab.route(viewer_host, "default", "10.202.3.1")
        lab.forward(nat)
        # Carrier NAT that lets TCP out and drops every UDP packet (a locked-down firewall).
        lab.nft(nat, f"""
table inet fw {{
  chain blockudp {{ type filter hook forward priority 0; policy accept; meta l4proto udp counter drop; }}
}}
table ip nat {{
  chain post {{ type nat hook postrouting priority srcnat; oifname "{out_nat}" masquerade; }}
}}
""")
        lab.spawn(None, "turnserver", "-n", "--listening-ip=10.202.2.2", "--relay-ip=10.202.2.2",
                  "--listening-port=3478", "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
                  "--realm=relay.test", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
                  "--min-port=49160", "--max-port=49250", "--log-file=stdout", "--simple-log",
                  log="coturn.log")
        await _tcp_open("10.202.2.2", 3478, 10)
        relay = await relay_factory({
            "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
            "webrtc": {"ice_addresses": ["10.202.2.2"], "ice_servers": [
                {"urls": ["turn:10.202.2.2:3478?transport=tcp"], "secret": TURN_SECRET, "ttl_s": 600}]},
        }, host="10.202.2.2")
        drone = Drone(f"{relay.url}/whip/d1", size=(640, 360))
        try:
            await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 20, "d1")
            async with chromium(executable=lab.wrapper(viewer_host, CHROMIUM)) as ctx:
                page = await ctx.new_page()
                await page.goto(f"{relay.url}/view/d1?rendition=low")
                try:
                    await page.wait_for_function(
                        "() => window.__player && window.__player.stats.frames > 30", timeout=40000)
                except Exception:
                    print(lab.log("coturn.log")[-3000:])
                    raise
                # The pair in use: the transport's selected one (a stats snapshot taken while
                # Chromium renominates can show none: asked again, for up to 5 s).
                pair = None
                for _ in range(25):
                    pair = await page.evaluate("""async () => {
                        const stats = await window.__player.pc.getStats();
                        let pair = null, selected = null; const cands = {}, pairs = {};
                        stats.forEach((s) => {
                          if (s.type === "transport" && s.selectedCandidatePairId) selected = s.selectedCandidatePairId;
                          if (s.type === "candidate-pair") {
                            pairs[s.id] = s;
                            if (s.nominated && s.state === "succeeded") pair = s;
                          }
                          if (s.type === "local-candidate") cands[s.id] = s;
                        });
                        if (selected && pairs[selected]) pair = pairs[selected];
                        const local = pair && cands[pair.localCandidateId];
                        return local && { type: local.candidateType, proto: local.relayProtocol,
                                          servers: window.__player.iceServers.map((s) => s.urls) };
                    }""")
                    if pair is not None:
                        break
                    await asyncio.sleep(0.2)
            assert pair is not None and pair["type"] == "relay" and pair["proto"] == "tcp", pair
            assert pair["servers"] == ["turn:10.202.2.2:3478?transport=tcp"]
            # The firewall really dropped UDP (Chromium tried its host candidates first).
            dropped = lab.counter(nat, "inet", "fw")
            assert dropped > 0, "no UDP was dropped: the test did not block what it claims"
        finally:
            await drone.stop()
    finally:
        lab.close()


async def test_relay_behind_one_to_one_nat_is_played_through_its_announced_address(tmp_path: Path) -> None:
    need_lab()
    lab = Lab("n")
    try:
        relay_host, nat = lab.host("relay"), lab.host("nat")
        lab.link(relay_host, "10.201.1.2/24", nat, "10.201.1.1/24")  # private: 10.201.1.2
        lab.link(nat, "10.201.2.1/24", None, "10.201.2.2/24")  # public: 10.201.2.1, we are outside
        lab.route(relay_host, "default", "10.201.1.1")
        lab.forward(nat)
        lab.nft(nat, """
table ip nat {
  chain pre { type nat hook prerouting priority dstnat; ip daddr 10.201.2.1 dnat to 10.201.1.2; }
  chain post { type nat hook postrouting priority srcnat; ip saddr 10.201.1.2 snat to 10.201.2.1; }
}
""")
        cfg = tmp_path / "relay.toml"
        cfg.write_text("""
[server]
host = "0.0.0.0"
port = 8080
log_level = "warning"
[webrtc]
ice_addresses = ["10.201.1.2"]
announce_addresses = ["10.201.2.1"]
port_min = 40000
port_max = 40100
[[renditions]]
name = "low"
height = 180
bitrate_kbps = 300
""")
        lab.spawn(relay_host, sys.executable, "-m", "relay", "--config", str(cfg), log="relay.log")
        await _tcp_open("10.201.2.1", 8080, 20)  # reached through the NAT's public address
        lab.spawn(relay_host, sys.executable, "-m", "drone_sim", "--whip", "http://10.201.1.2:8080/whip/d1",
                  "--size", "640x360", log="drone.log")
        base = "http://10.201.2.1:8080"

        async def live() -> bool:
            async with aiohttp.ClientSession() as s, s.get(base + "/api/streams") as r:
                return any(d["state"] == "live" for d in (await r.json())["streams"])

        deadline = time.monotonic() + 30
        while not await live():
            assert time.monotonic() < deadline, lab.log("relay.log")[-2000:] + lab.log("drone.log")[-2000:]
            await asyncio.sleep(0.3)
        use_host_addresses(["10.201.2.2"])  # our viewer offers its outside address
        viewer = WhepViewer(base, "d1", rendition="low")
        try:
            await viewer.start()
            await viewer.wait_frames(30, timeout=30)
            answer = viewer.pc.remoteDescription.sdp
            assert " 10.201.1.2 " in answer and " 10.201.2.1 " in answer  # private and announced
            pair = viewer.pc.getTransceivers()[0].receiver.transport.transport._connection._nominated
            remote = next(iter(pair.values())).remote_candidate.host
            assert remote == "10.201.2.1", remote  # the media went through the announced address
            port = next(iter(pair.values())).remote_candidate.port
            assert 40000 <= port <= 40100  # in the range a firewall opens
            stamps = [s.frame for s, _ in viewer.seen.stamps[-20:]]
            assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
        finally:
            await viewer.close()
            use_host_addresses(["127.0.0.1"])
    finally:
        lab.close()

