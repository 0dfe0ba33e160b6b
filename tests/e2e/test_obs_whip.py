"""The relay's answers checked against what OBS's WHIP output does (read from obs-studio's
plugins/obs-webrtc/whip-output.cpp, libdatachannel; OBS itself is not installable here):

- one offer with its candidates (no trickle, no PATCH), ``a=setup:actpass``: the relay
  answers ``a=setup:active`` (it is the DTLS client; libdatachannel then serves);
- Opus audio (mid "0") *and* H.264 video (mid "1"), both sendonly, bundled: the audio is
  accepted and drained, the picture goes live;
- ``Content-Type: application/sdp``, a bearer token, redirects followed; a 201 with a
  Location (OBS resolves a relative one against the effective URL), an answer starting
  at ``v=0``; the DELETE at the end must be answered 200.
The offer is made with aiortc in that shape (audio track first, then video)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from drone_sim.whip import StampedTrack
from tests.helpers import WhepViewer, wait_for

TOKEN = "obs-stream-key-1234"


async def test_an_obs_shaped_offer_goes_live_and_ends_cleanly(relay_factory: Any) -> None:
    relay = await relay_factory({"auth": {"enabled": True, "publish_token": TOKEN, "view_token": "v" * 12},
                                 "streams": {"obs": {}}, "webrtc": {"ice_addresses": ["127.0.0.1"]}})
    pc = RTCPeerConnection()
    video = StampedTrack(640, 360, 30.0, 1500)
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")  # mid 0: Opus, as OBS offers it
    vt = pc.addTransceiver(video, direction="sendonly")  # mid 1: H.264
    vt.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
    viewer = WhepViewer(relay.url, "obs", token="v" * 12, read_stamps=False)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        assert "a=setup:actpass" in offer and offer.index("m=audio") < offer.index("m=video")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{relay.url}/whip/obs", data=offer, allow_redirects=True, headers={
                    "Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}",
                    "User-Agent": "Mozilla/5.0 (OBS-Studio/31.0.0; Linux x86_64)"}) as r:
                answer = await r.text()
                assert r.status == 201, answer
                location = urljoin(str(r.url), r.headers["Location"])
            assert answer.startswith("v=0")
            audio, video_part = answer.split("m=video")
            assert "m=audio" in audio and "a=setup:active" in answer and "H264" in video_part
            assert "a=candidate" in answer and "a=end-of-candidates" in answer  # no trickle needed
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await wait_for(lambda: relay.entry("obs") is not None and relay.entry("obs").frames_in > 30, 20,
                           "the picture live")
            await viewer.start()
            await wait_for(lambda: viewer.seen.frames > 15, 20, "a viewer's frames")
            async with http.delete(location, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200, await r.text()  # OBS warns on anything but 200
        await wait_for(lambda: relay.entry("obs").publisher is None, 10, "the session ended")
    finally:
        await viewer.close()
        await pc.close()
        video.stop()
        await asyncio.sleep(0)
