"""Run a benchmark inside a network namespace of its own (loopback + a veth at 10.201.0.1).

Janus's ICE (libnice) ignores loopback, so it needs a real interface; a veth pair inside
a namespace we create keeps every packet on this machine and inside the benchmark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ADDRESS = "10.201.0.1"
SETUP = (
    "ip link set lo up && ip link add v0 type veth peer name v1 && "
    f"ip addr add {ADDRESS}/24 dev v0 && ip link set v1 up && ip link set v0 up && sleep 1 && "
)


def ensure_netns() -> None:
    """Re-exec this command inside a fresh network namespace (once)."""
    if os.environ.get("BENCH_NETNS") == "1":
        return
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        sys.exit("benchmarks need root and unshare(1) to make their own network namespace")
    env = {**os.environ, "BENCH_NETNS": "1"}
    cmd = " ".join(["exec", sys.executable, "-m", sys.modules["__main__"].__spec__.name,  # type: ignore[union-attr]
                    *[f"'{a}'" for a in sys.argv[1:]]])
    sys.exit(subprocess.call(["unshare", "-n", "bash", "-c", SETUP + cmd], env=env))
