"""Every command's --help works, and the simulator ends on SIGTERM even when its target
has vanished mid-connection."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["relay", "drone_sim", *sorted(f"bench.{p.stem}" for p in (ROOT / "bench").glob("*.py")
                                           if 'if __name__ == "__main__"' in p.read_text())]


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-500:]


def test_simulator_ends_on_sigterm_while_its_rtmp_target_is_a_black_hole() -> None:
    """A listener that accepts and then never answers (a target gone without a reset):
    FFmpeg's RTMP handshake blocks; SIGTERM still ends the simulator within seconds."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(4)
        port = hole.getsockname()[1]
        sim = subprocess.Popen([sys.executable, "-m", "drone_sim", "--protocol", "rtmp", "--size", "320x180",
                                "--to", f"rtmp://127.0.0.1:{port}/live/x"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            conn, _ = hole.accept()  # it connected; now it waits for our handshake forever
            time.sleep(1.0)
            sim.send_signal(signal.SIGTERM)
            code = sim.wait(timeout=10)
        finally:
            if sim.poll() is None:
                sim.kill()
                sim.wait()
        conn.close()
    assert code == 0
