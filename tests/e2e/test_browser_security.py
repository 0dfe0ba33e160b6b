"""In Debian's Chromium: HTTPS with our own CA, and the wall under attack with its CSP enforced."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.browser import chromium, have_chromium
from tests.e2e.test_security import TOKENS, secured
from tests.helpers import Drone, WhepViewer, wait_for

pytestmark = pytest.mark.browser


def spki_pin(cert_pem: bytes) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value: base64 SHA-256 of the key."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Any]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_pem = tmp_path / "relay.pem", tmp_path / "relay.key", tmp_path / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(ca_pem))
    return {"cert": str(cert), "key": str(key), "ca": str(ca_pem),
            "pin": spki_pin(leaf.cert_chain_pems[0].bytes())}


async def test_https_pages_api_whip_and_whep_in_chromium(relay_factory: Any, tls_files: dict[str, Any]) -> None:
    assert have_chromium(), "Debian's chromium is required (scripts/setup.sh --dev installs it)"
    relay = await relay_factory({
        "server": {"tls_cert": tls_files["cert"], "tls_key": tls_files["key"]},
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
    })
    assert relay.url.startswith("https://localhost:")
    # A client that trusts our CA gets in; one that does not is refused by TLS itself.
    trusted = ssl.create_default_context(cafile=tls_files["ca"])
    async with aiohttp.ClientSession() as s:
        async with s.get(relay.url + "/healthz", ssl=trusted) as r:
            assert r.status == 200 and r.headers["Strict-Transport-Security"].startswith("max-age=")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with s.get(relay.url + "/healthz"):
                pass
        # Plain HTTP to the TLS port gets no answer of ours.
        with pytest.raises(aiohttp.ClientError):
            async with s.get(relay.url.replace("https://", "http://") + "/healthz"):
                pass
    drone = Drone(f"{relay.url}/whip/d1", size=(640, 360), ca_file=tls_files["ca"])
    try:
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 20, "WHIP over TLS")
        fake = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        async with chromium([f"--ignore-certificate-errors-spki-list={tls_files['pin']}", *fake]) as ctx:
            page = await ctx.new_page()
            resp = await page.goto(f"{relay.url}/view/d1?rendition=low")
            assert resp is not None and resp.ok and resp.url.startswith("https://")
            await page.wait_for_function("() => window.__player && window.__player.stats.frames > 30",
                                         timeout=30000)
            assert await page.evaluate("() => window.isSecureContext") is True
            # A browser's camera needs a secure context: over HTTPS the publish page gets one.
            pub = await ctx.new_page()
            await pub.goto(f"{relay.url}/publish/phone1?autostart=1")
            await wait_for(lambda: relay.entry("phone1") is not None
                           and relay.entry("phone1").frames_in > 30, 30, "camera published over HTTPS")
    finally:
        await drone.stop()


async def test_wall_renders_a_viewers_html_as_text_under_its_csp(relay_factory: Any) -> None:
    assert have_chromium(), "Debian's chromium is required (scripts/setup.sh --dev installs it)"
    relay = await relay_factory(secured())
    drone = Drone(f"{relay.url}/whip/alpha", token=TOKENS["pub_alpha"], size=(640, 360))
    evil = WhepViewer(relay.url, "alpha", token=TOKENS["viewer_alpha"], read_stamps=False, channel=True)
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    try:
        await wait_for(lambda: relay.entry("alpha").frames_in > 5, 15, "alpha live")
        await evil.start()
        await evil.wait_frames(3)
        await wait_for(lambda: evil.channel.readyState == "open", 10, "data channel")
        # Infinity is not JSON (no browser sends it): the whole message is refused, counted.
        evil.channel.send(json.dumps({"type": "report", "report": {"user_agent": "inf", "fps": 1e308 * 10}}))
        await wait_for(lambda: any(v.bad_messages == 1 for v in relay.viewers("alpha").values()), 10,
                       "the Infinity report refused")
        evil.channel.send(json.dumps({"type": "report", "report": {
            "user_agent": payload, "latency_kind": "<b>bold</b>", "fps": 1e308, "loss_pct": 12.5}}))
        await wait_for(lambda: any(v.report.get("user_agent") for v in relay.viewers("alpha").values()),
                       10, "report stored")
        rep = next(v.report for v in relay.viewers("alpha").values() if v.report)
        assert "latency_kind" not in rep and "fps" not in rep and rep["loss_pct"] == 12.5
        async with chromium(bypass_csp=False) as ctx:
            page = await ctx.new_page()
            urls: list[str] = []
            page.on("request", lambda r: urls.append(r.url))
            resp = await page.goto(f"{relay.url}/wall#token={TOKENS['control']}")
            assert resp is not None
            csp = (await resp.all_headers())["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            tile = page.locator('.tile[data-name="alpha"]')
            await tile.wait_for(timeout=15000)
            await tile.locator("button").click()
            body = page.locator("#dlg-body")
            await body.locator("td", has_text="<img src=x").wait_for(timeout=10000)
            assert payload in (await body.text_content() or "")  # shown, as text
            assert await body.locator("img").count() == 0 and await body.locator("script").count() == 0
            assert await page.evaluate("() => window.__pwned") is None
            # The token was taken from the fragment, which is gone, and never sent in a URL.
            assert await page.evaluate("() => location.hash") == ""
            assert urls and not any(TOKENS["control"] in u for u in urls)
    finally:
        await evil.close()
        await drone.stop()
