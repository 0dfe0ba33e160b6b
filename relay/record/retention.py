"""Which recorded files to delete: a pure decision, oldest first.

Rules, in order: anything older than ``max_age_days``; then the oldest of a stream over its
``max_stream_mb``; then the oldest of all over ``max_total_mb``. The file being written is
never a candidate. Free space under the floor does not delete evidence: the service stops
recording instead (something else is filling the disk) and says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Held", "Victim", "plan_deletions"]


@dataclass(frozen=True)
class Held:
    stream: str
    file: str
    start_ms: int
    size: int


@dataclass(frozen=True)
class Victim:
    stream: str
    file: str
    reason: str


def plan_deletions(held: list[Held], *, now_ms: int, max_age_days: float, max_stream_mb: float,
                   max_total_mb: float) -> list[Victim]:
    left = sorted(held, key=lambda h: (h.start_ms, h.file))
    out: list[Victim] = []

    def take(h: Held, reason: str) -> None:
        out.append(Victim(h.stream, h.file, reason))
        left.remove(h)

    cutoff = now_ms - max_age_days * 86400_000
    for h in [h for h in left if h.start_ms < cutoff]:
        take(h, f"older than record.max_age_days ({max_age_days:g})")
    if max_stream_mb > 0:
        per: dict[str, list[Held]] = defaultdict(list)
        for h in left:
            per[h.stream].append(h)
        for files in per.values():
            total = sum(h.size for h in files)
            for h in files:
                if total <= max_stream_mb * 1e6:
                    break
                take(h, f"stream over record.max_stream_mb ({max_stream_mb:g})")
                total -= h.size
    if max_total_mb > 0:
        total = sum(h.size for h in left)
        while left and total > max_total_mb * 1e6:
            h = left[0]
            total -= h.size
            take(h, f"record over record.max_total_mb ({max_total_mb:g})")
    return out
