"""Every command's --help works, and the simulator ends on SIGTERM even when its target
has vanished mid-connection."""

from __future__ import annotations

import contextlib
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


def test_the_simulators_pusher_dies_with_it() -> None:
    """SIGKILL (what a test or a supervisor does) ends the pushing child too: nothing keeps
    sending to the relay after the simulator is gone."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)
        port = rx.getsockname()[1]
        sim = subprocess.Popen([sys.executable, "-m", "drone_sim", "--protocol", "udp", "--size", "320x180",
                                "--to", f"udp://127.0.0.1:{port}"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rx.recv(2048)  # it pushes
        finally:
            sim.kill()
            sim.wait(10)
        time.sleep(1.0)
        rx.settimeout(0.05)
        with contextlib.suppress(TimeoutError):
            while True:  # what was queued before it died
                rx.recv(65536)
        rx.settimeout(0.2)
        deadline, late = time.monotonic() + 1.5, 0
        while time.monotonic() < deadline:  # nothing more may come
            try:
                rx.recv(65536)
                late += 1
            except TimeoutError:
                pass
    assert late == 0, f"{late} datagrams after the simulator was killed"
