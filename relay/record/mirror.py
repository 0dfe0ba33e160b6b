"""A vehicle's record, kept at the control centre as the vehicle signed it.

The vehicle sends its manifest lines in order, each with the file it seals (a segment, a
snapshot, a telemetry track) or none (a deletion by its retention). Each arrival is checked
before anything is kept: the line's signature with the vehicle's public key (configured at
the centre, never taken from the vehicle), its place in the chain (the next ``seq``, the
hash of the line before), and the file against the SHA-256 and size the line seals, at a
path inside that stream's directory — the line before a byte of the file is read, the file
streamed to a temporary name as it arrives (hashed on the way, never whole in memory, never
more than the line seals), then synced, renamed, and the line appended verbatim (it must be
the canonical bytes that were signed). A file a line sealed is never replaced. The mirror
is a record root of its own::

    <record dir>/vehicles/<vehicle>/signing-key.pub.pem   the key the centre was given
    <record dir>/vehicles/<vehicle>/<stream>/manifest.jsonl
    <record dir>/vehicles/<vehicle>/<stream>/<day>/<file>

so ``python -m relay verify`` checks it with the vehicle's key, and replay reads its files.
A line already held is acknowledged again and not kept twice (a resend after a drop).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..wire import json_doc
from .chain import GENESIS, canonical, fingerprint, line_hash, read_lines, signature_ok
from .layout import MANIFEST, SEGMENT_NAME, SNAPSHOT_NAME
from .recorder import Segment

__all__ = ["MAX_FILE", "MIRRORS", "Arrival", "Mirror", "MirrorError", "Position", "Replays"]

MIRRORS = "vehicles"
MAX_LINE = 8192
MAX_FILE = 1 << 30  # a segment of a long recording at a high bitrate; refused beyond
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
class Arrival:
    """A manifest line that verified, and the file it seals (``path`` None: none)."""
    stream: str
    seq: int
    raw: bytes
    doc: dict[str, Any]
    path: Path | None
    size: int

    def stray_body(self) -> MirrorError:
        """The refusal of a body that came with a line sealing no file."""
        return MirrorError(400, f"line {self.seq} ({self.doc.get('kind')}) seals no file, "
                                "but a body came with it")


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

    def check(self, stream: str, raw: bytes, gone: bool = False) -> Arrival | None:
        """One manifest line, verified before a byte of its file is read: None when it is
        held already (a resend: acknowledged, never kept twice); the file it seals (where,
        how many bytes) otherwise. Raises MirrorError when it does not verify (the caller
        that gives up on the arrival counts it: :meth:`refuse`). Thread-safe."""
        with self._lock:
            return self._check(stream, raw, gone)

    def _check(self, stream: str, raw: bytes, gone: bool) -> Arrival | None:
        doc = self._parse(raw)
        pos = self.position(stream)
        seq = doc["seq"]
        if seq <= pos.seq:
            return None
        if seq != pos.seq + 1:
            raise MirrorError(409, f"expected manifest line {pos.seq + 1} of {stream!r}, got {seq}")
        if doc.get("key") != self.fingerprint:
            raise MirrorError(403, f"line {seq} is signed with key {str(doc.get('key'))[:16]!r}; the centre "
                                   f"holds key {self.fingerprint} for vehicle {self.vehicle!r}")
        if not signature_ok(self.public, doc):
            raise MirrorError(403, f"line {seq} of {stream!r}: the signature does not verify")
        if doc.get("prev") != pos.prev:
            raise MirrorError(409, f"line {seq} of {stream!r} does not follow the line held before it")
        if doc.get("kind") not in FILE_KINDS or gone:
            return Arrival(stream, seq, raw, doc, None, 0)
        rel, size = doc.get("file"), doc.get("size")
        if not isinstance(rel, str) or not _file_ok(stream, rel):
            raise MirrorError(400, f"line {seq} seals a file outside {stream!r}'s record: {str(rel)[:80]!r}")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE:
            raise MirrorError(400, f"line {seq} seals a file of no valid size (at most {MAX_FILE} bytes)")
        path = self.dir / rel
        if path.exists():  # a sealed file is never replaced, whatever a later line says
            raise MirrorError(409, f"line {seq} seals {rel!r}, which an earlier line sealed already")
        return Arrival(stream, seq, raw, doc, path, size)

    def commit(self, arrival: Arrival, tmp: Path | None, digest: str = "", size: int = 0) -> bool:
        """Keep a checked line and the file received for it (``tmp``, its SHA-256 and size):
        the file renamed into place (synced), the line appended verbatim. False when another
        upload of the same line was kept meanwhile. Thread-safe; ``tmp`` is gone after."""
        with self._lock:
            try:
                return self._commit(arrival, tmp, digest, size)
            finally:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)

    def _commit(self, arrival: Arrival, tmp: Path | None, digest: str, size: int) -> bool:
        stream, seq, doc = arrival.stream, arrival.seq, arrival.doc
        pos = self.position(stream)
        if seq <= pos.seq:
            return False
        if seq != pos.seq + 1 or doc.get("prev") != pos.prev:
            raise MirrorError(409, f"line {seq} of {stream!r} no longer follows the line held before it")
        if arrival.path is not None:
            if tmp is None or digest != doc.get("sha256") or size != arrival.size:
                raise MirrorError(422, f"line {seq}: the file that came ({size} bytes, SHA-256 "
                                       f"{digest[:16]}…) is not the one it seals")
            if arrival.path.exists():
                raise MirrorError(409, f"line {seq}: its file was sealed by an earlier line already")
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            tmp.replace(arrival.path)
        path = self.dir / stream / MANIFEST
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, arrival.raw + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._pos[stream] = Position(seq, line_hash(arrival.raw))
        held = {s.file.split("/", 2)[2]: s for s in self.index.get(stream, [])}
        self._index(stream, doc, held)
        self.index[stream] = sorted(held.values(), key=lambda s: s.start_ms)
        self.accepted += 1
        return True

    def accept(self, stream: str, raw: bytes, body: bytes, gone: bool = False) -> bool:
        """:meth:`check` and :meth:`commit` for a body already in memory (tests, tools)."""
        try:
            arrival = self.check(stream, raw, gone)
            if arrival is None:
                return False
            if arrival.path is None:
                if body:
                    raise arrival.stray_body()
                return self.commit(arrival, None)
            tmp = self.part(arrival)
            tmp.write_bytes(body)
            return self.commit(arrival, tmp, hashlib.sha256(body).hexdigest(), len(body))
        except MirrorError as exc:
            raise self.refuse(exc) from None

    def refuse(self, exc: MirrorError) -> MirrorError:
        """An arrival given up on (its line, its body or its keeping): counted once, here."""
        with self._lock:
            self.refused += 1
        return exc

    def part(self, arrival: Arrival) -> Path:
        """A fresh temporary file beside where the arrival's file goes."""
        assert arrival.path is not None
        arrival.path.parent.mkdir(parents=True, exist_ok=True)
        return arrival.path.with_name(f".{arrival.path.name}.{secrets.token_hex(4)}.part")

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_LINE or b"\n" in raw:
            raise MirrorError(400, "a manifest line is one JSON line of at most 8 KB")
        try:
            doc = json_doc(raw, "manifest line")
        except ValueError:
            raise MirrorError(400, "the manifest line is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("seq"), int) or isinstance(doc["seq"], bool):
            raise MirrorError(400, "the manifest line has no seq")
        if canonical(doc) != raw:  # what was verified must be exactly what is kept
            raise MirrorError(400, "the manifest line is not in its canonical form (sorted keys, no "
                                   "spaces, ASCII, no repeated key): it is kept byte for byte as signed")
        return doc

    def segments(self, stream: str) -> list[Segment]:
        return list(self.index.get(stream, []))

    def status(self) -> dict[str, Any]:
        return {"vehicle": self.vehicle, "key": self.fingerprint, "accepted": self.accepted,
                "refused": self.refused,
                "streams": {s: {"seq": p.seq, "files": len(self.index.get(s, []))}
                            for s, p in self._pos.items()}}


class Replays:
    """Which vehicle's record is a stream's replay at the centre: one vehicle's, never a mix."""

    def __init__(self, mirrors: dict[str, Mirror], named: dict[str, tuple[str, ...]]) -> None:
        self.mirrors = mirrors
        self._named = named  # vehicle -> the streams it forwards (config; "*" written out)
        self._forwarder: dict[str, str] = {}  # stream -> the vehicle that forwarded it here last

    def forwarded(self, stream: str, vehicle: str) -> None:
        """A vehicle began forwarding ``stream`` here: its record is the stream's replay."""
        self._forwarder[stream] = vehicle

    def mirror_for(self, stream: str) -> Mirror | None:
        """The vehicle that names the stream (config allows one), else of those that may send
        any stream the one that forwarded it here last, else the one whose record of it is
        newest. A record a vehicle holds for a stream no longer named for it (the config
        changed) is kept but not replayed."""
        named = [m for v, m in self.mirrors.items() if stream in self._named[v]]
        if named:
            return named[0]
        anyone = [m for v, m in self.mirrors.items() if "*" in self._named[v] and m.segments(stream)]
        last = self._forwarder.get(stream)
        return next((m for m in anyone if m.vehicle == last),
                    max(anyone, key=lambda m: m.segments(stream)[-1].end_ms, default=None))
