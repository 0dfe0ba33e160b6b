"""The overload governor: lateness heard from every stage, one decision, a declared order.

Short of CPU, a live relay must drop work, not let pictures age. Each stage already keeps
its own queue fresh (``Reader.max_age``: a frame or packet older than its bound is skipped,
never played late); what those skips say — and the event loop's own lag — comes here, to
one place, which sheds work in the configured order (``[overload] shed``) until the skips
stop, and gives it back one step at a time when the load goes (the calm it waits for doubles
after a step back that proved too early). What it sheds, since when and why is in
``doc()``: ``/api/streams``, ``/metrics``, the view page's HUD, one log line per change.

Steps, in the default order (the pictures people look at first are cut last; each step
cheaper for the CPU than the one before it was):

- ``tiles_fps``: renditions only wall tiles watch at a third of their frame rate (a wall
  of many pictures; a commander's view, a forward to the centre and other relays untouched);
- ``fps_half``: transcoded renditions at half their frame rate (the source's own packets
  untouched: they cost no encoder);
- ``rungs``: a stream's extra transcoded rungs closed, their viewers moved down to one that
  stays (another relay's rung and the lowest a person watches: :mod:`relay.egress.shed`);
- ``overlay``: the relay's overlay (name, time, telemetry) not drawn;
- ``fps_third``: transcoded renditions at a third of their frame rate;
- ``fps_sixth``: at a sixth (5 fps of 30: a fresh picture, seldom);
- ``keyframes``: RTMP drones with regular keyframes decoded at their keyframes only.

Lateness also comes from outside the queues: frames leaving the encoders over
``LATE_FRAME_S`` after arrival, and the CPU the kernel withheld — a relay held to a share of
the machine (a cgroup's ``cpu.max`` / ``cfs_quota_us``, a container's CPU limit) is stopped
whole when its share is spent, packets wait in the kernel and no stamp inside the relay sees
it; its cgroup's ``throttled`` time does (:class:`Throttling`).

A step is given back only where the relay can afford it: each step's cost is learned when
it is shed (the relay's CPU before, against its CPU once settled after), and a step back
waits while the CPU now, scaled back up by what that step saved, would pass ``HEADROOM`` of
the cores the relay may use (libwebrtc's CPU adaptation likewise adapts up only with
headroom). Without it, a relay at 2x its core gave back ``keyframes`` after each calm period
and was late for a second and a half each time (the drones' p95 age went from 210 to 600 ms).
The learned cost is a ratio, so it holds when the load changes: half the drones gone, the
same step is affordable again.

Pure: the time is passed in; the probes are :func:`watch_loop`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["SHED_STEPS", "Governor", "Throttling", "watch_loop"]

log = logging.getLogger("relay.overload")

SHED_STEPS: dict[str, str] = {  # (the names are config.overload.SHED_NAMES)
    "tiles_fps": "renditions only wall tiles watch at a third of their frame rate",
    "fps_half": "transcoded renditions at half frame rate",
    "rungs": "each stream's extra rungs closed, their viewers moved down",
    "overlay": "overlay not drawn",
    "fps_third": "transcoded renditions at a third of their frame rate",
    "fps_sixth": "transcoded renditions at a sixth of their frame rate",
    "keyframes": "drones with regular keyframes decoded at their keyframes only",
}
LOOP_LAG_S = 0.1  # an event-loop tick this late is lateness
SKIPS_LATE = 3  # frames or packets skipped for age in one tick that count as late
LATE_FRAME_S = 0.1  # a frame this long from arrival to encoded is late (before it is skipped)
THROTTLED_LATE = 0.05  # a second in which the kernel withheld the CPU this share of it is late
LATE_SHARE = 0.1  # a tick is late when this share of its encoded frames (two at least) were late
LATE_TICKS = 2  # consecutive late ticks before one more step is shed
CALM_S = 8.0  # calm this long before one step is given back (doubles after a failed one)
MAX_CALM_S = 64.0
HEADROOM = 0.8  # a step is given back only when the CPU it would cost stays under this share
SETTLE_S = 2.0  # after a step is shed, the CPU is read this long after (the cost it saved)
HOLD_RETRY_S = 300.0  # held this long, a step is given back anyway (and its cost learned anew)


class Governor:
    def __init__(self, order: tuple[str, ...] = tuple(SHED_STEPS)) -> None:
        self.order = order
        self.level = 0
        self.since: float | None = None  # wall time the relay became overloaded
        self.changes = 0
        self.calm_needed = CALM_S
        self._skips = 0
        self._late_frames = 0
        self._encoded = 0
        self._throttled = 0.0
        self._lag = 0.0
        self._late_ticks = 0
        self._calm_from: float | None = None
        self._stepped_down_at: float | None = None
        self._cpu: float | None = None  # the relay's CPU last second, a share of its cores
        self._late_cpu = 0.0  # the most CPU it used in the late seconds before a step
        self._cpu_before: dict[int, float] = {}  # level -> CPU share just before it was shed
        self._cost: dict[int, float] = {}  # level -> CPU after / before (what it left to spend)
        self._stepped_up_at: float | None = None
        self.holding = False  # calm, but the step shed last is not given back: no CPU for it
        self._holding_since: float | None = None
        self.evidence: dict[str, float] = {"skipped": 0, "late_frames": 0, "loop_lag_ms": 0.0,
                                           "throttled": 0.0}
        self.skipped_total = 0
        self.on_change: list[Callable[[Governor], None]] = []
        # Whether a step would change anything now (no wall tile watching: ``tiles_fps``
        # saves nothing); one that would not is shed together with the next, not alone.
        self.applies: Callable[[str], bool] = lambda step: True

    # ---------------------------------------------------------------- what stages report

    def skipped(self, n: int = 1) -> None:
        """A stage skipped ``n`` frames or packets for age (it would have played them late)."""
        self._skips += n
        self.skipped_total += n

    def encoded(self, age_s: float) -> None:
        """A frame left the encoders ``age_s`` after it arrived: over LATE_FRAME_S it is late
        although no queue skipped it yet (the picture ages inside the budget, then jumps)."""
        self._encoded += 1
        if age_s > LATE_FRAME_S:
            self._late_frames += 1

    def throttled(self, share: float) -> None:
        """The share of the last second the kernel withheld the CPU (the cgroup's limit)."""
        self._throttled = max(self._throttled, share)

    def loop_lag(self, lag_s: float) -> None:
        self._lag = max(self._lag, lag_s)

    def cpu(self, share: float) -> None:
        """The relay's CPU over the last second, a share of the cores it may use."""
        self._cpu = share

    def affordable(self) -> bool:
        """Whether the step shed last can be given back: the CPU now, over what that step
        left of the CPU before it (learned when it was shed), stays under HEADROOM. Unknown
        (no CPU figure, or the step not yet settled): yes — the calm alone decides."""
        cost = self._cost.get(self.level)
        if cost is None or self._cpu is None or cost <= 0:
            return True
        return self._cpu / cost <= HEADROOM

    # ---------------------------------------------------------------- what stages ask

    @property
    def shed(self) -> tuple[str, ...]:
        return self.order[:self.level]

    def fps_divisor(self) -> int:
        shed = self.shed
        for name, divisor in (("fps_sixth", 6), ("fps_third", 3), ("fps_half", 2)):
            if name in shed:
                return divisor
        return 1

    def tile_divisor(self) -> int:
        """The frame-rate divisor of a rendition only wall tiles watch."""
        return max(self.fps_divisor(), 3 if "tiles_fps" in self.shed else 1)

    def overlay(self) -> bool:
        return "overlay" not in self.shed

    def one_rung(self) -> bool:
        """Close each stream's extra transcoded rungs (their viewers moved down)."""
        return "rungs" in self.shed

    def keyframes_only(self) -> bool:
        """Decode only keyframes where a source can (its keyframes come regularly): its
        transcoded rungs show a fresh picture per keyframe; its own packets (the source
        rung, the record) are untouched."""
        return "keyframes" in self.shed

    # ---------------------------------------------------------------- the decision

    def tick(self, t: float, wall: float | None = None) -> None:
        """Once a second: more shed after sustained lateness, one step back after calm."""
        late_frames = self._late_frames >= max(2, LATE_SHARE * self._encoded)
        late = (self._skips >= SKIPS_LATE or late_frames or self._lag >= LOOP_LAG_S
                or self._throttled >= THROTTLED_LATE)
        self.evidence = {"skipped": self._skips, "late_frames": self._late_frames,
                         "loop_lag_ms": round(self._lag * 1000, 1),
                         "throttled": round(self._throttled, 3)}
        if self._cpu is not None:
            self.evidence["cpu"] = round(self._cpu, 3)
        self._skips, self._late_frames, self._encoded, self._lag, self._throttled = 0, 0, 0, 0.0, 0.0
        if late:
            self._calm_from = None
            self.holding = False
            self._holding_since = None
            self._late_ticks += 1
            self._late_cpu = max(self._late_cpu, self._cpu or 0.0)
            if self._stepped_down_at is not None and t - self._stepped_down_at < self.calm_needed:
                self.calm_needed = min(MAX_CALM_S, self.calm_needed * 2)  # gave back too soon
                self._stepped_down_at = None
            if self._late_ticks >= LATE_TICKS and self.level < len(self.order):
                self._late_ticks = 0
                level = self._next_level()
                if self._late_cpu > 0:
                    self._cpu_before[level] = self._late_cpu
                self._late_cpu = 0.0
                self._stepped_up_at = t
                self._set(level, wall)
            return
        self._late_ticks = 0
        self._late_cpu = 0.0
        if self.level == 0:
            return
        self._learn(t)
        if self._calm_from is None:
            self._calm_from = t
        elif t - self._calm_from >= self.calm_needed:
            if self._holding_since is not None and t - self._holding_since >= HOLD_RETRY_S:
                self._cost.pop(self.level, None)  # a figure learned long ago may be wrong: try
            if not self.affordable():  # (the calm goes on: a lighter load gives it back at once)
                if not self.holding:
                    self.holding = True
                    self._holding_since = t
                    log.info("relay keeps %s shed: giving it back would take the CPU past %d %%",
                             self.order[self.level - 1], round(HEADROOM * 100),
                             extra={"level": self.level, "cpu": self._cpu,
                                    "cost": self._cost.get(self.level)})
                return
            self.holding = False
            self._holding_since = None
            self._calm_from = t
            self._stepped_down_at = t
            self._set(self.level - 1, wall)

    def _next_level(self) -> int:
        """One step more, past the steps that would change nothing now."""
        level = self.level + 1
        while level < len(self.order) and not self.applies(self.order[level - 1]):
            level += 1
        return level

    def _learn(self, t: float) -> None:
        """Once settled after a step was shed: what share of the CPU before it is left."""
        before = self._cpu_before.pop(self.level, None) if (
            self._stepped_up_at is not None and t - self._stepped_up_at >= SETTLE_S) else None
        if before and self._cpu is not None:
            self._cost[self.level] = min(1.0, self._cpu / before)

    def _set(self, level: int, wall: float | None) -> None:
        before = self.level
        self.level = level
        self.changes += 1
        if before == 0:
            self.since = time.time() if wall is None else wall
        extra = {"level": level, "shed": list(self.shed), **self.evidence}
        if level > before:
            log.warning("relay overloaded: shedding %s", self.order[level - 1], extra=extra)
        elif level == 0:
            log.warning("relay no longer overloaded", extra=extra)
            self.since = None
            self.calm_needed = CALM_S if self._stepped_down_at is None else self.calm_needed
        else:
            log.info("relay load easing: %s restored", self.order[level], extra=extra)
        for cb in tuple(self.on_change):
            cb(self)

    def summary(self) -> str:
        """What is shed, in a few words (the HUD's line on a phone)."""
        parts = []
        if self.tile_divisor() > self.fps_divisor() and self.applies("tiles_fps"):  # (a tile watches)
            parts.append(f"wall tiles at 1/{self.tile_divisor()} frame rate")
        if self.fps_divisor() > 1:
            parts.append(f"frame rate cut to 1/{self.fps_divisor()}")
        if self.one_rung():
            parts.append("fewer qualities")
        if not self.overlay():
            parts.append("no overlay")
        if self.keyframes_only():
            parts.append("drones decoded at keyframes only")
        return ", ".join(parts)

    def doc(self) -> dict[str, Any]:
        """What /api/streams, /metrics and the HUD say."""
        return {
            "overloaded": self.level > 0,
            "since": self.since,
            "level": self.level,
            "shed": [SHED_STEPS[s] for s in self.shed],
            "shed_steps": list(self.shed),
            "summary": self.summary(),
            "evidence": dict(self.evidence),
            "skipped_total": self.skipped_total,
            "holding": self.holding,
        }


class Throttling:
    """The time the kernel withheld the CPU from this process's cgroup (cgroup v2
    ``cpu.stat`` ``throttled_usec``, v1 ``throttled_time`` in ns); None where there is no
    CPU limit to read."""

    def __init__(self, cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> None:
        self.path: Path | None = None
        try:
            lines = Path(cgroup).read_text().splitlines()
        except OSError:
            return
        for line in lines:
            hier, controllers, where = ([*line.split(":", 2), "", ""])[:3]
            rel = where.lstrip("/")
            if hier == "0" and controllers == "":
                candidates = [Path(root) / rel / "cpu.stat"]
            elif "cpu" in controllers.split(","):
                candidates = [Path(root) / c / rel / "cpu.stat" for c in ("cpu", "cpu,cpuacct")]
            else:
                continue
            found = next((c for c in candidates if c.is_file()), None)
            if found is not None:
                self.path = found
                return

    def cores(self) -> float:
        """The cores this process may use: its cgroup's quota (v2 ``cpu.max``, v1
        ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) or else the CPUs it may run on."""
        cpus = float(len(os.sched_getaffinity(0)))
        if self.path is None:
            return cpus
        d = self.path.parent
        try:
            if (d / "cpu.max").is_file():
                quota, _, period = (d / "cpu.max").read_text().partition(" ")
            else:
                quota = (d / "cpu.cfs_quota_us").read_text()
                period = (d / "cpu.cfs_period_us").read_text()
            q, p = quota.strip(), period.strip()
            if q in ("max", "-1") or not p:
                return cpus
            return max(0.01, min(cpus, int(q) / int(p)))
        except (OSError, ValueError):
            return cpus

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        try:
            text = self.path.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_usec":
                return int(value) / 1e6
            if key == "throttled_time":
                return int(value) / 1e9
        return None


async def watch_loop(governor: Governor, interval: float = 0.05,
                     throttling: Throttling | None = None) -> None:
    """The event loop's own lag (how late a short sleep wakes), the cgroup's throttling, the
    process's CPU as a share of its cores and the governor's tick."""
    loop = asyncio.get_running_loop()
    throttling = throttling or Throttling()
    withheld = throttling.seconds()
    cores = throttling.cores()
    used = time.process_time()
    next_tick = loop.time() + 1.0
    while True:
        t0 = loop.time()
        await asyncio.sleep(interval)
        t1 = loop.time()
        governor.loop_lag(max(0.0, t1 - t0 - interval))
        if t1 >= next_tick:
            period = t1 - next_tick + 1.0
            next_tick = t1 + 1.0
            now_withheld = throttling.seconds()
            if withheld is not None and now_withheld is not None and period > 0:
                governor.throttled(max(0.0, now_withheld - withheld) / period)
            withheld = now_withheld
            now_used = time.process_time()
            if period > 0:
                governor.cpu(max(0.0, now_used - used) / period / cores)
            used = now_used
            try:
                governor.tick(t1)
            except Exception:  # never let the governor's bookkeeping end its own watch
                log.exception("overload governor tick failed")
