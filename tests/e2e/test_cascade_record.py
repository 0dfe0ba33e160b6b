"""The record follows: the vehicle's sealed segments reach the centre, verified against the
vehicle's key and chain; replay, clips and ``verify`` work there; forged, altered or
misplaced arrivals and callers that are not the vehicle are refused and change nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.record.chain import Signer, canonical
from tests.helpers import SMALL, Drone, RelayHandle, wait_for

Factory = Callable[..., Awaitable[RelayHandle]]
# Two or three relays and a drone each: one of these at a time, so the slow lane's other
# whole-system tests (Chromium reading stamps) keep the cores they need.
pytestmark = pytest.mark.xdist_group("cascade")
TOKEN, OTHER, VIEW, CONTROL = "vehicle-one-publish-token", "a-publisher-not-a-vehicle", "view-token-1234", \
    "control-token-12345"


def keypair(tmp: Path) -> tuple[Path, Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    priv, pub = tmp / "vehicle-key.pem", tmp / "vehicle-key.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub, key


async def pair(relay_factory: Factory, tmp: Path, **stream: Any) -> tuple[RelayHandle, RelayHandle]:
    priv, pub, _ = keypair(tmp)
    centre = await relay_factory({
        **SMALL, "server": {"name": "centre"},
        "record": {"enabled": True, "dir": str(tmp / "centre"), "min_free_mb": 1},
        "streams": {"drone1": {"record": False}},  # the centre keeps the vehicle's, not its own
        "auth": {"enabled": True, "view_token": VIEW, "publish_token": OTHER,
                 "tokens": [{"token": CONTROL, "role": "control"}]},
        "vehicles": [{"name": "vehicle-1", "token": TOKEN, "public_key": str(pub), "streams": ["drone1"]}]})
    vehicle = await relay_factory({
        **SMALL, "server": {"name": "vehicle-1"},
        "record": {"enabled": True, "dir": str(tmp / "vehicle"), "segment_s": 2, "min_free_mb": 1,
                   "signing_key": str(priv)},
        "streams": {"drone1": {"forward": [f"{centre.url}/whip/drone1"], "forward_token": TOKEN, **stream}}})
    return centre, vehicle


async def put(url: str, token: str, seq: int, raw: bytes, body: bytes) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}", "X-Manifest-Line": base64.b64encode(raw).decode()}
    async with aiohttp.ClientSession() as s, s.put(f"{url}/api/mirror/drone1/{seq}", data=body,
                                                   headers=headers) as r:
        return r.status, await r.text()


async def test_the_record_follows_verified_and_replays_at_the_centre(relay_factory: Factory, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import relay.http.mirror as http_mirror

    monkeypatch.setattr(http_mirror, "WRITE_BYTES", 4096)  # each file written in many pieces
    centre, vehicle = await pair(relay_factory, tmp_path)
    drone = Drone(f"{vehicle.url}/whip/drone1")
    try:
        rec_v = vehicle.services.record
        await wait_for(lambda: len(rec_v.index.get("drone1", [])) >= 3, 30, "three sealed segments at the vehicle")
    finally:
        await drone.stop()
    mirror = centre.services.record.mirrors["vehicle-1"]
    backfill = vehicle.services.forwards.backfills[0]
    await wait_for(lambda: rec_v.chain("drone1").length > 0 and backfill.state == "idle"
                   and mirror.position("drone1").seq == rec_v.chain("drone1").length, 30, "the backfill")
    kept = [s for s in mirror.segments("drone1") if s.kind == "segment"]
    assert len(kept) >= 3
    v_files = {s.file: (tmp_path / "vehicle" / s.file).read_bytes() for s in rec_v.index["drone1"]}
    for s in kept:  # byte for byte the vehicle's files
        assert (centre.services.record.root / s.file).read_bytes() == v_files[s.file.split("/", 2)[2]]
    # Replay and clips at the centre read the vehicle's segments.
    async with aiohttp.ClientSession() as s:
        auth = {"Authorization": f"Bearer {CONTROL}"}
        async with s.get(f"{centre.url}/api/recordings?stream=drone1", headers=auth) as r:
            doc = (await r.json())["recordings"][0]
            spans = doc["spans"]
        assert doc["vehicles"] == ["vehicle-1"], doc
        assert spans and spans[0]["segments"] >= 3, spans
        async with s.get(f"{centre.url}/api/recordings/drone1/clip.mp4", headers=auth,
                         params={"start": str(spans[0]["start_ms"] / 1000), "duration": "3"}) as r:
            assert r.status == 200, await r.text()
            assert int(r.headers["X-Clip-Frames"]) > 30
        async with s.get(f"{vehicle.url}/api/streams/drone1") as r:
            fwd = (await r.json())["forwards"][0]
        assert fwd["record"]["behind"] == 0 and fwd["record"]["bytes_sent"] > 0, fwd
    # verify passes at the centre (its own audit log and the vehicle's record, with its key).
    await centre.runner.cleanup()
    out = subprocess.run([sys.executable, "-m", "relay", "verify", str(tmp_path / "centre")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "vehicle vehicle-1: drone1:" in out.stdout, out.stdout + out.stderr


async def put_chunked(url: str, seq: int, raw: bytes, parts: list[bytes], pause_s: float) -> tuple[int, str]:
    """A body without a length, in parts with a pause before the last (a vehicle's link that
    stalls mid-file, or a sender that says nothing of its size)."""
    async def body() -> Any:
        for i, part in enumerate(parts):
            if i == len(parts) - 1:
                await asyncio.sleep(pause_s)
            yield part
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Manifest-Line": base64.b64encode(raw).decode()}
    async with aiohttp.ClientSession() as s, s.put(f"{url}/api/mirror/drone1/{seq}", data=body(),
                                                   headers=headers) as r:
        return r.status, await r.text()


async def test_arrivals_that_do_not_verify_change_nothing(relay_factory: Factory, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The intruder: a viewer or a publisher that is not a vehicle; an altered line; a line
    signed with another key; a file that is not the one sealed; a file outside the stream;
    a line not in the bytes that were signed; more bytes than sealed; a body that stalls; a
    second line sealing a file held already."""
    import relay.http.mirror as http_mirror

    monkeypatch.setattr(http_mirror, "STALL_S", 1.0)
    centre, _vehicle = await pair(relay_factory, tmp_path, forward_backfill_kbps=50)
    mirror = centre.services.record.mirrors["vehicle-1"]
    signer = Signer.load(tmp_path / "vehicle-key.pem", generate=False)
    body = b"\x00\x00\x00\x18ftypisom" + bytes(100)

    def line(seq: int, prev: str, rel: str, data: bytes, sign: Signer = signer) -> bytes:
        doc = {"kind": "snapshot", "file": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
               "start_ms": 1, "end_ms": 1, "seq": seq, "prev": prev, "key": sign.fingerprint}
        doc["sig"] = sign.sign(canonical(doc))
        return canonical(doc)

    good_rel = "drone1/2026-11-29/snap-20261129T101010.000Z.jpg"
    before = mirror.position("drone1")
    stranger = Signer(Ed25519PrivateKey.generate())
    attempts = [
        (VIEW, line(1, before.prev, good_rel, body), body, 403),  # a viewer
        (OTHER, line(1, before.prev, good_rel, body), body, 403),  # a publisher, not a vehicle
        (TOKEN, line(1, before.prev, good_rel, body).replace(b'"start_ms":1', b'"start_ms":2'), body, 403),
        (TOKEN, line(1, before.prev, good_rel, body, stranger), body, 403),  # another key
        (TOKEN, line(1, before.prev, good_rel, body), body + b"x", 422),  # not the sealed file
        (TOKEN, line(1, before.prev, "drone1/../../etc/snap-20261129T101010.000Z.jpg", body), body, 400),
        (TOKEN, line(1, before.prev, "drone2/2026-11-29/snap-20261129T101010.000Z.jpg", body), body, 400),
        (TOKEN, line(2, before.prev, good_rel, body), body, 409),  # out of turn
        # signed, but not the canonical bytes (a space): what is kept must be what was signed
        (TOKEN, line(1, before.prev, good_rel, body).replace(b'{"end_ms"', b'{ "end_ms"', 1), body, 400),
    ]
    for token, raw, data, want in attempts:
        status, text = await put(centre.url, token, json.loads(raw)["seq"], raw, data)
        assert status == want, (want, status, text)
    good = line(1, before.prev, good_rel, body)
    refused = mirror.refused
    status, text = await put_chunked(centre.url, 1, good, [body, b"more than sealed"], 0.0)
    assert status == 413 and "more came" in text, (status, text)
    status, text = await put_chunked(centre.url, 1, good, [body[:50], body[50:]], 2.5)  # stalls
    assert status == 408 and "stopped coming" in text, (status, text)
    assert mirror.refused == refused + 2  # a body refused as it arrived is counted too
    assert mirror.position("drone1") == before
    assert not list((mirror.dir).rglob("*.jpg")) and not (tmp_path / "etc").exists()
    assert not list(mirror.dir.rglob("*.part"))  # nothing half-received is left behind
    # The real thing goes in, once; sent again it is acknowledged and not kept twice.
    raw = line(1, before.prev, good_rel, body)
    assert (await put(centre.url, TOKEN, 1, raw, body))[0] == 201
    assert (await put(centre.url, TOKEN, 1, raw, body))[0] == 200
    manifest = (mirror.dir / "drone1" / "manifest.jsonl").read_bytes().splitlines()
    assert manifest == [raw]
    # A later line sealing the same file again (another body) never replaces it.
    other = body[:-1] + b"\x01"
    again = line(2, mirror.position("drone1").prev, good_rel, other)
    status, text = await put(centre.url, TOKEN, 2, again, other)
    assert status == 409 and "sealed" in text, (status, text)
    assert (mirror.dir / good_rel).read_bytes() == body and mirror.position("drone1").seq == 1


async def test_a_record_signed_with_another_key_is_refused_and_said_once(
        relay_factory: Factory, tmp_path: Path, caplog: Any) -> None:
    """The centre holds another key for this vehicle (a reinstalled vehicle, a swapped
    disk): nothing is kept, and the vehicle says why once, naming both keys."""
    import logging

    caplog.set_level(logging.WARNING, logger="relay.forward")
    # (a fixed rung: the backfill does not wait for an auto uplink to climb to its top)
    centre, vehicle = await pair(relay_factory, tmp_path, forward_rendition="low")
    # The vehicle now signs with a key the centre was never given.
    other = tmp_path / "other"
    other.mkdir()
    priv, _pub, _ = keypair(other)
    rec_v = vehicle.services.record
    rec_v.signer = Signer.load(priv, generate=False)
    rec_v.chains.clear()
    drone = Drone(f"{vehicle.url}/whip/drone1")
    try:
        await wait_for(lambda: rec_v.chain("drone1").length >= 2, 30, "segments sealed with the other key")
        backfill = vehicle.services.forwards.backfills[0]
        await wait_for(lambda: backfill.state == "refused", 20, "the centre to refuse the record")
    finally:
        await drone.stop()
    mirror = centre.services.record.mirrors["vehicle-1"]
    assert mirror.position("drone1").seq == 0 and not list(mirror.dir.rglob("*.mp4"))
    assert "403" in backfill.last_error and mirror.fingerprint in backfill.last_error, backfill.last_error
    said = [r for r in caplog.records if r.getMessage() == "record refused by the centre"]
    assert len(said) == 1
