"""Append-only, hash-chained, signed JSON-lines logs (a stream's manifest, the audit log).

Each line is one JSON object with sorted keys and no spaces. It carries ``seq`` (1, 2, ...),
``prev`` (the SHA-256 of the previous line's bytes; 64 zeros for the first), ``key`` (the
signing key's fingerprint) and ``sig``: an Ed25519 signature over the line's JSON without
``sig``. Changing, removing, reordering or inserting a line breaks the chain or a signature;
only the holder of the private key can append a line that verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..wire import json_doc

__all__ = ["GENESIS", "Chain", "ChainLine", "Signer", "canonical", "fingerprint", "line_hash",
           "load_public_key", "read_lines", "signature_ok"]

log = logging.getLogger("relay.record")
GENESIS = "0" * 64


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """A PEM public key, or the public half of a PEM private key."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key")
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return public


class Signer:
    """The relay's Ed25519 key (PEM, PKCS8), created on first use when allowed."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.fingerprint = fingerprint(self.public)

    @classmethod
    def load(cls, path: str | Path, generate: bool) -> Signer:
        p = Path(path)
        if not p.exists():
            if not generate:
                raise FileNotFoundError(f"record.signing_key: no such file: {p}")
            key = Ed25519PrivateKey.generate()
            p.parent.mkdir(parents=True, exist_ok=True)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            signer = cls(key)
            log.warning("record signing key created: keep a copy of its public half off this machine",
                        extra={"path": str(p), "fingerprint": signer.fingerprint})
            return signer
        private = serialization.load_pem_private_key(p.read_bytes(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"record.signing_key: {p} is not an Ed25519 private key")
        return cls(private)

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self._private.sign(body)).decode()


@dataclass
class ChainLine:
    number: int  # 1-based line number in the file
    raw: bytes
    doc: dict[str, Any] | None  # None: not a JSON object


def read_lines(path: Path) -> list[ChainLine]:
    out: list[ChainLine] = []
    if not path.exists():
        return out
    for i, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            doc = json_doc(raw, "line")
        except ValueError:
            doc = None
        out.append(ChainLine(i, raw, doc if isinstance(doc, dict) else None))
    return out


def signature_ok(public: Ed25519PublicKey, doc: dict[str, Any]) -> bool:
    sig = doc.get("sig")
    if not isinstance(sig, str):
        return False
    body = {k: v for k, v in doc.items() if k != "sig"}
    try:
        public.verify(base64.b64decode(sig, validate=True), canonical(body))
    except (InvalidSignature, ValueError):
        return False
    return True


class Chain:
    """One append-only chained log file; appends are thread-safe and reach the disk (fsync)."""

    def __init__(self, path: Path, signer: Signer) -> None:
        self.path = path
        self.signer = signer
        self._lock = threading.Lock()
        self._seq = 0
        self._prev = GENESIS
        for line in read_lines(path):  # continue where the file ends
            self._seq = int(line.doc.get("seq", self._seq)) if line.doc else self._seq
            self._prev = line_hash(line.raw)

    @property
    def length(self) -> int:
        return self._seq

    def append(self, doc: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = dict(doc)
            entry.update(seq=self._seq + 1, prev=self._prev, key=self.signer.fingerprint)
            entry["sig"] = self.signer.sign(canonical(entry))
            raw = canonical(entry)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, raw + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._seq += 1
            self._prev = line_hash(raw)
            return entry
