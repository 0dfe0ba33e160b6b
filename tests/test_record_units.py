"""The record's pure parts: retention decisions, the signed chain, the playback permission."""

from __future__ import annotations

import json
from pathlib import Path

from relay.auth import authenticate, mint_token
from relay.config import parse
from relay.record.chain import Chain, Signer
from relay.record.retention import Held, plan_deletions
from relay.record.verify import verify_chain

DAY = 86400_000


def test_retention_age_then_stream_budget_then_total_oldest_first() -> None:
    now = 100 * DAY
    held = [Held("a", "a1", now - 40 * DAY, 10), Held("a", "a2", now - 2000, 1_000_000),
            Held("a", "a3", now - 1000, 1_000_000), Held("b", "b1", now - 3000, 600_000),
            Held("b", "b2", now - 500, 600_000)]
    out = plan_deletions(held, now_ms=now, max_age_days=30, max_stream_mb=1.5, max_total_mb=0)
    assert [(v.file, v.reason.split(" (")[0]) for v in out] == [
        ("a1", "older than record.max_age_days"), ("a2", "stream over record.max_stream_mb")]
    out = plan_deletions(held, now_ms=now, max_age_days=30, max_stream_mb=0, max_total_mb=1.7)
    assert [v.file for v in out] == ["a1", "b1", "a2"]  # oldest of all first
    assert plan_deletions(held, now_ms=now, max_age_days=60, max_stream_mb=0, max_total_mb=0) == []


def test_chain_appends_verify_and_tampering_is_named(tmp_path: Path) -> None:
    signer = Signer.load(tmp_path / "key.pem", generate=True)
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    log = tmp_path / "log.jsonl"
    chain = Chain(log, signer)
    for i in range(4):
        chain.append({"kind": "segment", "file": f"f{i}"})
    assert Chain(log, signer).length == 4  # continues where the file ends
    found, good = verify_chain(log, signer.public, "log")
    assert not found and len(good) == 4
    lines = log.read_text().splitlines()
    # A line removed: the next one no longer follows.
    log.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    found, _ = verify_chain(log, signer.public, "log")
    assert [f.what for f in found] == ["reordered"] and "line 2" in found[0].where
    # A line signed by another key (someone who wrote their own entry).
    other = Signer.load(tmp_path / "other.pem", generate=True)
    log.write_text("\n".join(lines) + "\n")
    Chain(log, other).append({"kind": "segment", "file": "planted"})
    found, _ = verify_chain(log, signer.public, "log")
    assert [(f.what, f.where) for f in found] == [("forged", "log line 5")]
    # Garbage is named, not a crash.
    log.write_text("\n".join(lines) + "\nnot json\n")
    found, _ = verify_chain(log, signer.public, "log")
    assert [f.what for f in found] == ["forged"]
    assert json.loads(lines[0])["prev"] == "0" * 64
    # The last line with a key planted before the signed one: Python's JSON takes the last
    # "file" (the signature holds), a reader that takes the first sees "planted", and no later
    # line's hash covers it. Verified over the exact bytes, it is named.
    planted = '{"file":"planted",' + lines[-1][1:]
    assert json.loads(planted) == json.loads(lines[-1])
    log.write_text("\n".join([*lines[:-1], planted]) + "\n")
    found, _ = verify_chain(log, signer.public, "log")
    assert [(f.what, f.where) for f in found] == [("forged", "log line 4")], found


def test_playback_is_a_permission_of_its_own() -> None:
    cfg = parse({"auth": {"enabled": True, "view_token": "view-token-1", "jwt_secret": "s" * 40,
                          "tokens": [{"token": "commander-1", "role": "viewer", "playback": True,
                                      "streams": ["cam"]},
                                     {"token": "control-token", "role": "control"}]}}, env={})
    assert not authenticate(cfg, "playback", "cam", "view-token-1").allowed
    assert authenticate(cfg, "snapshot", "cam", "view-token-1").allowed
    assert authenticate(cfg, "playback", "cam", "commander-1").allowed
    assert not authenticate(cfg, "playback", "other", "commander-1").allowed  # its streams only
    assert authenticate(cfg, "playback", "other", "control-token").allowed
    assert authenticate(cfg, "playback", None, None).status == 401
    token, _, _ = mint_token(cfg, "viewer", ["cam"], 60)
    assert not authenticate(cfg, "playback", "cam", token).allowed
