"""A viewer that vanishes costs nothing for long: a frozen laptop (its process stopped: no
DELETE, no RTCP) is dropped after a few seconds of silence, not after ICE consent expires;
a closed tab ends its session at once. Until then the relay would keep sending a rendition
into a link that, after a reload on LTE, is the one the viewer's new session needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.helpers import RelayHandle, WhepViewer, wait_for

ROOT = Path(__file__).resolve().parents[2]


async def test_a_frozen_viewer_is_dropped_after_seconds_of_silence(live: RelayHandle) -> None:
    other = WhepViewer(live.url, "drone1", rendition="low", read_stamps=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.loadviewer", "--whep", f"{live.url}/whep/drone1?rendition=low",
         "--count", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await other.start()
        await wait_for(lambda: len(live.viewers("drone1")) == 2, 20, "two viewers")
        await other.wait_frames(30)
        await wait_for(lambda: all(v.tap.last_rtcp is not None for v in live.services.whep.viewers.values()),
                       10, "RTCP from both")
        os.kill(proc.pid, signal.SIGSTOP)  # the laptop freezes: nothing more from it
        t0 = time.monotonic()
        await wait_for(lambda: len(live.viewers("drone1")) == 1, 20, "the frozen viewer to be dropped")
        gone_after = time.monotonic() - t0
        assert gone_after < 12, gone_after  # ICE consent alone would take about 30 s
        # The other viewer never noticed.
        n = other.seen.frames
        await other.wait_frames(n + 30, timeout=10)
    finally:
        proc.kill()
        proc.wait(5)
        await other.close()


@pytest.mark.browser
@pytest.mark.usefixtures("chromium_required")
async def test_a_closed_tab_ends_its_session_at_once(live: RelayHandle) -> None:
    async with chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(f"{live.url}/view/drone1?rendition=low")
        await page.wait_for_function("window.__player && window.__player.stats.frames > 10", timeout=20000)
        assert len(live.viewers("drone1")) == 1
        await page.close(run_before_unload=True)
        t0 = time.monotonic()
        await wait_for(lambda: len(live.viewers("drone1")) == 0, 10, "the closed tab's session to end")
        assert time.monotonic() - t0 < 3
