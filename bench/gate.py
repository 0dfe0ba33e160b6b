"""What the UDP ingest gate costs: CPU per datagram, and per stream at drone bit rates.

The gate (relay/sources/gate.py) receives every datagram of a UDP/RTP source, checks the
sender, and forwards it to FFmpeg on loopback. This sends N datagrams of 1316 bytes (7 TS
packets) through the gate and, in the same run, straight to the sink, and prints the
process CPU for each and their difference per datagram.

    .venv/bin/python -m bench.gate [--count 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

from relay.sources.gate import UdpGate, free_udp_port


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.n = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.n += 1


async def run(count: int, through_gate: bool) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    sink_port = free_udp_port()
    transport, sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", sink_port))
    target = sink_port
    gate = None
    if through_gate:
        gate_port = free_udp_port()
        gate = UdpGate("bench", ["127.0.0.0/8"], ("127.0.0.1", sink_port), takeover_after_s=1.0)
        await gate.start("127.0.0.1", gate_port)
        target = gate_port
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(1316)
    cpu0 = time.process_time()
    stall = time.monotonic() + 60
    for i in range(count):
        tx.sendto(payload, ("127.0.0.1", target))
        while i - sink.n > 32 and time.monotonic() < stall:  # a window: never overrun a buffer
            await asyncio.sleep(0)
    deadline = time.monotonic() + 5
    while sink.n < count * 0.98 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cpu = time.process_time() - cpu0
    tx.close()
    transport.close()
    if gate is not None:
        gate.close()
    return cpu, sink.n


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50000)
    args = ap.parse_args()
    direct, n_direct = await run(args.count, False)
    gated, n_gated = await run(args.count, True)
    extra_us = (gated - direct) / args.count * 1e6
    pps = 2_500_000 / 8 / 1316  # a 2.5 Mbit/s MPEG-TS feed
    print(f"datagrams: {args.count} (delivered direct {n_direct}, through gate {n_gated})")
    print(f"CPU direct {direct:.3f} s, through gate {gated:.3f} s, ratio {gated / direct:.2f}x")
    print(f"gate cost {extra_us:.1f} us/datagram = {extra_us * pps / 1e6 * 100:.2f} % of a core "
          f"for a 2.5 Mbit/s feed ({pps:.0f} datagrams/s)")


if __name__ == "__main__":
    asyncio.run(main())
