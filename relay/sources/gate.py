"""Gates in front of FFmpeg's inputs: only allowed senders, and one sender at a time.

FFmpeg's ``udp://`` input takes every datagram that reaches its port: anyone who can send
to the port feeds the stream, and two senders interleave into garbage. The gate owns the
configured port instead, checks each datagram's source against ``allow_senders`` (networks),
locks onto the first sender and forwards its datagrams to FFmpeg on a loopback port. Another
sender is ignored (counted, logged once per address) until the current one has been silent
for ``takeover_after_s`` — the same "publishers that come back" rule as every ingest.

FFmpeg's RTSP listener takes any client too: :class:`TcpGate` owns the RTSP port, admits
only allowed addresses, one connection at a time, and pipes it to FFmpeg on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["TcpGate", "UdpGate", "free_tcp_port", "free_udp_port"]

log = logging.getLogger("relay.source")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REARM_S = 3.0  # a publisher waits this long for FFmpeg's listener behind the gate to come back


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port(pair: bool = False) -> int:
    """A free loopback UDP port (even, with the next one free too, when ``pair``)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        if port % 2 or port >= 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise OSError("no free loopback UDP port")


class _AllowList:
    def __init__(self, stream: str, allow: Sequence[str]) -> None:
        self.stream = stream
        self.allow: list[Network] = [ipaddress.ip_network(a, strict=False) for a in allow]
        self.refused_not_allowed = 0
        self.refused_second_sender = 0
        self._logged: set[str] = set()

    def allowed(self, ip: str) -> bool:
        if not self.allow:
            return True
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allow)

    def _once(self, key: str, msg: str, **extra: Any) -> None:
        if key not in self._logged and len(self._logged) < 1000:
            self._logged.add(key)
            log.warning(msg, extra={"stream": self.stream, **extra})


class TcpGate(_AllowList):
    """One allowed client at a time, piped to FFmpeg's RTSP listener on loopback."""

    def __init__(self, stream: str, allow: Sequence[str], forward_port: int) -> None:
        super().__init__(stream, allow)
        self.forward_port = forward_port
        self.active: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None
        self.accepted = 0

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._client, host, port)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.active is not None:
            self.active.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else ""
        if not self.allowed(ip):
            self.refused_not_allowed += 1
            self._once(f"deny {ip}", "RTSP client not in allow_senders refused", sender=ip)
            writer.close()
            return
        if self.active is not None:
            self.refused_second_sender += 1
            self._once(f"second {ip}", "second RTSP publisher refused: the stream has one", sender=ip)
            writer.close()
            return
        self.active = writer  # (held while connecting: a second sender meanwhile is refused)
        up = await self._upstream()
        if up is None:
            self.active = None
            writer.close()  # FFmpeg's listener did not come back: the client retries
            return
        up_reader, up_writer = up
        self.accepted += 1
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.active = None
            up_writer.close()
            writer.close()


    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """FFmpeg's own listener; while it re-arms (after the last publisher, at start) the
        caller waits up to REARM_S for it rather than being dropped (a pusher such as
        Debian's ffmpeg never retries)."""
        deadline = time.monotonic() + REARM_S
        while True:
            try:
                return await asyncio.open_connection("127.0.0.1", self.forward_port)
            except OSError:
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(0.05)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class UdpGate(_AllowList, asyncio.DatagramProtocol):
    def __init__(self, stream: str, allow: Sequence[str], forward_to: tuple[str, int],
                 takeover_after_s: float) -> None:
        _AllowList.__init__(self, stream, allow)
        self.forward_to = forward_to
        self.takeover_after_s = takeover_after_s
        self.sender: tuple[str, int] | None = None
        self.last_from_sender = 0.0
        self.forwarded = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._out: socket.socket | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port),
                                                           family=family)
        self._transport = transport
        if self.forward_to[1]:  # port 0: a subclass takes the datagrams itself
            self._out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._out.setblocking(False)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._out is not None:
            self._out.close()

    def admit(self, addr: Any) -> bool:
        """Whether a datagram from ``addr`` is taken: an allowed sender, the current one."""
        ip, port = str(addr[0]), int(addr[1])
        if not self.allowed(ip):
            self.refused_not_allowed += 1
            self._once(f"deny {ip}", "datagram from a sender not in allow_senders dropped", sender=ip)
            return False
        t = time.monotonic()
        if self.sender != (ip, port):
            if self.sender is not None and t - self.last_from_sender < self.takeover_after_s:
                self.refused_second_sender += 1
                self._once(f"second {ip}:{port}", "second sender ignored: the stream has a live sender",
                           sender=f"{ip}:{port}", current=f"{self.sender[0]}:{self.sender[1]}")
                return False
            if self.sender is not None:
                log.warning("UDP sender taken over", extra={"stream": self.stream,
                                                            "old": f"{self.sender[0]}:{self.sender[1]}",
                                                            "new": f"{ip}:{port}"})
            self.sender = (ip, port)
        self.last_from_sender = t
        return True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.admit(addr):
            return
        if self._out is not None:
            try:
                self._out.sendto(data, self.forward_to)
                self.forwarded += 1
            except (BlockingIOError, OSError):
                pass  # FFmpeg not reading yet (or restarting): a lost datagram, as on the wire
