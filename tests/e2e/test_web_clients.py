"""WHIP/WHEP client libraries from the npm registry, in Chromium, against the relay: Eyevinn's
`@eyevinn/webrtc-player` (WHEP) and `@eyevinn/whip-web-client`, and `whip-whep`'s
WHEPClient and WHIPClient. They are bundled here at test time with esbuild (pinned by
tools/web-clients/package-lock.json; scripts/setup.sh --dev installs them) into a page on
a port of its own: a second origin, as a third-party player would be (CORS)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser import chromium
from tests.helpers import Drone, WhepViewer, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("chromium_required")]
TOOLS = Path(__file__).resolve().parents[2] / "tools" / "web-clients"
PAGE = '<!doctype html><meta charset="utf-8"><video id="v" autoplay muted playsinline></video>' \
       '<script type="module" src="clients.js"></script>'


@pytest.fixture
async def client_page(tmp_path: Path) -> Any:
    """The bundled clients on http://127.0.0.1:<port>/ (another origin than the relay's)."""
    esbuild = TOOLS / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "the npm WHIP/WHEP clients are missing: run scripts/setup.sh --dev"
    subprocess.run([str(esbuild), str(TOOLS / "clients.mjs"), "--bundle", "--format=esm",
                    f"--outfile={tmp_path / 'clients.js'}", "--log-level=warning"], check=True, timeout=60)
    (tmp_path / "index.html").write_text(PAGE)
    app = web.Application()
    app.router.add_static("/", tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/index.html"
    await runner.cleanup()


async def _fps(page: Any, seconds: float = 3.0) -> float:
    a = await page.evaluate("window.frames()")
    t = time.monotonic()
    await page.wait_for_timeout(seconds * 1000)
    return (await page.evaluate("window.frames()") - a) / (time.monotonic() - t)


@pytest.mark.parametrize("player", ["eyevinnPlayer", "whipWhepView"])
async def test_npm_whep_players_play(relay_factory: Any, client_page: str, player: str) -> None:
    relay = await relay_factory()
    drone = Drone(f"{relay.url}/whip/d1")
    try:
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 15, "d1 live")
        async with chromium() as ctx:
            page = await ctx.new_page()
            await page.goto(client_page)
            t0 = time.monotonic()
            await page.evaluate("([name, url]) => window.clients[name](url)", [player, f"{relay.url}/whep/d1"])
            await page.wait_for_function("window.frames && window.frames() > 30", timeout=20000)
            first = time.monotonic() - t0
            fps = await _fps(page)
            print(f"\n{player}: {fps:.1f} fps, 30 frames {first:.2f} s after the offer")
            assert fps > 10, fps  # playing, not a slideshow (the rate is a figure, printed)
            assert len(relay.viewers("d1")) == 1
    finally:
        await drone.stop()


@pytest.mark.parametrize("publisher", ["eyevinnWhip", "whipWhepPublish"])
async def test_npm_whip_publishers_go_live(relay_factory: Any, client_page: str, publisher: str) -> None:
    relay = await relay_factory()
    async with chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(client_page)
        t0 = time.monotonic()
        await page.evaluate("([name, url]) => window.clients[name](url)", [publisher, f"{relay.url}/whip/pub"])
        await wait_for(lambda: relay.entry("pub") is not None and relay.entry("pub").state.value == "live",
                       15, f"{publisher} live")
        print(f"\n{publisher}: live {time.monotonic() - t0:.2f} s after the call")
        viewer = WhepViewer(relay.url, "pub", read_stamps=False)
        try:
            await viewer.start()
            await viewer.wait_frames(45, timeout=15)
        finally:
            await viewer.close()
