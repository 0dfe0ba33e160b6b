"""Stopping the relay: every service stops in its own step, and a step that fails cannot
keep the record from being sealed (one aiohttp cleanup context per service)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Drone, start_relay, wait_for


async def test_a_failing_stop_step_still_seals_the_record(tmp_path: Path) -> None:
    relay = await start_relay({
        "renditions": [{"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "record": {"enabled": True, "dir": str(tmp_path / "rec"), "min_free_mb": 1},
        "streams": {"drone1": {}},
    })
    drone = Drone(f"{relay.url}/whip/drone1", size=(320, 180))
    try:
        rec = relay.services.record
        assert rec is not None
        await wait_for(lambda: rec.recorders["drone1"].writer.stats.open_path, 20, "a segment open")
        writer = rec.recorders["drone1"].writer
        open_path = Path(writer.stats.open_path)

        async def broken() -> None:
            raise RuntimeError("a stop step that fails")

        # Both session tables fail to close, and they stop before the record does.
        relay.services.whep.close_all = broken  # type: ignore[method-assign]
        relay.services.whip.close_all = broken  # type: ignore[method-assign]
        with pytest.raises(Exception, match="a stop step that fails"):
            await relay.runner.cleanup()
    finally:
        await drone.stop()
    assert not writer.stats.open_path  # closed
    lines = [json.loads(ln) for ln in (tmp_path / "rec/drone1/manifest.jsonl").read_text().splitlines()]
    sealed = [e for e in lines if e.get("kind") == "segment"]
    assert sealed and Path(sealed[-1]["file"]).name == open_path.name, lines
