"""A vehicle's record, kept at the control centre as the vehicle signed it.

The vehicle sends its manifest lines in order, each with the file it seals (a segment, a
snapshot, a telemetry track) or none (a deletion by its retention). Each arrival is checked
before anything is kept: the line's signature with the vehicle's public key (configured at
the centre, never taken from the vehicle), its place in the chain (the next ``seq``, the
hash of the line before), and the file against the SHA-256 and size the line seals, at a
path inside that stream's directory. Then the file is written (to a temporary name, synced,
renamed) and the line appended verbatim. The mirror is a record root of its own::

    <record dir>/vehicles/<vehicle>/signing-key.pub.pem   the key the centre was given
    <record dir>/vehicles/<vehicle>/<stream>/manifest.jsonl
    <record dir>/vehicles/<vehicle>/<stream>/<day>/<file>

so ``python -m relay verify`` checks it with the vehicle's key, and replay reads its files.
A line already held is acknowledged again and not kept twice (a resend after a drop).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .chain import GENESIS, fingerprint, line_hash, read_lines, signature_ok
from .layout import MANIFEST, SEGMENT_NAME, SNAPSHOT_NAME
from .recorder import Segment

__all__ = ["MIRRORS", "Mirror", "MirrorError", "Position"]

MIRRORS = "vehicles"
MAX_LINE = 8192
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TRACK = re.compile(r"^\d{8}T\d{6}\.\d{3}Z\.telemetry\.jsonl$")
FILE_KINDS = ("segment", "snapshot", "telemetry")


class MirrorError(Exception):
    """An arrival the centre does not keep: status + one line for the vehicle."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Position:
    seq: int  # the last line held (0: none)
    prev: str  # its hash


def _file_ok(stream: str, rel: str) -> bool:
    """``<stream>/<YYYY-MM-DD>/<a record file name>``, nothing else (no ``..``, no other stream)."""
    parts = rel.split("/")
    return (len(parts) == 3 and parts[0] == stream and bool(_DAY.match(parts[1]))
            and bool(SEGMENT_NAME.match(parts[2]) or SNAPSHOT_NAME.match(parts[2]) or _TRACK.match(parts[2])))


class Mirror:
    """One vehicle's record at the centre."""

    def __init__(self, root: Path, vehicle: str, public: Ed25519PublicKey) -> None:
        self.vehicle = vehicle
        self.public = public
        self.fingerprint = fingerprint(public)
        self.dir = root / MIRRORS / vehicle
        self.dir.mkdir(parents=True, exist_ok=True)
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        key_file = self.dir / "signing-key.pub.pem"
        if not key_file.exists() or key_file.read_bytes() != pem:
            key_file.write_bytes(pem)
        self._lock = threading.Lock()
        self._pos: dict[str, Position] = {}
        self.index: dict[str, list[Segment]] = {}
        self.accepted = self.refused = 0
        for sdir in sorted(p for p in self.dir.iterdir() if p.is_dir()):
            self._load(sdir.name)

    def _load(self, stream: str) -> None:
        seq, prev = 0, GENESIS
        held: dict[str, Segment] = {}
        for line in read_lines(self.dir / stream / MANIFEST):
            doc = line.doc or {}
            seq, prev = int(doc.get("seq", seq)), line_hash(line.raw)
            self._index(stream, doc, held)
        self._pos[stream] = Position(seq, prev)
        self.index[stream] = sorted(held.values(), key=lambda s: s.start_ms)

    def _index(self, stream: str, doc: dict[str, Any], held: dict[str, Segment]) -> None:
        f = doc.get("file")
        if not isinstance(f, str):
            return
        if doc.get("kind") in FILE_KINDS:
            held[f] = Segment(f"{MIRRORS}/{self.vehicle}/{f}", int(doc.get("start_ms", 0)),
                              int(doc.get("end_ms", 0)), int(doc.get("size", 0)), str(doc["kind"]))
        elif doc.get("kind") == "deleted":
            held.pop(f, None)

    def position(self, stream: str) -> Position:
        return self._pos.get(stream, Position(0, GENESIS))

    def accept(self, stream: str, raw: bytes, body: bytes, gone: bool = False) -> bool:
        """Keep one manifest line (and its file). True: kept now; False: already held.
        ``gone``: the vehicle's retention deleted the file before it could be sent (the
        line is kept; the deletion line that follows it balances it). Raises MirrorError
        when it does not verify (nothing is kept then). Thread-safe."""
        with self._lock:
            try:
                return self._accept(stream, raw, body, gone)
            except MirrorError:
                self.refused += 1
                raise

    def _accept(self, stream: str, raw: bytes, body: bytes, gone: bool) -> bool:
        doc = self._parse(raw)
        pos = self.position(stream)
        seq = doc["seq"]
        if seq <= pos.seq:
            return False  # a resend of what is held: acknowledged, never kept twice
        if seq != pos.seq + 1:
            raise MirrorError(409, f"expected manifest line {pos.seq + 1} of {stream!r}, got {seq}")
        if doc.get("key") != self.fingerprint:
            raise MirrorError(403, f"line {seq} is signed with key {str(doc.get('key'))[:16]!r}; the centre "
                                   f"holds key {self.fingerprint} for vehicle {self.vehicle!r}")
        if not signature_ok(self.public, doc):
            raise MirrorError(403, f"line {seq} of {stream!r}: the signature does not verify")
        if doc.get("prev") != pos.prev:
            raise MirrorError(409, f"line {seq} of {stream!r} does not follow the line held before it")
        kind, rel = doc.get("kind"), doc.get("file")
        if kind in FILE_KINDS and not (gone and not body):
            self._keep_file(stream, seq, rel, doc, body)
        elif body:
            raise MirrorError(400, f"line {seq} ({kind}) seals no file, but a body came with it")
        path = self.dir / stream / MANIFEST
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, raw + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._pos[stream] = Position(seq, line_hash(raw))
        held = {s.file.split("/", 2)[2]: s for s in self.index.get(stream, [])}
        self._index(stream, doc, held)
        self.index[stream] = sorted(held.values(), key=lambda s: s.start_ms)
        self.accepted += 1
        return True

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_LINE or b"\n" in raw:
            raise MirrorError(400, "a manifest line is one JSON line of at most 8 KB")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise MirrorError(400, "the manifest line is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("seq"), int) or isinstance(doc["seq"], bool):
            raise MirrorError(400, "the manifest line has no seq")
        return doc

    def _keep_file(self, stream: str, seq: int, rel: Any, doc: dict[str, Any], body: bytes) -> None:
        if not isinstance(rel, str) or not _file_ok(stream, rel):
            raise MirrorError(400, f"line {seq} seals a file outside {stream!r}'s record: {str(rel)[:80]!r}")
        digest = hashlib.sha256(body).hexdigest()
        if digest != doc.get("sha256") or len(body) != doc.get("size"):
            raise MirrorError(422, f"line {seq}: the file that came ({len(body)} bytes, SHA-256 "
                                   f"{digest[:16]}…) is not the one it seals")
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        with tmp.open("wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def segments(self, stream: str) -> list[Segment]:
        return list(self.index.get(stream, []))

    def status(self) -> dict[str, Any]:
        return {"vehicle": self.vehicle, "key": self.fingerprint, "accepted": self.accepted,
                "refused": self.refused,
                "streams": {s: {"seq": p.seq, "files": len(self.index.get(s, []))}
                            for s, p in self._pos.items()}}
