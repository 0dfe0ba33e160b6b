"""A network lab made of namespaces the test creates and deletes itself.

Hosts are network namespaces joined by veth pairs; NAT, firewalls and loss are nftables
rules inside them (this kernel has no netem: see shared/MEDIA-NOTES.md). The test's own
namespace (the one pytest runs in) is the host called ``None``. All traffic stays inside
namespaces the lab made; everything is removed on ``close()``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["Lab", "need_lab"]

ROOT = Path(__file__).resolve().parents[1]


def need_lab() -> None:
    """Fail (not skip) when the lab cannot run: CI runs as root with iproute2 and nftables."""
    assert os.geteuid() == 0, "the network lab needs root (CI runs as root)"
    for tool in ("ip", "nft"):
        assert shutil.which(tool), f"{tool} is missing: scripts/setup.sh --dev installs it"


def sh(*cmd: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    res = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: {res.stderr.strip()}")
    return res.stdout


class Lab:
    def __init__(self, tag: str) -> None:
        self.tag = f"{tag}{os.getpid() % 10000}"
        self.namespaces: list[str] = []
        self.links: list[str] = []  # veth ends left in the test's namespace
        self.dir = Path(tempfile.mkdtemp(prefix=f"netlab-{self.tag}-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def host(self, name: str) -> str:
        ns = f"{self.tag}-{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        return ns

    def link(self, a: str | None, a_addr: str, b: str | None, b_addr: str) -> tuple[str, str]:
        """A veth pair between hosts ``a`` and ``b`` (None: the test's own), addresses in CIDR."""
        ea, eb = self._veth("a", "b")
        self._plug(ea, a, a_addr)
        self._plug(eb, b, b_addr)
        return ea, eb

    def _veth(self, x: str, y: str) -> tuple[str, str]:
        self._pairs = getattr(self, "_pairs", 0) + 1
        ea, eb = f"v{self.tag}{x}{self._pairs}"[:15], f"v{self.tag}{y}{self._pairs}"[:15]
        sh("ip", "link", "add", ea, "type", "veth", "peer", "name", eb)
        return ea, eb

    def _plug(self, end: str, host: str | None, addr: str) -> None:
        """One end of a pair into ``host`` (None: the test's own), with ``addr``, up."""
        if host is not None:
            sh("ip", "link", "set", end, "netns", host)
        else:
            self.links.append(end)
        sh("ip", "addr", "add", addr, "dev", end, ns=host)
        sh("ip", "link", "set", end, "up", ns=host)

    def lan(self, members: dict[str | None, str]) -> str:
        """One Ethernet segment joining ``members`` (host -> address in CIDR; None: the test's
        own namespace): a bridge in a switch namespace of its own. Returns the switch."""
        switch = self.host("sw")
        sh("ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0", ns=switch)
        sh("ip", "link", "set", "br0", "up", ns=switch)
        for host, addr in members.items():
            port, end = self._veth("s", "h")
            sh("ip", "link", "set", port, "netns", switch)
            sh("ip", "link", "set", port, "master", "br0", ns=switch)
            sh("ip", "link", "set", port, "up", ns=switch)
            self._plug(end, host, addr)
        return switch

    def route(self, host: str | None, dest: str, via: str) -> None:
        sh("ip", "route", "add", dest, "via", via, ns=host)

    def forward(self, host: str) -> None:
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=host)

    def nft(self, host: str, rules: str) -> None:
        sh("nft", "-f", "-", ns=host, stdin=rules)

    def counter(self, host: str, family: str, table: str) -> int:
        """Packets counted by the ``counter`` rules of an nftables table."""
        out = sh("nft", "list", "table", family, table, ns=host)
        return sum(int(part.split()[1]) for part in out.split("counter")[1:] if part.split()[0] == "packets")

    def shape(self, host: str, dev: str, rate: str) -> None:
        """An LTE-like bottleneck on ``dev``: the rate, a 20 KB bucket, up to 150 ms of queue."""
        sh("tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", "20kb",
           "latency", "150ms", ns=host)

    def behind_lte(self, name: str, net: str, rate: str, loss_pct: int) -> tuple[str, str, str]:
        """A host ``name`` behind an LTE-like router: the test's own namespace (the relay) at
        ``{net}.2.2``, the host at ``{net}.3.2``, the router's link to it shaped to ``rate`` and
        dropping ``loss_pct`` % of the UDP towards it. Returns (host, router, that link)."""
        router, host = self.host("lte"), self.host(name)
        self.link(router, f"{net}.2.1/24", None, f"{net}.2.2/24")
        to_host, _ = self.link(router, f"{net}.3.1/24", host, f"{net}.3.2/24")
        self.route(host, "default", f"{net}.3.1")
        self.route(None, f"{net}.3.0/24", f"{net}.2.1")
        self.forward(router)
        self.shape(router, to_host, rate)
        self.nft(router, f"""
table inet lte {{
  chain fwd_loss {{ type filter hook forward priority 0; policy accept;
    ip daddr {net}.3.2 meta l4proto udp numgen random mod 100 < {loss_pct} counter drop; }}
}}
""")
        return host, router, to_host

    def wrapper(self, host: str, program: str) -> str:
        """An executable that runs ``program`` inside ``host`` (for Playwright's executable_path)."""
        path = self.dir / f"{Path(program).name}-{host}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {host} {program} "$@"\n')
        path.chmod(0o755)
        return str(path)

    def spawn(self, host: str | None, *cmd: str, log: str | None = None) -> subprocess.Popen[bytes]:
        full = (["ip", "netns", "exec", host] if host else []) + list(cmd)
        out = open(self.dir / log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        p = self.dir / name
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        for end in self.links:
            sh("ip", "link", "del", end, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
