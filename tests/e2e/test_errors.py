"""Every WHIP/WHEP error is answered precisely and leaves the live stream unharmed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_ingest import ROOT
from tests.helpers import Drone, RelayHandle, SharedRelay, WhepViewer, wait_for

pytestmark = pytest.mark.quick

AUDIO_ONLY = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
a=setup:actpass
a=rtpmap:111 opus/48000/2
"""


async def post(url: str, body: str | bytes, ctype: str = "application/sdp",
               token: str | None = None, method: str = "POST") -> tuple[int, str, Any]:
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.request(method, url, data=body, headers=headers) as r:
        return r.status, await r.text(), r.headers


async def offer_sdp(direction: str = "recvonly") -> str:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


@pytest.fixture
async def watched(live: RelayHandle) -> Any:
    viewer = WhepViewer(live.url, "drone1", rendition="low", read_stamps=False)
    await viewer.start()
    await viewer.wait_frames(5)
    yield live, viewer
    await viewer.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[RelayHandle, WhepViewer]]:
    """One relay, drone and viewer for the tests that only send bad requests (each still
    checks that the stream plays on afterwards)."""
    relay = SharedRelay()
    try:
        yield relay.relay, relay.viewer
    finally:
        relay.close()


async def still_live(relay: RelayHandle, viewer: WhepViewer) -> None:
    n, frames_in = viewer.seen.frames, relay.entry("drone1").frames_in
    await viewer.wait_frames(n + 10, timeout=5)
    assert relay.entry("drone1").frames_in > frames_in
    assert relay.entry("drone1").state.value == "live"


@pytest.mark.parametrize("proto", ["whip", "whep"])
async def test_wrong_content_type_is_415(shared: Any, proto: str) -> None:
    relay, viewer = shared
    status, text, _ = await post(f"{relay.url}/{proto}/drone1", "v=0", ctype="application/json")
    assert status == 415 and "application/sdp" in text
    await still_live(relay, viewer)


@pytest.mark.parametrize("proto", ["whip", "whep"])
@pytest.mark.parametrize("body", ["hello", "v=0\r\nm=video garbage\r\n", "v=0\r\no=broken\r\n"])
async def test_malformed_sdp_is_400_or_422(shared: Any, proto: str, body: str) -> None:
    relay, viewer = shared
    status, text, _ = await post(f"{relay.url}/{proto}/drone1", body)
    assert status in (400, 422), (status, text)
    assert text.strip() and "\n" not in text.strip()  # one line
    await still_live(relay, viewer)


async def test_offer_without_video_is_422(shared: Any) -> None:
    relay, viewer = shared
    status, text, _ = await post(f"{relay.url}/whip/other", AUDIO_ONLY)
    assert status == 422 and "no video" in text
    status, text, _ = await post(f"{relay.url}/whep/drone1", AUDIO_ONLY)
    assert status == 422
    await still_live(relay, viewer)


async def test_second_publisher_is_409(shared: Any) -> None:
    relay, viewer = shared
    status, text, _ = await post(f"{relay.url}/whip/drone1", await offer_sdp("sendonly"))
    assert status == 409 and "already" in text
    await still_live(relay, viewer)
    assert relay.entry("drone1").publisher_kind == "whip"


async def test_unknown_stream_and_session_are_404(shared: Any) -> None:
    relay, viewer = shared
    status, text, _ = await post(f"{relay.url}/whep/nope", await offer_sdp())
    assert status == 404 and "nope" in text
    status, _, _ = await post(f"{relay.url}/whep/drone1?rendition=ultra", await offer_sdp())
    assert status == 404
    for proto in ("whip", "whep"):
        status, _, _ = await post(f"{relay.url}/{proto}/drone1/doesnotexist", "", method="DELETE")
        assert status == 404
    await still_live(relay, viewer)


async def test_options_preflight_and_cors(shared: Any) -> None:
    relay, viewer = shared
    async with aiohttp.ClientSession() as s:
        for proto in ("whip", "whep"):
            async with s.options(f"{relay.url}/{proto}/drone1", headers={
                "Origin": "http://example.test", "Access-Control-Request-Method": "POST"}) as r:
                assert r.status == 204
                assert r.headers["Accept-Post"] == "application/sdp"
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                exposed = r.headers["Access-Control-Expose-Headers"]
                assert all(h in exposed for h in ("Location", "ETag", "Link"))
    await still_live(relay, viewer)


async def test_whep_created_headers_and_delete(watched: Any) -> None:
    relay, viewer = watched
    v2 = WhepViewer(relay.url, "drone1", rendition="low", read_stamps=False)
    await v2.start()
    assert v2.location and "/whep/drone1/" in v2.location
    await v2.wait_frames(3)
    assert len(relay.viewers("drone1")) == 2
    await v2.close()  # DELETE
    await wait_for(lambda: len(relay.viewers("drone1")) == 1, 5, "DELETE to end session")
    status, _, _ = await post(v2.location, "", method="DELETE")
    assert status == 404  # already gone
    await still_live(relay, viewer)


async def test_trickle_patch_is_405(shared: Any) -> None:
    relay, viewer = shared
    status, text, _ = await post(viewer.location, "a=candidate:1", ctype="application/trickle-ice-sdpfrag",
                                 method="PATCH")
    assert status == 405
    await still_live(relay, viewer)


async def test_tokens_401_403_and_allowed(relay_factory: Any) -> None:
    relay = await relay_factory({
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "auth": {"enabled": True},
        "streams": {"drone1": {"publish_token": "pub-secret-1", "view_token": "view-secret-1"}},
    })
    url = f"{relay.url}/whip/drone1"
    status, text, headers = await post(url, await offer_sdp("sendonly"))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await post(url, await offer_sdp("sendonly"), token="view-secret-1")
    assert status == 403  # a view token does not publish
    status, _, _ = await post(url, await offer_sdp("sendonly"), token="wrong-token")
    assert status == 403
    drone = Drone(url, token="pub-secret-1")
    try:
        await wait_for(lambda: relay.entry("drone1").frames_in > 5, 15, "authorised drone")
        status, _, _ = await post(f"{relay.url}/whep/drone1", await offer_sdp())
        assert status == 401
        status, _, _ = await post(f"{relay.url}/whep/drone1", await offer_sdp(), token="nope-nope")
        assert status == 403
        viewer = WhepViewer(relay.url, "drone1", token="view-secret-1", read_stamps=False)
        await viewer.start()
        await viewer.wait_frames(5)
        # Wrong token on the live session's DELETE is refused and the session survives.
        status, _, _ = await post(viewer.location, "", method="DELETE", token="wrong-token")
        assert status == 403
        n = viewer.seen.frames
        await viewer.wait_frames(n + 5)
        await viewer.close()
        async with aiohttp.ClientSession() as s, s.get(f"{relay.url}/api/streams") as r:
            assert r.status == 401
    finally:
        await drone.stop()


async def test_stalled_viewer_does_not_slow_the_others(watched: Any) -> None:
    """Two viewers that stop reading: a reader inside the relay never read (its own queue
    overflows, only its own), and a viewer whose process is frozen (SIGSTOP: a hung laptop;
    no RTCP, no reading), whose session the relay ends once it has heard nothing for
    VIEWER_SILENT_S. The healthy viewer beside them decodes the frames its rendition
    published meanwhile (counted against the rendition's own count, not a fixed rate)."""
    import os
    import signal
    import subprocess
    import sys

    from relay.egress.viewer import VIEWER_SILENT_S

    relay, viewer = watched
    stream = relay.entry("drone1").renditions["low"]
    stalled = stream.subscribe(label="stalled")  # never read: a viewer that stops reading
    before = set(relay.viewers("drone1"))
    frozen = subprocess.Popen([sys.executable, "-m", "bench.loadviewer", "--whep",
                               f"{relay.url}/whep/drone1?rendition=low", "--count", "1"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: len(set(relay.viewers("drone1")) - before) == 1, 20, "the second viewer")
        (session,) = set(relay.viewers("drone1")) - before
        await wait_for(lambda: relay.services.whep.viewers[session].tap.last_rtcp is not None, 10,
                       "the second viewer's first RTCP")
        os.kill(frozen.pid, signal.SIGSTOP)
        n0, p0 = viewer.seen.frames, stream.published
        await wait_for(lambda: session not in relay.viewers("drone1"), VIEWER_SILENT_S + 15,
                       "the frozen viewer's session to end")
        await asyncio.sleep(0.5)  # the frames published last are on their way
        got, sent = viewer.seen.frames - n0, stream.published - p0
        assert sent > 30 and got >= 0.9 * sent, (got, sent)
        assert len(stalled) <= stalled.maxlen
        assert stalled.dropped > 0 and stalled.overflows >= 1
        assert set(relay.viewers("drone1")) == before  # the healthy one still watching
    finally:
        frozen.kill()
        frozen.wait(10)
        stalled.close()


@pytest.mark.parametrize(("mutate", "status", "says"), [
    (lambda sdp: re.sub(r"m=video \d+ ", "m=video 0 ", sdp), 422, "port 0"),
    (lambda sdp: "\r\n".join(ln + "x" * 10240 if ln.startswith("a=ice-ufrag:") else ln
                             for ln in sdp.split("\r\n")), 400, "ice-ufrag"),
    (lambda sdp: sdp.replace("a=mid:0", "a=mid:0\r\na=extmap:300 urn:ietf:params:rtp-hdrext:sdes:mid"),
     400, "extmap"),
    (lambda sdp: sdp.replace("s=-", "s=\x00drone\x00"), 400, "control characters"),
])
async def test_offers_aiortc_would_take_but_no_peer_sends_are_refused(shared: Any, mutate: Any, status: int,
                                                                     says: str) -> None:
    relay, viewer = shared
    sdp = mutate(await offer_sdp())
    got, text, _ = await post(f"{relay.url}/whep/drone1", sdp)
    assert got == status and says in text and text.count("\n") == 1, (got, text[:200])
    await still_live(relay, viewer)


async def test_malformed_http_requests_cost_one_warning_line(shared: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Ten requests aiohttp cannot parse: each answered 400, the log gets one WARNING line
    (not an ERROR with a traceback each), and the stream plays on."""
    import logging
    import socket

    caplog.set_level(logging.INFO)
    relay, viewer = shared
    port = int(relay.url.rsplit(":", 1)[1])

    def send_bad() -> list[bytes]:
        answers = []
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
                answers.append(s.recv(64))
        return answers

    answers = await asyncio.get_running_loop().run_in_executor(None, send_bad)
    assert all(a.startswith(b"HTTP/1.0 400") or a.startswith(b"HTTP/1.1 400") for a in answers), answers
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert not [r for r in server if r.levelno >= logging.ERROR or r.exc_info], [r.getMessage() for r in server]
    assert len([r for r in server if r.levelno == logging.WARNING]) <= 1
    await still_live(relay, viewer)
