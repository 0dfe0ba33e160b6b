"""Where the record lives on disk, and the names that carry each file's wall-clock start.

::

    <dir>/audit.jsonl                              who viewed or downloaded what (chained)
    <dir>/markers.jsonl                            every marker placed, changed, removed (chained)
    <dir>/signing-key.pub.pem                      the public half of the signing key
    <dir>/<stream>/manifest.jsonl                  every sealed file, chained and signed
    <dir>/<stream>/<YYYY-MM-DD>/<YYYYmmddTHHMMSS.mmmZ>.mp4       a segment (UTC start)
    <dir>/<stream>/<YYYY-MM-DD>/snap-<YYYYmmddTHHMMSS.mmmZ>.jpg  a snapshot
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

__all__ = ["MANIFEST", "MARKERS", "SEGMENT_NAME", "SNAPSHOT_NAME", "file_time_ms", "iso", "segment_path",
           "snapshot_path", "stamp"]

MANIFEST = "manifest.jsonl"
MARKERS = "markers.jsonl"
_STAMP = r"(\d{8}T\d{6}\.\d{3})Z"
SEGMENT_NAME = re.compile(rf"^{_STAMP}\.mp4$")
SNAPSHOT_NAME = re.compile(rf"^snap-{_STAMP}\.jpg$")


def stamp(wall_ms: int) -> str:
    t = dt.datetime.fromtimestamp(wall_ms / 1000, dt.UTC)
    return t.strftime("%Y%m%dT%H%M%S.") + f"{wall_ms % 1000:03d}Z"


def iso(wall_ms: float) -> str:
    t = dt.datetime.fromtimestamp(wall_ms / 1000, dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _day(wall_ms: int) -> str:
    return dt.datetime.fromtimestamp(wall_ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def segment_path(root: Path, stream: str, wall_ms: int) -> Path:
    return root / stream / _day(wall_ms) / f"{stamp(wall_ms)}.mp4"


def snapshot_path(root: Path, stream: str, wall_ms: int) -> Path:
    return root / stream / _day(wall_ms) / f"snap-{stamp(wall_ms)}.jpg"


def file_time_ms(name: str) -> int | None:
    """The wall-clock start a segment's or snapshot's file name carries (ms since the epoch)."""
    m = SEGMENT_NAME.match(name) or SNAPSHOT_NAME.match(name)
    if m is None:
        return None
    t = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=dt.UTC)
    return round(t.timestamp() * 1000)
