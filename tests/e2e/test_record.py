"""The incident record, end to end: Debian's ffmpeg pushes RTMP, the relay records fMP4
segments, ffprobe plays them, clips carry the frames of the asked time (read from the
simulator's stamps), and ``python -m relay verify`` names every kind of tampering."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from drone_sim.stamp import decode
from tests.e2e.test_ingest import ROOT, StampedFfmpeg, free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("ffmpeg_required")


def record_config(tmp: Path, port: int, **record: Any) -> dict[str, Any]:
    return {
        "renditions": [{"name": "low", "height": 360, "bitrate_kbps": 800}],
        "rtmp": {"enabled": True, "port": port},
        "media": {"signal_lost_after_s": 1.0},
        "record": {"enabled": True, "dir": str(tmp / "rec"), "segment_s": 3, "min_free_mb": 1, **record},
        "auth": {"enabled": True, "view_token": "view-token-1",
                 "tokens": [{"token": "control-token-1", "role": "control", "name": "leitstelle"},
                            {"token": "commander-token", "role": "viewer", "name": "einsatzleiter",
                             "playback": True}]},
        "streams": {"cam": {"publish_token": "publish-token-1"}},
    }


def ffprobe(path: Path) -> tuple[int, float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=nb_read_frames:format=duration", "-of", "json",
                          str(path)], capture_output=True, text=True, timeout=30, check=True)
    doc = json.loads(out.stdout)
    return int(doc["streams"][0]["nb_read_frames"]), float(doc["format"]["duration"])


def manifest(root: Path, stream: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / stream / "manifest.jsonl").read_text().splitlines()]


def verify(root: Path) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-m", "relay", "verify", str(root),
                        "--public-key", str(root / "signing-key.pem")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def stamps_of(data: bytes) -> list[int]:
    """The simulator's capture times (ms) stamped into each frame of an MP4."""
    import io

    out = []
    with av.open(io.BytesIO(data)) as c:
        for frame in c.decode(video=0):
            luma = np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8)
            s = decode(luma)
            if s is not None:
                out.append(s.capture_ms)
    return out


CONTROL = {"Authorization": "Bearer control-token-1"}


async def test_record_segments_clip_audit_and_tamper_evidence(relay_factory: Any, tmp_path: Path) -> None:
    port = free_port()
    relay = await relay_factory(record_config(tmp_path, port))
    root = tmp_path / "rec"
    url = f"rtmp://127.0.0.1:{port}/live/cam?token=publish-token-1"
    first = StampedFfmpeg("flv", url)
    try:
        await wait_for(lambda: relay.entry("cam").state.value == "live", 20, "RTMP live")
        rec = relay.services.record
        assert rec is not None
        await wait_for(lambda: sum(1 for s in rec.index["cam"] if s.kind == "segment") >= 2, 20,
                       "two sealed segments")
    finally:
        first.kill()
    # The publisher drops: the open segment is sealed ("stream lost"), and a return starts a new one.
    await wait_for(lambda: relay.entry("cam").state.value == "lost", 10, "stream lost")
    await wait_for(lambda: not rec.recorders["cam"].writer.stats.open_path, 10, "segment sealed")
    n_before = len(rec.index["cam"])
    second = StampedFfmpeg("flv", url)
    try:
        await wait_for(lambda: relay.entry("cam").state.value == "live", 20, "live again")
        await wait_for(lambda: len(rec.index["cam"]) > n_before, 20, "a segment after the return")
        await asyncio.sleep(1.5)
    finally:
        second.kill()
    await wait_for(lambda: not rec.recorders["cam"].writer.stats.open_path, 10, "segment sealed")

    entries = [e for e in manifest(root, "cam") if e["kind"] == "segment"]
    assert any(e["reason"].startswith("stream lost") for e in entries), [e["reason"] for e in entries]
    for e in entries:
        frames, duration = ffprobe(root / e["file"])
        assert frames == e["frames"], (e["file"], frames, e["frames"])
        # The file's duration is what its frames span (the manifest's times, from the same
        # timestamps), at a frame rate a drone sends (a wrong time base is off by 10x or
        # more). Not "frames / 30": a publisher starved by the other lanes sends fewer.
        span = (e["end_ms"] - e["start_ms"]) / 1000
        assert abs(duration - span) < 0.2, (e["file"], duration, span)
        assert frames == 1 or 1 <= frames / duration <= 40, (e["file"], duration, frames)
        assert e["start"].endswith("Z") and Path(e["file"]).name.startswith(e["start"][:4])
    # Clean segments around the drop: no file spans the gap.
    gap = [b["start_ms"] - a["end_ms"] for a, b in itertools.pairwise(entries)]
    assert max(gap) > 500, gap

    async with aiohttp.ClientSession() as s:
        # No playback permission: the plain viewer token and no token are refused; nothing logged.
        audit_before = (root / "audit.jsonl").read_text() if (root / "audit.jsonl").exists() else ""
        for headers, status in (({}, 401), ({"Authorization": "Bearer view-token-1"}, 403)):
            async with s.get(f"{relay.url}/api/recordings", headers=headers) as r:
                assert r.status == status, await r.text()
            async with s.get(f"{relay.url}/api/recordings/cam/clip.mp4?start={time.time() - 5}",
                             headers=headers) as r:
                assert r.status == status
        assert ((root / "audit.jsonl").read_text() if (root / "audit.jsonl").exists() else "") == audit_before

        async with s.get(f"{relay.url}/api/recordings?stream=cam",
                         headers={"Authorization": "Bearer commander-token"}) as r:
            assert r.status == 200
            doc = await r.json()
        spans = doc["recordings"][0]["spans"]
        assert len(spans) == 2, spans  # before and after the drop
        # A clip of 2 s from the middle of the first span holds the frames of that time.
        start_ms = spans[0]["start_ms"] + 2500
        async with s.get(f"{relay.url}/api/recordings/cam/clip.mp4",
                         params={"start": str(start_ms / 1000), "duration": "2"}, headers=CONTROL) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == "video/mp4"
            clip = await r.read()
            clip_start = r.headers["X-Clip-Start"]
        stamps = stamps_of(clip)
        assert len(stamps) >= 55, len(stamps)  # 2 s at 30 fps, plus the lead-in from the keyframe
        assert stamps == sorted(stamps)
        # The clip starts at the keyframe before the asked time (GOP 1 s) and ends at its end;
        # stamps are capture times, the record's clock is arrival (a few ms later).
        assert start_ms - 1300 <= stamps[0] <= start_ms + 100, (stamps[0] - start_ms, clip_start)
        assert start_ms + 1800 <= stamps[-1] <= start_ms + 2100, stamps[-1] - start_ms
        # Range requests (players seek): 206 with exactly the asked bytes.
        async with s.get(f"{relay.url}/api/recordings/cam/clip.mp4",
                         params={"start": str(start_ms / 1000), "duration": "2"},
                         headers={**CONTROL, "Range": "bytes=100-199"}) as r:
            assert r.status == 206
            part = await r.read()
        assert len(part) == 100
        # Nothing recorded then: 404 with a reason.
        async with s.get(f"{relay.url}/api/recordings/cam/clip.mp4", params={"start": "1000000000"},
                         headers=CONTROL) as r:
            assert r.status == 404 and "nothing" in await r.text()
        async with s.get(f"{relay.url}/api/recordings/cam/clip.mp4", params={"start": "yesterday"},
                         headers=CONTROL) as r:
            assert r.status == 400

    audit = [json.loads(line) for line in (root / "audit.jsonl").read_text().splitlines()]
    actions = [(a["action"], a["who"]) for a in audit]
    assert ("list", "einsatzleiter") in actions and ("clip", "leitstelle") in actions, actions
    assert all(a["remote"] == "127.0.0.1" for a in audit)
    await relay.runner.cleanup()  # stop the relay: the record is final

    code, out = verify(root)
    assert code == 0 and "record intact" in out, out
    _tamper_cases(root, tmp_path)


def _case(root: Path, tmp: Path, name: str) -> Path:
    copy = tmp / f"case-{name}"
    shutil.copytree(root, copy)
    return copy


def _tamper_cases(root: Path, tmp: Path) -> None:
    segs = [e for e in manifest(root, "cam") if e["kind"] == "segment"]
    a, b = segs[0]["file"], segs[1]["file"]

    c = _case(root, tmp, "flip")
    data = bytearray((c / a).read_bytes())
    data[len(data) // 2] ^= 0x01
    (c / a).write_bytes(bytes(data))
    code, out = verify(c)
    assert code == 1 and f"MODIFIED: {a}" in out, out

    c = _case(root, tmp, "delete")
    (c / b).unlink()
    code, out = verify(c)
    assert code == 1 and f"DELETED: {b}" in out, out

    c = _case(root, tmp, "swap")
    tmp_file = c / "x.tmp"
    (c / a).rename(tmp_file)
    (c / b).rename(c / a)
    tmp_file.rename(c / b)
    code, out = verify(c)
    assert code == 1 and f"SWAPPED: {a}: holds the content sealed for {b}" in out, out
    assert f"SWAPPED: {b}: holds the content sealed for {a}" in out, out

    c = _case(root, tmp, "forge")
    lines = (c / "cam" / "manifest.jsonl").read_text().splitlines()
    doc = json.loads(lines[1])
    doc["end_ms"] += 60_000  # claim the segment ran a minute longer
    lines[1] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    (c / "cam" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    code, out = verify(c)
    assert code == 1 and "FORGED: cam/manifest.jsonl line 2: signature does not verify" in out, out

    c = _case(root, tmp, "reorder")
    lines = (c / "cam" / "manifest.jsonl").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (c / "cam" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    code, out = verify(c)
    assert code == 1 and "REORDERED: cam/manifest.jsonl line 1" in out, out

    c = _case(root, tmp, "append")
    extra = c / Path(a).parent / "20200101T000000.000Z.mp4"
    shutil.copy(c / a, extra)
    code, out = verify(c)
    assert code == 1 and f"ADDED: {extra.relative_to(c)}" in out, out

    c = _case(root, tmp, "audit")
    lines = (c / "audit.jsonl").read_text().splitlines()
    del lines[0]  # hide who looked first
    (c / "audit.jsonl").write_text("\n".join(lines) + "\n")
    code, out = verify(c)
    assert code == 1 and "audit.jsonl line 1" in out, out


async def test_whip_publisher_is_recorded_from_the_top_rendition(relay_factory: Any, tmp_path: Path) -> None:
    """A browser/OBS pushing WHIP is transcoded: the record keeps the top H.264 rendition."""
    from tests.helpers import Drone

    relay = await relay_factory({
        "renditions": [{"name": "high", "height": 360, "bitrate_kbps": 1200},
                       {"name": "low", "height": 180, "bitrate_kbps": 300}],
        "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "record": {"enabled": True, "dir": str(tmp_path / "rec"), "segment_s": 2, "min_free_mb": 1},
    })
    rec = relay.services.record
    assert rec is not None
    drone = Drone(f"{relay.url}/whip/w1", size=(640, 360))
    try:
        await wait_for(lambda: "w1" in rec.recorders and rec.recorders["w1"].recording_from == "high",
                       20, "recording the top rendition")
        await wait_for(lambda: any(s.kind == "segment" for s in rec.index.get("w1", [])), 20, "a sealed segment")
    finally:
        await drone.stop()
    seg = next(s for s in rec.index["w1"] if s.kind == "segment")
    path = tmp_path / "rec" / seg.file
    frames, _ = ffprobe(path)
    assert frames >= 30
    stamps = stamps_of(await asyncio.to_thread(path.read_bytes))
    assert len(stamps) >= 0.9 * frames and stamps == sorted(stamps)
    doc = (await relay.streams())["w1"]
    assert doc["record"]["enabled"] and doc["record"]["dropped"] == 0
    # The recorder is not a viewer: the rendition's viewer count stays 0.
    assert all(r["viewers"] == 0 for r in doc["renditions"]), doc["renditions"]
