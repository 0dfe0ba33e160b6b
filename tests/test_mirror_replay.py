"""Whose record is a stream's replay at the centre: the one vehicle that forwards it. A vehicle
sends records only for the streams named for it; a record another vehicle holds of the same
stream (a "*" vehicle, or one whose config no longer names it) never mixes into the replay."""

from __future__ import annotations

import hashlib
from pathlib import Path

from relay.config import parse
from relay.record import RecordService
from relay.record.chain import Signer, canonical, line_hash
from relay.registry import Registry


def sealed(signer: Signer, stream: str, seq: int, prev: str, start_ms: int) -> tuple[bytes, bytes]:
    body = f"{stream}-{signer.fingerprint}-{start_ms}".encode()
    doc = {"kind": "segment", "file": f"{stream}/2026-12-07/20261207T120000.{start_ms // 1000:03d}Z.mp4",
           "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "start_ms": start_ms,
           "end_ms": start_ms + 2000, "seq": seq, "prev": prev, "key": signer.fingerprint}
    doc["sig"] = signer.sign(canonical(doc))
    return canonical(doc), body


def service(tmp: Path, named: dict[str, list[str]]) -> tuple[RecordService, dict[str, Signer]]:
    signers = {v: Signer.load(tmp / f"{v}.pem", generate=True) for v in named}
    for v, s in signers.items():
        (tmp / f"{v}.pub.pem").write_bytes(s.public_pem())
    cfg = parse({"record": {"enabled": True, "dir": str(tmp / "centre"), "min_free_mb": 1},
                 "auth": {"enabled": True, "view_token": "view-token-1"},
                 "vehicles": [{"name": v, "token": f"vehicle-token-{v}", "public_key": str(tmp / f"{v}.pub.pem"),
                               "streams": streams} for v, streams in named.items()]}, env={})
    return RecordService(cfg, Registry(cfg)), signers


def send(rec: RecordService, signer: Signer, vehicle: str, stream: str, starts: list[int]) -> None:
    mirror = rec.mirrors[vehicle]
    prev = mirror.position(stream).prev
    for start in starts:
        seq = mirror.position(stream).seq + 1
        raw, body = sealed(signer, stream, seq, prev, start)
        assert mirror.accept(stream, raw, body)
        prev = line_hash(raw)


def owners(rec: RecordService, stream: str) -> set[str]:
    return {s.file.split("/")[1] for s in rec.segments(stream)}  # vehicles/<name>/<stream>/...


def test_a_streams_replay_comes_from_the_vehicle_that_forwards_it(tmp_path: Path) -> None:
    rec, signers = service(tmp_path, {"v1": ["d1"], "v2": ["*"], "v3": ["*"]})
    for v in ("v1", "v2", "v3"):  # each holds a record of d1 and d2 (v1 of d1 only: named)
        send(rec, signers[v], v, "d1", [10_000, 12_000])
    send(rec, signers["v2"], "v2", "d2", [50_000])
    send(rec, signers["v3"], "v3", "d2", [40_000])
    assert owners(rec, "d1") == {"v1"}  # named for v1: the "*" vehicles' copies never mix in
    assert owners(rec, "d2") == {"v2"}  # no forwarder known: the newest record
    rec.replays.forwarded("d2", "v3")
    assert owners(rec, "d2") == {"v3"}  # the vehicle that forwards it now
    assert rec.streams() == ["d1", "d2"]
    assert rec.replays.mirror_for("d3") is None


def test_a_record_of_a_stream_no_longer_named_is_kept_not_replayed(tmp_path: Path) -> None:
    rec, signers = service(tmp_path, {"v1": ["d1"], "v2": ["d2"]})
    send(rec, signers["v1"], "v1", "d1", [10_000])
    send(rec, signers["v2"], "v2", "d2", [20_000])
    # The centre's config changes: d1 now comes from v2, d2 from nobody.
    rec2, _ = service(tmp_path, {"v1": ["d9"], "v2": ["d1"]})
    assert owners(rec2, "d1") == set() and rec2.streams() == []
    assert [s.start_ms for s in rec2.mirrors["v1"].segments("d1")] == [10_000]  # kept on disk
