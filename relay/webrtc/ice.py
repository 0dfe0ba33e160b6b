"""Which local addresses ICE offers as host candidates.

aioice offers every non-loopback address and has no setting for it. A relay on a
vehicle's laptop must pick its interfaces (LTE modem, not the docking LAN), and a
localhost demo or test must stay on 127.0.0.1 — which aioice leaves out. We replace
aioice's address lookup once per process with one that returns the configured list.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

import aioice.ice

__all__ = ["use_host_addresses"]

log = logging.getLogger("relay.webrtc")

_original = aioice.ice.get_host_addresses


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly ``addresses`` as host candidates; an empty list restores aioice's choice."""
    if not addresses:
        aioice.ice.get_host_addresses = _original
        return
    fixed = [str(ipaddress.ip_address(a)) for a in addresses]

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in fixed
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    aioice.ice.get_host_addresses = host_addresses
    log.debug("ICE host addresses fixed", extra={"addresses": fixed})
