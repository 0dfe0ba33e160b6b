"""The age shown is the age of what is on screen: a drone that stops sending (its process
frozen, as a dead radio link freezes it) turns the view page's and the wall's figure into
the time since the last live picture, growing, amber then red — never the last good latency
in green — and back to a live, non-negative figure when it returns."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from tests.browser import chromium
from tests.helpers import RelayHandle, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("chromium_required")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_a_signal_loss_shows_the_age_of_the_last_live_picture(relay: RelayHandle) -> None:
    drone = subprocess.Popen([sys.executable, "-m", "drone_sim", "--whip", f"{relay.url}/whip/drone1",
                              "--size", "640x360", "--no-klv"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: relay.entry("drone1") is not None and relay.entry("drone1").frames_in > 10,
                       30, "drone1 live")
        async with chromium() as ctx:
            view = await ctx.new_page()
            await view.goto(f"{relay.url}/view/drone1?rendition=low")
            wall = await ctx.new_page()
            await wall.goto(f"{relay.url}/wall")
            await view.wait_for_function(
                "window.__player.stats.picture === 'live' && window.__player.stats.age !== null", timeout=30000)
            await wall.wait_for_function(
                "[...document.querySelectorAll('.tile .age')].some((e) => e.textContent.startsWith('age '))",
                timeout=30000)
            green = await view.evaluate("window.__player.thresholds.green_ms")

            drone.send_signal(signal.SIGSTOP)  # the link is gone: not one more packet
            await view.wait_for_function("window.__player.stats.picture === 'signal lost'", timeout=15000)
            first = await view.evaluate("window.__player.stats.age")
            await asyncio.sleep(1.5)
            hud = await view.evaluate("""() => ({age: window.__player.stats.age,
                state: document.getElementById('state').textContent,
                lat: document.getElementById('lat').textContent,
                cls: document.getElementById('lat').className,
                kind: document.getElementById('kind').textContent})""")
            # The figure is the time since the last live picture: over a second, growing.
            assert hud["age"] > max(1000, green) and hud["age"] >= first + 1000, (first, hud)
            assert hud["state"] == "signal lost" and "SIGNAL LOST" in hud["kind"], hud
            assert "lvl-green" not in hud["cls"] and hud["lat"].endswith(" s"), hud
            tiles = await wall.evaluate(
                "[...document.querySelectorAll('.tile .age')].map((e) => [e.textContent, e.className])")
            lost = [t for t in tiles if t[0].startswith(("LOST", "FROZEN"))]
            assert lost and all("lvl-green" not in cls for _, cls in lost), tiles
            # The tile's footer and border in step with its picture (not the list's 2 s beat):
            # the slate's age, said the same way.
            await wall.wait_for_function("""() => {
                const t = window.__wall.get('drone1');
                const foot = t.el.querySelector('.health').textContent;
                const age = t.el.querySelector('.age').textContent;
                return t.player.stats.picture === 'signal lost' && t.el.classList.contains('lost')
                    && foot.startsWith('SIGNAL LOST ') && age === `LOST · ${foot.slice(12).split(' ago')[0]}`; }""",
                                         timeout=15000)
            # The relay's own record of it: the stream is lost and its slate is no latency sample.
            assert relay.entry("drone1").state.value == "lost"

            drone.send_signal(signal.SIGCONT)
            await view.wait_for_function("window.__player.stats.picture === 'live'", timeout=20000)
            seen = []
            for _ in range(8):  # as the clock re-settles: never a negative figure
                seen.append(await view.evaluate(
                    "[window.__player.stats.age, document.getElementById('lat').textContent]"))
                await asyncio.sleep(0.25)
            assert all(age is None or age >= 0 for age, _ in seen), seen
            assert not any(text.startswith("-") for _, text in seen), seen
            # (under load a second without a new frame is called "frozen", rightly: it returns)
            await view.wait_for_function("document.getElementById('state').textContent === 'playing'",
                                         timeout=15000)
            # The wall's tile back to live with its picture: border and footer.
            await wall.wait_for_function("""() => { const t = window.__wall.get('drone1');
                return t.player.stats.picture === 'live' && t.el.classList.contains('live')
                    && t.el.querySelector('.health').textContent.startsWith('live'); }""", timeout=20000)
    finally:
        drone.send_signal(signal.SIGCONT)
        drone.terminate()
        drone.wait(5)
