"""The record against the disk: a relay killed with SIGKILL mid-segment, and a small file
system (a tmpfs the test mounts in a mount namespace of its own) that fills up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_ingest import ROOT, StampedFfmpeg, free_port
from tests.e2e.test_record import ffprobe, manifest, verify

pytestmark = pytest.mark.usefixtures("ffmpeg_required")


def write_config(path: Path, http: int, rtmp: int, rec: Path, **record: Any) -> None:
    lines = [
        "[server]", f"port = {http}", 'log_format = "json"',
        "[rtmp]", "enabled = true", f"port = {rtmp}",
        "[media]", "signal_lost_after_s = 1.0",
        "[[renditions]]", 'name = "low"', "height = 360", "bitrate_kbps = 800",
        "[record]", "enabled = true", f'dir = "{rec}"',
        *(f"{k} = {json.dumps(v)}" for k, v in record.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_relay(cfg: Path, prefix: list[str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*(prefix or []), sys.executable, "-m", "relay", "--config", str(cfg)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def status(http: int, stream: str = "cam") -> dict[str, Any]:
    doc = get(f"http://127.0.0.1:{http}/api/streams/{stream}")
    return dict(doc.get("record", {}))


def test_sigkill_leaves_playable_segment_missing_at_most_two_seconds(tmp_path: Path) -> None:
    http, rtmp = free_port(), free_port()
    rec = tmp_path / "rec"
    cfg = tmp_path / "relay.toml"
    write_config(cfg, http, rtmp, rec, segment_s=60, fragment_s=1.0)
    relay = start_relay(cfg)
    pusher = None
    try:
        wait(lambda: get(f"http://127.0.0.1:{http}/healthz")["ok"], 20, "relay up")
        pusher = StampedFfmpeg("flv", f"rtmp://127.0.0.1:{rtmp}/live/cam")
        wait(lambda: status(http).get("recording"), 20, "recording")
        time.sleep(6.0)
        os.killpg(relay.pid, signal.SIGKILL)  # no goodbye: power cut
        killed_at = time.time()
        relay.wait(5)
    finally:
        if pusher is not None:
            pusher.kill()
        if relay.poll() is None:
            os.killpg(relay.pid, signal.SIGKILL)
    files = sorted(rec.glob("cam/*/*.mp4"))
    assert len(files) == 1, files
    seg = files[0]
    from relay.record.layout import file_time_ms

    started = file_time_ms(seg.name)
    assert started is not None
    frames, duration = ffprobe(seg)
    recorded_for = killed_at - started / 1000
    assert frames > 0 and duration >= recorded_for - 2.0, (duration, recorded_for)
    # Unsealed until the relay starts again, and verify says so.
    code, out = verify(rec)
    assert code == 1 and "ADDED" in out and "unsealed" in out, out
    relay = start_relay(cfg)
    try:
        wait(lambda: get(f"http://127.0.0.1:{http}/healthz")["ok"], 20, "relay up again")
    finally:
        os.killpg(relay.pid, signal.SIGTERM)
        relay.wait(10)
    sealed = [e for e in manifest(rec, "cam") if e["kind"] == "segment"]
    assert len(sealed) == 1 and sealed[0]["recovered"] is True and sealed[0]["frames"] == frames
    code, out = verify(rec)
    assert code == 0, out


def test_retention_oldest_first_and_free_space_floor(tmp_path: Path) -> None:
    http, rtmp = free_port(), free_port()
    rec = tmp_path / "rec"
    rec.mkdir()
    cfg = tmp_path / "relay.toml"
    # ~4 Mbit/s in 1 s segments; keep 2 MB per stream; stop under 3 MB free on a 16 MB disk.
    write_config(cfg, http, rtmp, rec, segment_s=2, max_stream_mb=2, min_free_mb=3)
    mount = ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs -o size=16m tmpfs "{rec}" && exec "$@"', "sh"]
    relay = start_relay(cfg, mount)
    pusher = None
    try:
        wait(lambda: get(f"http://127.0.0.1:{http}/healthz")["ok"], 20, "relay up")
        pusher = StampedFfmpeg("flv", f"rtmp://127.0.0.1:{rtmp}/live/cam", extra=["-b:v", "4000k"])
        wait(lambda: get(f"http://127.0.0.1:{http}/metrics").count("relay_record_files_deleted_total 0") == 0,
             60, "retention to delete")
        entries = manifest_in_ns(relay, rec)
        deleted = [e["file"] for e in entries if e["kind"] == "deleted"]
        sealed = [e["file"] for e in entries if e["kind"] == "segment"]
        assert deleted == sealed[: len(deleted)], (deleted, sealed)  # oldest first, in order
        held = sum(e["size"] for e in entries if e["kind"] == "segment" and e["file"] not in deleted)
        assert held <= 2.6e6, held  # the budget, plus the segment just sealed
        # Something else fills the disk: recording stops (once), live goes on, and it resumes.
        subprocess.run(["nsenter", "-t", str(relay.pid), "-m", "sh", "-c",
                                 f'head -c 13000000 /dev/zero > "{rec}/other-data" && df -k "{rec}"'],
                                capture_output=True, text=True, timeout=20, check=True)
        wait(lambda: status(http).get("paused"), 20, "recording paused")
        metrics = get(f"http://127.0.0.1:{http}/metrics")
        assert "relay_record_paused 1.0" in metrics
        frames = get(f"http://127.0.0.1:{http}/api/streams/cam")["frames_in"]
        wait(lambda: get(f"http://127.0.0.1:{http}/api/streams/cam")["frames_in"] > frames + 30, 15,
             "live going on while recording is paused")
        assert get(f"http://127.0.0.1:{http}/api/streams/cam")["state"] == "live"
        subprocess.run(["nsenter", "-t", str(relay.pid), "-m", "rm", f"{rec}/other-data"], check=True)
        wait(lambda: status(http).get("recording") and not status(http).get("paused"), 20, "resumed")
    finally:
        if pusher is not None:
            pusher.kill()
        os.killpg(relay.pid, signal.SIGTERM)
        _, err = relay.communicate(timeout=15)
    stopped = [line for line in err.decode().splitlines() if "recording stopped" in line]
    assert len(stopped) == 1, err.decode()[-2000:]  # logged once


def manifest_in_ns(relay: subprocess.Popen[bytes], rec: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["nsenter", "-t", str(relay.pid), "-m", "cat", f"{rec}/cam/manifest.jsonl"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]
