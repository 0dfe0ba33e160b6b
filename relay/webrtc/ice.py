"""Which local addresses and ports ICE uses, and what the answer announces.

aioice offers every non-loopback address on ephemeral ports and has no setting for
either. In the field the relay must pick its interfaces (the LTE modem, not the docking
LAN) — by name, since a modem's address changes on re-attach — bind within a port range
a firewall can open, and announce the public address of a 1:1 NAT. Two aioice hooks do
it (both in :mod:`.compat`, checked at start-up):

- ``aioice.ice.get_host_addresses`` is replaced with one that returns the gathering
  relay's configured addresses (its :class:`IcePolicy`, from the task's context),
  resolving interface names at every gathering;
- ``aioice.ice.Connection.get_component_candidates`` is wrapped so that the host sockets
  it binds (``local_addr=(address, 0)``) land in ``[port_min, port_max]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import hashlib
import ipaddress
import logging
import random
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from ..config import WebRTCConfig
from . import compat

__all__ = [
    "IcePolicy",
    "announce_candidates",
    "gathering_with",
    "resolve_addresses",
    "use_host_addresses",
]

log = logging.getLogger("relay.webrtc")


@dataclass(frozen=True)
class IcePolicy:
    """One relay's ICE: the host addresses (IPs or interface names; empty = aioice's own
    choice), the port range ((0, 0) = ephemeral) and the public addresses announced."""

    addresses: tuple[str, ...] = ()
    port_min: int = 0
    port_max: int = 0
    announce: tuple[str, ...] = ()

    @classmethod
    def of(cls, webrtc: WebRTCConfig) -> IcePolicy:
        return cls(webrtc.ice_addresses, webrtc.port_min, webrtc.port_max, webrtc.announce_addresses)


# The policy of the relay whose peer is gathering now. aioice has no per-connection
# setting, so its two hooks (installed once, see :mod:`.compat`) read it from the task's
# context: two relays in one process (tests, a cluster node with a forwarder) each keep
# their own addresses and ports.
_policy: contextvars.ContextVar[IcePolicy | None] = contextvars.ContextVar("relay_ice_policy", default=None)
# Outside any relay's gathering (a client peer in the same process: the simulator, a test
# viewer), host addresses come from whatever the process set before us (or aioice's own).
_fallback: Callable[[bool, bool], list[str]] = compat.original_host_addresses


def resolve_addresses(entries: Sequence[str]) -> list[str]:
    """IP addresses for a list of addresses and interface names (names looked up now)."""
    out: list[str] = []
    ifaces: dict[str, list[Any]] | None = None
    for item in entries:
        try:
            out.append(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        if ifaces is None:
            ifaces = psutil.net_if_addrs()
        for a in ifaces.get(item, []):
            addr = a.address.split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                continue  # a MAC address
            if not ip.is_link_local:
                out.append(str(ip))
    return list(dict.fromkeys(out))


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    policy = _policy.get()
    if policy is None or not policy.addresses:
        return _fallback(use_ipv4, use_ipv6)
    found = resolve_addresses(policy.addresses)
    if not found:
        log.warning("no ICE host address: none of the configured interfaces has one",
                    extra={"configured": ",".join(policy.addresses)})
    return [a for a in found if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)]


def _install() -> None:
    """Put our two hooks in place (again, if someone replaced aioice's function since:
    what they set becomes the fallback for peers that are not a relay's)."""
    global _fallback
    current = compat.current_host_addresses()
    if current is not _host_addresses:
        _fallback = current
        compat.set_host_addresses(_host_addresses)
    compat.wrap_component_candidates(_ranged_component_candidates)


def use_host_addresses(addresses: Sequence[str]) -> None:
    """For peers that are not a relay's (a client in this process): offer exactly
    ``addresses``; empty = aioice's own choice. A relay's peers use their :class:`IcePolicy`."""
    global _fallback
    entries = list(addresses)

    def fixed(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in resolve_addresses(entries) if (use_ipv4 and ipaddress.ip_address(a).version == 4)
                or (use_ipv6 and ipaddress.ip_address(a).version == 6)]

    _install()
    _fallback = fixed if entries else compat.original_host_addresses


@contextlib.contextmanager
def gathering_with(policy: IcePolicy) -> Iterator[None]:
    """Within the block, this task's ICE gathering follows ``policy``."""
    _install()
    token = _policy.set(policy)
    try:
        yield
    finally:
        _policy.reset(token)


async def _ranged_component_candidates(self: Any, *args: Any, **kwargs: Any) -> Any:
    policy = _policy.get()
    if policy is None:
        return await compat.original_component_candidates(self, *args, **kwargs)
    _patch_loop(asyncio.get_running_loop())
    token = _gathering.set(policy)
    try:
        return await compat.original_component_candidates(self, *args, **kwargs)
    finally:
        _gathering.reset(token)


_gathering: contextvars.ContextVar[IcePolicy | None] = contextvars.ContextVar(
    "relay_ice_gathering", default=None)


def _patch_loop(loop: asyncio.AbstractEventLoop) -> None:
    if getattr(loop, "_relay_port_range", False):
        return
    original: Callable[..., Any] = loop.create_datagram_endpoint

    async def create_datagram_endpoint(protocol_factory: Any, local_addr: Any = None,
                                       remote_addr: Any = None, **kw: Any) -> Any:
        policy = _gathering.get()
        if policy is None or local_addr is None or remote_addr is not None:
            return await original(protocol_factory, local_addr=local_addr,
                                  remote_addr=remote_addr, **kw)
        if not policy.port_min or local_addr[1] != 0:
            return _batched(await original(protocol_factory, local_addr=local_addr, **kw), policy)
        lo, hi = policy.port_min, policy.port_max
        ports = list(range(lo, hi + 1))
        start = random.randrange(len(ports))
        for port in ports[start:] + ports[:start]:
            try:
                return _batched(await original(protocol_factory, local_addr=(local_addr[0], port), **kw),
                              policy)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {lo}-{hi} for ICE")

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]
    loop._relay_port_range = True  # type: ignore[attr-defined]


def _batched(endpoint: Any, policy: IcePolicy) -> Any:
    """The relay's ICE socket, read in batches (aioice sizes its kernel buffers itself)."""
    transport = endpoint[0]
    raw = getattr(transport, "_sock", None)  # (asyncio's hands out a wrapper without recvfrom)
    if isinstance(raw, socket.socket):
        _read_in_batches(transport, raw)
    return endpoint


READ_BATCH = 64  # datagrams read per readiness event of one ICE socket


def _read_in_batches(transport: Any, sock: socket.socket) -> None:
    """asyncio's datagram transport reads one datagram each time the loop finds the socket
    readable: one per loop iteration. When the relay is short of CPU its iterations slow
    (measured: tens of ms with a dozen busy worker threads), a publisher's 250 packets a
    second then queue in the kernel — its picture grew seconds old before the relay saw it,
    and the overflow cost retransmissions and keyframes. Read what is waiting, up to
    ``READ_BATCH``, at each event."""
    loop = asyncio.get_running_loop()
    protocol = transport.get_protocol()
    fd = sock.fileno()

    def read_ready() -> None:
        for _ in range(READ_BATCH):
            if transport.is_closing():
                return
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            protocol.datagram_received(data, addr)

    # (the selector loop's own registration of a transport's socket: the public add_reader
    # refuses a socket a transport owns; another loop keeps its one-at-a-time reads)
    add, remove = getattr(loop, "_add_reader", None), getattr(loop, "_remove_reader", None)
    if add is not None and remove is not None:
        remove(fd)
        add(fd, read_ready)


_CANDIDATE = re.compile(
    r"^a=candidate:(\S+) (\d+) (udp|UDP) (\d+) (\S+) (\d+) typ host(.*)$")


def announce_candidates(sdp: str, announce: Sequence[str]) -> str:
    """Add, after each host candidate, the same port at each announced (1:1 NAT) address."""
    if not announce:
        return sdp
    lines = sdp.split("\r\n")
    out: list[str] = []
    for line in lines:
        out.append(line)
        m = _CANDIDATE.match(line)
        if not m:
            continue
        _, component, transport, priority, host, port, _rest = m.groups()
        for i, public in enumerate(announce):
            if public == host:
                continue
            foundation = hashlib.md5(f"announced {public}".encode()).hexdigest()[:16]
            out.append(f"a=candidate:{foundation} {component} {transport} "
                       f"{max(1, int(priority) - 1 - i)} {public} {port} typ host")
    return "\r\n".join(out)
