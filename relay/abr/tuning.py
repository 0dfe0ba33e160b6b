"""The controller's tuning: every threshold and hold in one frozen object (4 of them can
be set from TOML: ``[abr]`` hold_s, max_hold_s, start_kbps, queue_watch)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Tuning"]


@dataclass(frozen=True)
class Tuning:
    hold_s: float = 6.0
    max_hold_s: float = 60.0
    probe_s: float = 5.0
    up_hold_s: float = 3.0
    loss_down: float = 0.12
    loss_clean: float = 0.1  # random loss of a few % is not congestion: climb through it
    thin_fps: float = 12.0  # a rung this slow (the floor) gives thin evidence: judged more leniently
    nack_down: float = 0.3  # NACKed packets over packets sent in a sample
    freeze_window_s: float = 20.0
    stay_s: float = 30.0  # a rung left sooner than this after reaching it failed
    probe_settle_s: float = 0.5  # a step up is judged at once: the rung below was clean
    settle_s: float = 3.0  # after a switch, the new rung's evidence needs this long to show
    recover_s: float = 4.0  # after a failed probe: the overload's queue and lost keyframe clear
    warmup_s: float = 3.0  # a new viewer's first reports (still connecting) are no evidence
    remb_grace_s: float = 3.0  # after a step up, REMB needs time to see the higher rate
    probe_headroom: float = 1.0  # a step up needs an estimate this far above what is sent
    probe_fail_hold_s: float = 45.0  # a failed probe on a lossy link blocks its rung this long
    lossy_link: float = 0.02  # random loss at or above this: a lossy (marginal) link
    lossy_hold_s: float = 20.0  # on a lossy link, this long before probing a rung that failed
    link_change_s: float = 10.0  # loss must stay low this long after a switch to mean a new link
    fps_runs: int = 2  # poor decoding must show in this many samples running
    remb_down: float = 0.8  # an estimate alone is evidence under this share of what is sent
    remb_collapse: float = 0.6  # ...at once, and trusted, when it fell under this share within 2 s
    queue_down: float = 0.8  # a standing queue, and the viewer receives under this share of what is sent
    media_share: float = 0.85  # of a full link, what the media gets (headers, retransmissions, echoes)
    probe_nack_margin: float = 0.08  # a padding probe fails above the link's usual NACK share + this
    probe_quiet_s: float = 1.5  # after a failed padding probe, its overload is no evidence
    pad_hold_s: float = 4.0  # a rung a padding probe found too big is probed again after this,
    pad_max_hold_s: float = 6.0  # 2 s more each time up to this
    pad_up_hold_s: float = 2.0  # after a step up a padding probe verified, the next probe waits this
