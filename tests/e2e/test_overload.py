"""The relay starved of CPU: held to 0.6 of a core (a cgroup), three RTMP drones and a
stamped WHIP probe, each watched on "mid". It must drop frames rather than play them late:
the probe's picture stays fresh (its age read from the stamp in the decoded picture), the
governor says it sheds, and what it skipped for age is counted.

Measured with this setup (bench.overload.run(3, 10, 0.6)): before bounded ages and batched
reads, probe p95 1,105 ms; after, 278 ms. The bound here (700 ms) sits between the two. It
runs alone (quiet lane): its point is the relay's own shortage, not the other lanes'."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.quiet, pytest.mark.usefixtures("ffmpeg_required")]


async def test_a_starved_relay_drops_frames_instead_of_playing_them_late() -> None:
    assert os.geteuid() == 0, "the test holds the relay in a cgroup: it runs as root (CI does)"
    assert shutil.which("ffmpeg"), "ffmpeg is missing: scripts/setup.sh --dev installs it"
    from bench.overload import run

    r = await asyncio.get_running_loop().run_in_executor(None, run, 3, 10.0, 0.6)
    assert r["probe_age_p95"] is not None and r["probe_fps"] > 3, r
    assert r["probe_age_p95"] < 700, r  # the picture on screen is fresh
    assert r["drones_relay_p95_worst"] is not None and r["drones_relay_p95_worst"] < 500, r
    gov = r["overload"]
    assert gov["skipped_total"] > 0, gov  # it dropped frames rather than queue them
    assert gov["overloaded"] and gov["shed_steps"], gov  # and says what it sheds
