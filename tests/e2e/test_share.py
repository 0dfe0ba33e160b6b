"""Share links: a control-centre user makes a link with a QR code; a phone (Chromium) scans
it and watches with no other login; the viewer cap holds; revoking ends the session within
seconds; an expired link ends its sessions; forged and misused links fail."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import cv2
import jwt
import numpy as np
import pytest

from tests.browser import chromium
from tests.helpers import Drone, WhepViewer, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("chromium_required")]
SECRET = "share-test-secret-0123456789abcdef-xyz"
CONTROL = {"Authorization": "Bearer leitstelle-secret"}


def share_config(tmp_path: Any) -> dict[str, Any]:
    return {
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "auth": {"enabled": True, "jwt_secret": SECRET, "shares_file": str(tmp_path / "shares.json"),
                 "tokens": [{"token": "leitstelle-secret", "role": "control", "name": "Leitstelle"},
                            {"token": "viewer-secret", "role": "viewer", "name": "tablet"}]},
        "streams": {"d1": {"publish_token": "pub-one-secret"}, "d2": {"publish_token": "pub-two-secret"}},
    }


async def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, (await r.json()) if r.content_type == "application/json" else await r.text()


def read_qr(gray: Any) -> str:
    """What a phone's reader gets from the code: OpenCV's two detectors, a few scales, with
    a quiet zone around it (the link holds a random token id, so the pattern differs each
    run, and one detector at one scale missed some patterns)."""
    framed = cv2.copyMakeBorder(gray, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
    detectors = [cv2.QRCodeDetector()]
    if hasattr(cv2, "QRCodeDetectorAruco"):
        detectors.append(cv2.QRCodeDetectorAruco())
    for scale in (1, 2, 3):
        img = cv2.resize(framed, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        for det in detectors:
            text, _, _ = det.detectAndDecode(img)
            if text:
                return str(text)
    return ""


async def test_share_link_qr_phone_cap_revoke(relay_factory: Any, tmp_path: Any) -> None:
    relay = await relay_factory(share_config(tmp_path))
    drone = Drone(f"{relay.url}/whip/d1", token="pub-one-secret", size=(320, 240))
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        req = {"stream": "d1", "label": "Einsatzleiter <b>Nord</b>", "ttl_s": 600, "max_viewers": 1}
        # Intruders: no token, a viewer's token.
        for h, status in (({}, 401), ({"Authorization": "Bearer viewer-secret"}, 403)):
            st, _ = await post(f"{relay.url}/api/shares", req, h)
            assert st == status
        assert relay.services.shares.shares == {}
        for bad in ({**req, "ttl_s": 1}, {**req, "max_viewers": -1}, {**req, "stream": "../x"}):
            st, _ = await post(f"{relay.url}/api/shares", bad, CONTROL)
            assert st == 422, bad
        st, share = await post(f"{relay.url}/api/shares", req, CONTROL)
        assert st == 201, share
        url = share["url"]
        assert url.startswith(f"{relay.url}/view/d1#token=") and share["created_by"] == "Leitstelle"
        assert (tmp_path / "shares.json").exists() and share["id"] in (tmp_path / "shares.json").read_text()
        async with chromium(viewport=(390, 844)) as ctx:
            # The control centre's share page shows the QR code; OpenCV reads it back from the
            # screenshot, as a phone camera would.
            page = await ctx.new_page()
            await page.goto(f"{relay.url}/share#token=leitstelle-secret")
            await page.wait_for_selector("#stream option[value=d1]", state="attached", timeout=10000)
            await page.select_option("#stream", "d1")
            await page.fill("#label", "Einsatzleiter <b>Nord</b>")
            await page.click("#create button[type=submit]")
            await page.wait_for_selector("#created:not([hidden])", timeout=10000)
            # The image is set from a data URL: wait until it has decoded (a busy machine
            # screenshotted it blank once), then read it as a phone would, a few tries.
            await page.wait_for_function("document.getElementById('qr').complete && "
                                         "document.getElementById('qr').naturalWidth > 0", timeout=10000)
            scanned = ""
            for _ in range(3):
                png = await page.locator("#qr").screenshot()
                scanned = read_qr(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE))
                if scanned:
                    break
                await asyncio.sleep(0.3)
            assert scanned.startswith(f"{relay.url}/view/d1#token=") and scanned == await page.input_value("#created-url")
            # The label is text, not HTML.
            assert await page.locator("#created-label b").count() == 0
            assert "<b>Nord</b>" in await page.text_content("#created-label")
            await page.close()

            phone = await ctx.new_page()
            await phone.goto(url)  # no other login
            await phone.wait_for_function("window.__player && window.__player.stats.frames > 10", timeout=20000)
            assert "token=" not in phone.url  # the fragment is taken off the address bar
            # The cap: one viewer at a time through this link.
            token = url.split("#token=")[1]
            extra = WhepViewer(relay.url, "d1", token=token)
            try:
                await extra.start()
                raise AssertionError("a second viewer got in past max_viewers = 1")
            except AssertionError as exc:
                assert "429" in str(exc) and "allows 1 viewer" in str(exc), exc
            finally:
                await extra.close()
            # Only the stream it was made for.
            other = WhepViewer(relay.url, "d2", token=token)
            with pytest.raises(AssertionError, match="403"):
                await other.start()
            await other.close()
            async with aiohttp.ClientSession() as s, s.get(f"{relay.url}/api/shares", headers=CONTROL) as r:
                listed = {d["id"]: d for d in (await r.json())["shares"]}
            assert listed[share["id"]]["viewers"] == 1 and len(listed) == 2
            # Revoke: the phone's session ends at once, and it cannot come back.
            t0 = time.monotonic()
            async with aiohttp.ClientSession() as s, s.delete(f"{relay.url}/api/shares/{share['id']}",
                                                              headers=CONTROL) as r:
                assert r.status == 200 and (await r.json())["sessions_ended"] == 1
            await wait_for(lambda: not relay.viewers("d1"), 5, "the phone's session to end")
            await phone.wait_for_function("window.__player.stats.state === 'ended'", timeout=10000)
            assert "revoked" in await phone.text_content("#banner")
            print(f"\nrevoked: phone's session ended after {time.monotonic() - t0:.2f} s")
            await asyncio.sleep(3)
            assert not relay.viewers("d1")  # its reconnects are refused
            again = WhepViewer(relay.url, "d1", token=token)
            with pytest.raises(AssertionError, match="revoked"):
                await again.start()
            await again.close()
    finally:
        await drone.stop()


async def test_expired_and_forged_share_links(relay_factory: Any, tmp_path: Any) -> None:
    relay = await relay_factory(share_config(tmp_path))
    drone = Drone(f"{relay.url}/whip/d1", token="pub-one-secret", size=(320, 240))
    try:
        await wait_for(lambda: relay.entry("d1").frames_in > 5, 15, "video")
        st, share = await post(f"{relay.url}/api/shares", {"stream": "d1", "ttl_s": 10}, CONTROL)
        assert st == 201
        token = share["url"].split("#token=")[1]
        viewer = WhepViewer(relay.url, "d1", token=token, read_stamps=False)
        await viewer.start()
        await viewer.wait_frames(5)
        # Expiry ends the running session too (the relay checks every 2 s).
        await wait_for(lambda: not relay.viewers("d1"), 20, "the expired link's session to end")
        assert time.time() >= share["expires"] - 1
        await viewer.close()
        # Forged: the same claims signed with another key; a share claim on a control token.
        now = int(time.time())
        claims = {"role": "viewer", "streams": ["d1"], "iat": now, "exp": now + 600, "jti": "x", "share": True}
        forged = jwt.encode(claims, "another-secret-0123456789abcdef-000", algorithm="HS256")
        unknown = jwt.encode(claims, SECRET, algorithm="HS256")  # well signed, but not in the book
        escalate = jwt.encode({**claims, "role": "control", "jti": share["id"]}, SECRET, algorithm="HS256")
        for tok, why in ((forged, "Signature verification failed"), (unknown, "expired or is unknown"),
                         (escalate, "a share link is a viewer of one stream")):
            v = WhepViewer(relay.url, "d1", token=tok)
            with pytest.raises(AssertionError, match=why):
                await v.start()
            await v.close()
        # The book is on disk: a restarted relay still knows the link (and that it expired).
        assert share["id"] in (tmp_path / "shares.json").read_text()
        body = base64.b64decode(token.split(".")[1] + "==")
        assert b'"share":true' in body
    finally:
        await drone.stop()


async def test_the_share_page_says_plainly_when_links_cannot_be_made(relay_factory: Any, tmp_path: Any) -> None:
    """Without a signing secret no link can be made: the page says so over a form it
    disables (it looked usable, "Create link" answered 501 in the header, and the list's
    refresh wiped the message within 3 s); the API says why, and a create is still a 501."""
    cfg = share_config(tmp_path)
    del cfg["auth"]["jwt_secret"]
    relay = await relay_factory(cfg)
    async with aiohttp.ClientSession() as s, s.get(f"{relay.url}/api/shares", headers=CONTROL) as r:
        doc = await r.json()
    assert doc["can_create"] is False and "auth.jwt_secret" in doc["why_not"], doc
    status, body = await post(f"{relay.url}/api/shares", {"stream": "d1"}, CONTROL)
    assert status == 501, (status, body)
    async with chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(f"{relay.url}/share#token=leitstelle-secret")
        await page.wait_for_selector("#off:not([hidden])", timeout=10_000)
        off = await page.text_content("#off")
        assert off is not None and "share links are off" in off and "auth.jwt_secret" in off, off
        assert await page.is_disabled("#create button[type=submit]")
        await asyncio.sleep(3.5)  # (a refresh of the list went by: the notice stays)
        assert await page.is_visible("#off")
    # With the secret, the same page offers the form.
    (tmp_path / "on").mkdir()
    on = await relay_factory(share_config(tmp_path / "on"))
    async with aiohttp.ClientSession() as s, s.get(f"{on.url}/api/shares", headers=CONTROL) as r:
        assert (await r.json())["can_create"] is True
