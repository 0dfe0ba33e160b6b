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


def test_sigterm_ends_the_relay_quickly_with_a_request_in_flight(tmp_path: Path) -> None:
    """A centre asked to stop (systemctl restart) while an upload is in flight exits within
    seconds — aiohttp's default grace of 60 s kept its port closed and its screens dark."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from relay.sources.gate import free_tcp_port

    port = free_tcp_port()
    cfg = tmp_path / "relay.toml"
    cfg.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\nlog_level = "warning"\n'
                   '[webrtc]\nice_addresses = ["127.0.0.1"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "relay", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), 0.5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "relay did not start"
                time.sleep(0.1)
        # An upload that never finishes: headers promise 1 GB, a few bytes come.
        sock.sendall(b"POST /whep/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
                     b"Content-Length: 1000000000\r\n\r\nv=0\r\n")
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        took = time.monotonic() - t0
        sock.close()
        assert took < 5, took  # measured 1.4 s; before: 10.9 s (aiohttp's grace for the request)
    finally:
        if proc.poll() is None:
            proc.kill()
