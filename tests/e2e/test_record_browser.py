"""Chromium on the view page: instant replay of the record beside the live picture, back to
live in one click, a clip saved as a download, a snapshot saved into the record; the
incident page lists both. All with a commander's token that carries "playback"."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium
from tests.e2e.test_ingest import StampedFfmpeg, free_port
from tests.e2e.test_record import record_config, stamps_of
from tests.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("chromium_required", "ffmpeg_required")]


async def test_replay_timeline_clip_and_snapshot_in_chromium(relay_factory: Any, tmp_path: Path) -> None:
    port = free_port()
    relay = await relay_factory(record_config(tmp_path, port, segment_s=4))
    root = tmp_path / "rec"
    pusher = StampedFfmpeg("flv", f"rtmp://127.0.0.1:{port}/live/cam?token=publish-token-1")
    try:
        rec = relay.services.record
        assert rec is not None
        await wait_for(lambda: relay.entry("cam").state.value == "live", 20, "RTMP live")
        await wait_for(lambda: rec.segments("cam") and
                       rec.segments("cam")[-1].end_ms - rec.segments("cam")[0].start_ms > 9000, 30,
                       "10 s recorded")
        async with chromium(viewport=(1280, 720)) as ctx:
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{relay.url}/view/cam#token=commander-token")
            await page.wait_for_function("window.__player && window.__player.stats.frames > 20", timeout=20000)
            await page.wait_for_selector("#replaybar:not([hidden])", timeout=10000)

            # ⟲ 30 s: the record plays in the big picture, live shrinks into the corner.
            await page.click("#back30")
            await page.wait_for_function("window.__replay.playing && document.getElementById('replay').currentTime > 1.5",
                                         timeout=15000)
            state = await page.evaluate("""() => ({
                log: window.__replay.log, w: document.getElementById('replay').videoWidth,
                replaying: document.getElementById('stage').classList.contains('replaying'),
                badge: document.getElementById('replay-badge').textContent,
                liveVisible: !document.getElementById('live').hidden })""")
            assert state["w"] == 640 and state["replaying"] and state["liveVisible"], state
            assert state["badge"].startswith("REPLAY"), state
            await page.screenshot(path=str(tmp_path / "replay-desktop.png"))
            # 30 s back is before the record began: the clip starts where the record starts.
            first = rec.segments("cam")[0].start_ms
            from relay.http.record import dt  # the page's times are ISO strings from the relay

            start = dt.datetime.fromisoformat(state["log"][0]["start"].replace("Z", "+00:00")).timestamp() * 1000
            assert abs(start - first) < 1500, (start, first)
            live_frames = await page.evaluate("window.__player.stats.frames")
            await page.wait_for_function(f"window.__player.stats.frames > {live_frames + 15}", timeout=10000)

            # Drag the timeline to 5 s ago: the replay jumps there.
            dragged = await page.evaluate("""() => { const t = document.getElementById('timeline');
                t.value = '-5'; t.dispatchEvent(new Event('change')); return Date.now(); }""")
            await page.wait_for_function("window.__replay.log.length >= 2", timeout=15000)
            second = await page.evaluate("window.__replay.log[1]")
            # It asked for 5 s before the drag, and the clip it plays starts there (at the
            # keyframe at or before it: within a GOP) — not at the live edge, not at the start.
            assert abs(second["asked"] - (dragged - 5000)) < 1000, (second, dragged)
            clip_start = dt.datetime.fromisoformat(second["start"].replace("Z", "+00:00")).timestamp() * 1000
            assert second["asked"] - 2500 <= clip_start <= second["asked"] + 500, (second, clip_start)
            assert second["end"] > second["start"]

            # One click back to live.
            await page.click("#live")
            back = await page.evaluate("""() => ({ playing: window.__replay.playing,
                hidden: document.getElementById('replay').hidden,
                replaying: document.getElementById('stage').classList.contains('replaying') })""")
            assert back == {"playing": False, "hidden": True, "replaying": False}, back
            f = await page.evaluate("window.__player.stats.frames")
            await page.wait_for_function(f"window.__player.stats.frames > {f + 15}", timeout=10000)

            # Save clip: a download of an MP4 holding the last 30 s (stamped frames).
            async with page.expect_download(timeout=20000) as dl_info:
                await page.click("#saveclip")
            dl = await dl_info.value
            assert dl.suggested_filename.startswith("cam_") and dl.suggested_filename.endswith(".mp4")
            saved = await asyncio.to_thread(Path(await dl.path()).read_bytes)
            assert len(stamps_of(saved)) > 100

            # Snapshot: a full-resolution JPEG sealed into the record.
            await page.click("#snapshot")
            await page.wait_for_function("document.getElementById('toast').textContent.includes('Snapshot saved')",
                                         timeout=10000)
            snaps = sorted(root.glob("cam/*/snap-*.jpg"))
            assert len(snaps) == 1 and snaps[0].read_bytes()[:2] == b"\xff\xd8"
            assert [e for e in (json.loads(x) for x in (root / "cam" / "manifest.jsonl").read_text().splitlines())
                    if e["kind"] == "snapshot" and e["by"] == "einsatzleiter"]

            # The incident page lists the spans and shows the snapshot (fetched with the token).
            inc = await ctx.new_page()
            await inc.goto(f"{relay.url}/incident#token=commander-token")
            await inc.wait_for_function("document.querySelectorAll('section.record tr').length >= 2 && "
                                        "[...document.querySelectorAll('.snaps img')].some(i => i.naturalWidth > 0)",
                                        timeout=15000)
            width = await inc.evaluate("document.querySelector('.snaps img').naturalWidth")
            assert width == 640  # full resolution of the source
            for name, size in (("phone", (390, 844)), ("wall", (1920, 1080))):
                await page.set_viewport_size({"width": size[0], "height": size[1]})
                await page.screenshot(path=str(tmp_path / f"view-{name}.png"))
            assert not errors, errors
        audit = [json.loads(x) for x in (root / "audit.jsonl").read_text().splitlines()]
        kinds = {(a["action"], a["who"]) for a in audit}
        assert {("replay", "einsatzleiter"), ("clip", "einsatzleiter"), ("snapshot", "einsatzleiter"),
                ("snapshot-view", "einsatzleiter"), ("list", "einsatzleiter")} <= kinds, kinds
    finally:
        pusher.kill()


async def test_the_incident_page_hides_spans_of_no_length(relay_factory: Any, tmp_path: Path) -> None:
    """A source that came and went leaves spans of no length ("0 min 0 s · 0.0 MB" with a
    download button): the page lists the real one and says how many it left out. The record's
    listing is the relay's answer, as a flapping drone left it (served to the page as is)."""
    relay = await relay_factory(record_config(tmp_path, free_port(), segment_s=4))
    t = 1_795_000_000_000
    listing = {"recordings": [{"stream": "cam", "status": {"recording": False}, "vehicles": [], "snapshots": [],
                               "spans": [{"start_ms": t, "end_ms": t + 5000, "bytes": 2_000_000, "open": False},
                                         {"start_ms": t + 9000, "end_ms": t + 9000, "bytes": 0, "open": False},
                                         {"start_ms": t + 9500, "end_ms": t + 9700, "bytes": 0, "open": False}]}]}
    async with chromium() as ctx:
        page = await ctx.new_page()

        async def answer(route: Any) -> None:
            await route.fulfill(status=200, content_type="application/json", body=json.dumps(listing))
        await page.route("**/api/recordings", answer)
        await page.goto(f"{relay.url}/incident#token=commander-token")
        await page.wait_for_selector("#streams section.record table")
        rows = await page.eval_on_selector_all("#streams section.record tr", "rs => rs.map(r => r.textContent)")
    assert len(rows) == 3, rows  # the header, the 5 s span, the note
    assert "0 min 5 s" in rows[1] and "2.0 MB" in rows[1], rows
    assert rows[2] == "2 spans under a second (the source came and went) not listed", rows
