"""The README's first command, as a newcomer on a busy machine runs it: two demos at once on
their own ports (one variable moves every port), each live with its pages named and its
telemetry reaching its own relay; a port in use named before anything starts; Ctrl-C exits 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench.common import get_json

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _base() -> int:
    """Four free ports in a row (TCP and UDP): the demo's PORT_BASE."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 65000:
            continue
        try:
            socks = []
            for i in range(4):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    k = socket.socket(socket.AF_INET, kind)
                    socks.append(k)
                    k.bind(("0.0.0.0", base + i))
            return base
        except OSError:
            continue
        finally:
            for k in socks:
                k.close()
    raise AssertionError("no four free ports in a row")


def _demo(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(["scripts/demo.sh"], cwd=ROOT, env={**os.environ, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.25)


def _live(port: int) -> bool:
    try:
        doc = get_json(f"http://127.0.0.1:{port}/api/streams")
    except Exception:
        return False
    s = {d["name"]: d for d in doc["streams"]}.get("drone1")
    return bool(s and s["state"] == "live" and s.get("telemetry") and not s["telemetry"]["stale"])


def test_two_demos_at_once_each_on_its_own_ports(tmp_path: Path) -> None:
    a, b = _base(), None
    first = _demo({"PORT_BASE": str(a), "RECORD_DIR": str(tmp_path / "a")})
    second = None
    try:
        _until(lambda: _live(a), 90, "the first demo's drone live with telemetry")
        b = _base()
        second = _demo({"PORT_BASE": str(b), "RECORD_DIR": str(tmp_path / "b")})
        _until(lambda: _live(b), 90, "the second demo's drone live with telemetry")
        # each its own record (two relays' chains in one folder would be one broken record)
        _until(lambda: all(any((tmp_path / d / "drone1").glob("*/*.mp4")) for d in "ab"), 30,
               "each demo's record in its own folder")
        assert _live(a)  # (each relay hears its own drone's MAVLink: the port moved with the base)
        for proc in (first, second):
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group
        out = [p.communicate(timeout=30)[0] for p in (first, second)]
        assert [p.returncode for p in (first, second)] == [0, 0], out
        for base, text in zip((a, b), out, strict=True):
            for page in ("/view/drone1", "/wall", "/incident", "/share"):
                assert f"http://127.0.0.1:{base}{page}" in text, text
            assert f":{base + 1}/live/" in text, text  # the RTMP port, moved too
            assert "unbound variable" not in text, text
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path) -> None:
    base = _base()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", base + 1))  # the RTMP port
        taken.listen()
        proc = _demo({"PORT_BASE": str(base), "RECORD_DIR": str(tmp_path)})
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert re.search(rf"RTMP port {base + 1}/tcp is in use .*set RTMP_PORT=", out), out
    assert "Traceback" not in out and "unbound variable" not in out, out
    with pytest.raises(OSError):  # nothing was started: no relay on the HTTP port
        socket.create_connection(("127.0.0.1", base), timeout=1).close()
