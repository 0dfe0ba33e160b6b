"""ICE settings belong to one relay, not to the process: two relays in one process (the
tests, a cluster node that also forwards) each gather on their own addresses and ports."""

from __future__ import annotations

import aiohttp
from aiortc import RTCPeerConnection

from relay.webrtc import IcePolicy, use_host_addresses
from relay.webrtc.ice import _host_addresses, gathering_with
from tests.helpers import start_relay


async def _offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def _candidates(sdp: str) -> list[tuple[str, int]]:
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            out.append((parts[4], int(parts[5])))
    return out


async def test_two_relays_in_one_process_keep_their_own_addresses_and_ports() -> None:
    def config(address: str, lo: int) -> dict:
        return {"renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
                "streams": {"d1": {}},
                "webrtc": {"ice_addresses": [address], "port_min": lo, "port_max": lo + 9}}

    a = await start_relay(config("127.0.0.1", 41100))
    b = await start_relay(config("127.0.0.2", 41200))  # made second: it used to win for both
    try:
        async with aiohttp.ClientSession() as s:
            for relay, address, lo in ((a, "127.0.0.1", 41100), (b, "127.0.0.2", 41200),
                                       (a, "127.0.0.1", 41100)):
                async with s.post(f"{relay.url}/whep/d1?rendition=low", data=await _offer(),
                                  headers={"Content-Type": "application/sdp"}) as r:
                    assert r.status == 201, await r.text()
                    found = _candidates(await r.text())
                assert found and all(addr == address and lo <= port <= lo + 9 for addr, port in found), (
                    relay.url, found)
    finally:
        await a.runner.cleanup()
        await b.runner.cleanup()


def test_a_peer_outside_any_relay_keeps_the_process_choice() -> None:
    """A client peer in the same process (the simulator, a test viewer) is not given a
    relay's addresses, and a relay's gathering is not given the client's."""
    use_host_addresses(["127.0.0.3"])
    try:
        assert _host_addresses(True, False) == ["127.0.0.3"]
        with gathering_with(IcePolicy(addresses=("127.0.0.9",))):
            assert _host_addresses(True, False) == ["127.0.0.9"]
        assert _host_addresses(True, False) == ["127.0.0.3"]
    finally:
        use_host_addresses(["127.0.0.1"])


async def test_a_relay_ice_socket_reads_every_waiting_datagram_at_once() -> None:
    """asyncio reads one datagram per loop iteration; a busy relay then fell behind a
    publisher's packet rate. A relay's ICE sockets read what is waiting (up to a batch) in
    one go."""
    import asyncio
    import socket

    from aioice.ice import Connection

    conn = Connection(ice_controlling=False)
    with gathering_with(IcePolicy(("127.0.0.1",))):
        await conn.gather_candidates()
    try:
        protocol = conn._protocols[0]
        port = protocol.local_candidate.port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(40):  # on loopback: in the relay's socket before the next line
                tx.sendto(b"media %d" % i, ("127.0.0.1", port))
        for _ in range(3):  # three loop iterations: asyncio's own transport reads three
            await asyncio.sleep(0)
        assert conn._queue.qsize() == 40
    finally:
        await conn.close()
