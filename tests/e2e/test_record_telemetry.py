"""The record keeps the drone's telemetry track beside each segment, sealed in the same
manifest: a replayed span shows where the drone was, and tampering with a track is named."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_ingest import StampedFfmpeg, free_port
from tests.e2e.test_record import manifest, record_config, verify
from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("ffmpeg_required")


async def test_telemetry_track_is_recorded_sealed_and_replayable(relay_factory: Any, tmp_path: Path) -> None:
    port = free_port()
    relay = await relay_factory(record_config(tmp_path, port, segment_s=2))
    root = tmp_path / "rec"
    pusher = StampedFfmpeg("flv", f"rtmp://127.0.0.1:{port}/live/cam?token=publish-token-1")
    pub = {"Authorization": "Bearer publish-token-1"}
    try:
        rec = relay.services.record
        await wait_for(lambda: relay.entry("cam") is not None and relay.entry("cam").state.value == "live",
                       20, "RTMP live")
        t0 = time.time()
        async with aiohttp.ClientSession() as s:
            for _ in range(40):  # 4 s of a drone flying north at 10 m/s, 10 reports a second
                now = time.time()
                async with s.post(f"{relay.url}/api/streams/cam/telemetry", headers=pub, json={
                        "t": now, "lat": 48.0 + (now - t0) * 10 / 111320, "lon": 11.0, "rel_alt": 50,
                        "battery": 80}) as r:
                    assert r.status == 204
                await asyncio.sleep(0.1)
        await wait_for(lambda: len(rec.segments("cam", kind="telemetry")) >= 1, 15, "a sealed telemetry track")
        tracks = [d for d in manifest(root, "cam") if d["kind"] == "telemetry"]
        assert tracks and tracks[0]["segment"].endswith(".mp4") and tracks[0]["samples"] > 5
        track_file = root / tracks[0]["file"]
        assert track_file.name.endswith(".telemetry.jsonl") and '"lat":48.0' in track_file.read_text()
        # The replay's question: where was the drone between t0 and t0 + 4 s?
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{relay.url}/api/recordings/cam/telemetry?from={t0}&to={t0 + 5}",
                             headers={"Authorization": "Bearer view-token-1"}) as r:
                assert r.status == 403  # a plain viewer has no playback
            async with s.get(f"{relay.url}/api/recordings/cam/telemetry?from={t0}&to={t0 + 5}",
                             headers={"Authorization": "Bearer commander-token"}) as r:
                doc = await r.json()
        ts = [d["t"] for d in doc["samples"]]
        assert len(ts) >= 30 and ts == sorted(ts), len(ts)
        north = (doc["samples"][-1]["lat"] - doc["samples"][0]["lat"]) * 111320
        # ~10 m/s over the samples' own span (the posting loop runs slower on a busy machine)
        span = ts[-1] - ts[0]
        assert span > 2.5 and 8 * span < north < 12 * span, (north, span)
    finally:
        pusher.kill()
    await relay.runner.cleanup()
    code, out = verify(root)
    assert code == 0, out
    track_file.write_text(track_file.read_text().replace('"lat":48.0', '"lat":49.0', 1))
    code, out = verify(root)
    assert code == 1 and "MODIFIED" in out and track_file.name in out, out
