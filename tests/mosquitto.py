"""Debian's Mosquitto, started by a test on 127.0.0.1 with its own accounts and ACL (never a
broker of the machine's): the relay's account may read and write every DJI topic, a remote
controller's only its own devices' topics."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from relay.sources.gate import free_tcp_port
from tests.helpers import until_listening

MOSQUITTO = "/usr/sbin/mosquitto"
RELAY_USER, RELAY_PASS = "relay", "relay-secret-1"
PILOT_USER, PILOT_PASS = "pilot", "pilot-secret-1"


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        assert Path(MOSQUITTO).exists() and shutil.which("mosquitto_passwd"), \
            "mosquitto is missing: scripts/setup.sh --dev installs it"
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        self.proc: subprocess.Popen[bytes] | None = None
        pw = self.dir / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), RELAY_USER, RELAY_PASS], check=True,
                       capture_output=True)
        subprocess.run(["mosquitto_passwd", "-b", str(pw), PILOT_USER, PILOT_PASS], check=True, capture_output=True)
        (self.dir / "acl").write_text(
            f"user {RELAY_USER}\ntopic readwrite thing/#\ntopic readwrite sys/#\n\n"
            f"user {PILOT_USER}\ntopic readwrite thing/product/#\ntopic readwrite sys/product/#\n")
        (self.dir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n"
            f"acl_file {self.dir / 'acl'}\npersistence false\nlog_dest file {self.dir / 'log'}\n"
            # (run as root, it would become the "mosquitto" user, who cannot read the test's folder)
            + ("user root\n" if os.geteuid() == 0 else ""))
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until_listening(self.port, self.proc, f"mosquitto (its log: {self.dir / 'log'})")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
