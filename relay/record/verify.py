"""``python -m relay verify <dir>``: check every recorded file and every chained log.

For each stream's manifest: every line parses, numbers follow each other, each line carries
the hash of the one before (else lines were removed, inserted or reordered), each signature
verifies with the public key (else the line was forged or altered). Then every file the
manifest holds (and retention did not delete) must exist with its hash: a missing file is
"deleted", another file's hash means "swapped", any other hash "modified". A file on
disk the manifest does not hold was "added out of turn" (or left unsealed by a crash the
relay has not restarted from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .chain import GENESIS, ChainLine, canonical, line_hash, load_public_key, read_lines, signature_ok
from .layout import MANIFEST, MARKERS, SEGMENT_NAME, SNAPSHOT_NAME
from .mirror import MIRRORS
from .writer import file_sha256

__all__ = ["Finding", "Report", "verify_chain", "verify_record"]


@dataclass(frozen=True)
class Finding:
    what: str  # modified | deleted | swapped | added | forged | chain-broken | reordered | unreadable
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.what.upper()}: {self.where}: {self.detail}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_chain(path: Path, public: Ed25519PublicKey, label: str) -> tuple[list[Finding], list[ChainLine]]:
    """Findings for one chained log, and its lines that verified (in order)."""
    findings: list[Finding] = []
    good: list[ChainLine] = []
    prev = GENESIS
    expected_seq = 1
    for line in read_lines(path):
        where = f"{label} line {line.number}"
        doc = line.doc
        if doc is None:
            findings.append(Finding("forged", where, "not a JSON object"))
            prev = line_hash(line.raw)
            continue
        seq = doc.get("seq")
        sig_ok = signature_ok(public, doc)
        if sig_ok and canonical(doc) != line.raw:
            # Signed over the canonical form, but these bytes differ (a repeated key, other
            # spacing): what another reader takes from the line may not be what was signed.
            findings.append(Finding("forged", where, f"entry seq {seq} is not in the exact form that "
                                                     "was signed (re-encoded, or a key repeated)"))
        elif not sig_ok:
            findings.append(Finding("forged", where,
                                    f"signature does not verify (entry seq {seq} was altered or "
                                    "written without the relay's key)"))
        elif doc.get("prev") != prev:
            kind = "reordered" if isinstance(seq, int) and seq != expected_seq else "chain-broken"
            findings.append(Finding(kind, where,
                                    f"entry seq {seq} does not follow the line before it "
                                    f"(expected seq {expected_seq}): lines were removed, inserted "
                                    "or reordered"))
        elif seq != expected_seq:
            findings.append(Finding("reordered", where, f"seq {seq}, expected {expected_seq}"))
        else:
            good.append(line)
        prev = line_hash(line.raw)
        expected_seq = (seq + 1) if isinstance(seq, int) else expected_seq + 1
    return findings, good


def verify_record(root: Path, public: Ed25519PublicKey) -> Report:
    report = Report()
    for name, what in (("audit.jsonl", "audit log"), (MARKERS, "marker log")):
        if (root / name).exists():
            found, good = verify_chain(root / name, public, name)
            report.findings += found
            report.summary.append(f"{what}: {len(good)} entries verified")
    for sdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sdir.name == MIRRORS:
            _verify_mirrors(sdir, report)
        else:
            _verify_stream(root, sdir, public, report)
    return report


def _verify_mirrors(mirrors: Path, report: Report) -> None:
    """Each vehicle's record kept here, with the key this relay was configured with for it
    (written beside it when the mirror was made; pass a record root and a key of your own
    to check one vehicle against a key kept elsewhere)."""
    for vdir in sorted(p for p in mirrors.iterdir() if p.is_dir()):
        try:
            key = load_public_key(vdir / "signing-key.pub.pem")
        except (OSError, ValueError) as exc:
            report.findings.append(Finding("unreadable", f"{MIRRORS}/{vdir.name}", f"no usable key: {exc}"))
            continue
        sub = verify_record(vdir, key)
        where = f"{MIRRORS}/{vdir.name}"
        report.findings += [Finding(f.what, f"{where}/{f.where}", f.detail) for f in sub.findings]
        report.summary += [f"vehicle {vdir.name}: {line}" for line in sub.summary]


def _verify_stream(root: Path, sdir: Path, public: Ed25519PublicKey, report: Report) -> None:
    stream = sdir.name
    manifest = sdir / MANIFEST
    found, good = verify_chain(manifest, public, f"{stream}/{MANIFEST}")
    report.findings += found
    held: dict[str, tuple[str, int]] = {}  # file -> (sha256, seq)
    expired = 0
    last_start = -1
    for line in good:
        d = line.doc or {}
        f = d.get("file")
        if not isinstance(f, str):
            continue
        if d.get("kind") == "deleted":
            if held.pop(f, None) is not None:
                expired += 1
            continue
        held[f] = (str(d.get("sha256")), int(d.get("seq", 0)))
        start = int(d.get("start_ms", 0))
        if d.get("kind") == "segment" and start < last_start and not d.get("recovered"):
            report.findings.append(Finding("reordered", f, "sealed after a later segment"))
        last_start = max(last_start, start) if d.get("kind") == "segment" else last_start
    by_hash = {h: f for f, (h, _) in held.items()}
    actual: dict[str, str] = {}
    for f in held:
        p = root / f
        if p.is_file():
            actual[f] = file_sha256(p)[0]
    for f, (h, seq) in sorted(held.items(), key=lambda kv: kv[1][1]):
        if f not in actual:
            report.findings.append(Finding("deleted", f, f"sealed as manifest entry seq {seq}, "
                                                         "no deletion recorded, file missing"))
            continue
        got = actual[f]
        if got == h:
            continue
        other = by_hash.get(got)
        if other is not None:
            report.findings.append(Finding("swapped", f, f"holds the content sealed for {other}"))
        else:
            report.findings.append(Finding("modified", f, f"SHA-256 {got[:16]}… differs from the "
                                                          f"sealed {h[:16]}… (entry seq {seq})"))
    for p in sorted(sdir.glob("*/*")):
        rel = str(p.relative_to(root))
        if rel in held or not (SEGMENT_NAME.match(p.name) or SNAPSHOT_NAME.match(p.name)):
            continue
        report.findings.append(Finding("added", rel, "not in the manifest (added out of turn, or "
                                                     "being written / left unsealed by a crash)"))
    report.summary.append(f"{stream}: {len(held)} files sealed, {expired} deleted by retention, "
                          f"{len(good)} manifest entries verified")
