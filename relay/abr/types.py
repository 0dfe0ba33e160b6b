"""What the ABR parts exchange: the ladder's rungs, a sample of the link, a decision."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProbeResult", "Rung", "Sample", "Switch"]


@dataclass(frozen=True)
class Rung:
    name: str
    kbps: int
    fps: float = 30.0


@dataclass(frozen=True)
class Sample:
    """What the link showed over the last sample period."""

    t: float
    remb_kbps: float | None = None  # receiver's estimate (REMB), None if the viewer sends none
    loss: float | None = None  # fraction lost (RTCP receiver report), 0..1
    nacks: int = 0  # packets NACKed (for the first time) in the period
    sent: int = 0  # packets sent in the period (0: unknown)
    sent_kbps: float | None = None  # what the viewer was sent (below the rung's budget on easy pictures)
    plis: int = 0  # keyframe requests in the period
    fps: float | None = None  # frames the viewer decoded per second (its own report)
    freezes: int = 0  # new freezes (>200 ms without a frame) the viewer reported
    queue_ms: float | None = None  # a queue standing on the link (QueueWatch), over its own round trip
    link_kbps: float | None = None  # what the viewer received while that queue stood: the link's rate


@dataclass(frozen=True)
class Switch:
    t: float
    frm: str
    to: str
    reason: str
    probe: bool = False  # not a switch yet: pad the link up to ``to``'s rate, then judge


@dataclass(frozen=True)
class ProbeResult:
    t: float
    to: str
    ok: bool
    detail: str
