"""Which local addresses and ports ICE uses, and what the answer announces.

aioice offers every non-loopback address on ephemeral ports and has no setting for
either. In the field the relay must pick its interfaces (the LTE modem, not the docking
LAN) — by name, since a modem's address changes on re-attach — bind within a port range
a firewall can open, and announce the public address of a 1:1 NAT. Two aioice hooks do
it (both in :mod:`.compat`, checked at start-up):

- ``aioice.ice.get_host_addresses`` is replaced with one that returns the configured
  addresses, resolving interface names at every gathering;
- ``aioice.ice.Connection.get_component_candidates`` is wrapped so that the host sockets
  it binds (``local_addr=(address, 0)``) land in ``[port_min, port_max]``.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import hashlib
import ipaddress
import logging
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import psutil

from . import compat

__all__ = [
    "announce_candidates",
    "resolve_addresses",
    "use_host_addresses",
    "use_port_range",
]

log = logging.getLogger("relay.webrtc")

_gathering: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "relay_ice_port_range", default=None)
_port_range: tuple[int, int] | None = None


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


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly ``addresses`` (IPs or interface names) as host candidates; empty = aioice's."""
    if not addresses:
        compat.set_host_addresses(None)
        return
    entries = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found = resolve_addresses(entries)
        if not found:
            log.warning("no ICE host address: none of the configured interfaces has one",
                        extra={"configured": ",".join(entries)})
        return [a for a in found if (use_ipv4 and ipaddress.ip_address(a).version == 4)
                or (use_ipv6 and ipaddress.ip_address(a).version == 6)]

    compat.set_host_addresses(host_addresses)
    log.debug("ICE host addresses fixed", extra={"addresses": ",".join(entries)})


def use_port_range(port_min: int, port_max: int) -> None:
    """Bind ICE host sockets within [port_min, port_max]; (0, 0) = ephemeral ports."""
    global _port_range
    _port_range = (port_min, port_max) if port_min else None
    compat.wrap_component_candidates(_ranged_component_candidates if _port_range else None)


async def _ranged_component_candidates(self: Any, *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    _patch_loop(loop)
    token = _gathering.set(_port_range)
    try:
        return await compat.original_component_candidates(self, *args, **kwargs)
    finally:
        _gathering.reset(token)


def _patch_loop(loop: asyncio.AbstractEventLoop) -> None:
    if getattr(loop, "_relay_port_range", False):
        return
    original: Callable[..., Any] = loop.create_datagram_endpoint

    async def create_datagram_endpoint(protocol_factory: Any, local_addr: Any = None,
                                       remote_addr: Any = None, **kw: Any) -> Any:
        span = _gathering.get()
        if span is None or local_addr is None or local_addr[1] != 0 or remote_addr is not None:
            return await original(protocol_factory, local_addr=local_addr,
                                  remote_addr=remote_addr, **kw)
        lo, hi = span
        ports = list(range(lo, hi + 1))
        start = random.randrange(len(ports))
        for port in ports[start:] + ports[:start]:
            try:
                return await original(protocol_factory, local_addr=(local_addr[0], port), **kw)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {lo}-{hi} for ICE")

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]
    loop._relay_port_range = True  # type: ignore[attr-defined]


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
