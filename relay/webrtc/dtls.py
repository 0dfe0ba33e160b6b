"""DTLS as the WHIP publishers we did not write need it (a private aiortc hook, self-checked
with the others in :mod:`.compat`).

- **The first ClientHello again, soon**: a WHIP publisher (every FFmpeg build, 8 and 9)
  ignores a ClientHello that arrives while it is still finishing ICE, and OpenSSL sends
  the next one after its 1 s timer: every FFmpeg start waited a second for DTLS. As the
  client, the relay repeats its first datagram after 0.1, 0.25, 0.5 and 1.0 s until the
  publisher answers (a DTLS server takes a repeated ClientHello as a retransmission).

Not possible here: FFmpeg's GnuTLS build (the one inside PyAV's wheel) makes its DTLS
certificate on P-224, and offers ``a=setup:passive`` (the relay must be the client). The
OpenSSL that pyOpenSSL uses (4.0, bundled with cryptography 50) has no P-224 TLS group at
all (``SSL_CTX_set1_curves_list`` refuses it), so the relay cannot take that certificate;
the handshake ends with "Illegal Parameter" and the relay says so in one line. Such a
publisher works with a P-256 certificate of its own (FFmpeg's ``-cert_file``/``-key_file``).

| hook | private internal |
|---|---|
| :func:`install` | ``RTCDtlsTransport.start``, ``_role``, ``_state``, ``__rx_packets``, |
| | ``RTCIceTransport._send`` (an attribute: aioice's ``Connection.send``) |
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcicetransport import RTCIceTransport

__all__ = ["REPEAT_AT_S", "checks", "install"]

log = logging.getLogger("relay.webrtc")
REPEAT_AT_S = (0.1, 0.25, 0.5, 1.0)  # after the first ClientHello; OpenSSL's own timer is 1 s
_RX = "_RTCDtlsTransport__rx_packets"

_original_start = RTCDtlsTransport.start
_installed = False


async def _repeat(dtls: RTCDtlsTransport, send: Any, datagram: bytes) -> None:
    waited = 0.0
    for at in REPEAT_AT_S:
        await asyncio.sleep(at - waited)
        waited = at
        if dtls._state != State.CONNECTING or getattr(dtls, _RX, 1) > 0:
            return  # answered (or over)
        try:
            await send(datagram)
        except ConnectionError:
            return


async def _start(self: RTCDtlsTransport, remoteParameters: Any) -> None:
    ice = self.transport
    client = self._role == "client" or (self._role == "auto" and ice.role != "controlling")
    if not client:
        await _original_start(self, remoteParameters)
        return
    send = ice._send
    repeater: list[asyncio.Task[None]] = []

    async def sending(data: bytes) -> None:
        if not repeater:  # the first flight: the ClientHello
            repeater.append(asyncio.ensure_future(_repeat(self, send, data)))
        await send(data)

    ice._send = sending
    try:
        await _original_start(self, remoteParameters)
    finally:
        ice._send = send
        for task in repeater:
            task.cancel()
    if self._state == State.FAILED and ice.state not in ("closed", "failed"):
        # (a session closed or a path lost mid-handshake is not the peer's fault: said elsewhere)
        log.warning("DTLS handshake failed (if the peer is FFmpeg's GnuTLS build: its P-224 "
                    "certificate, which this relay's OpenSSL cannot take; give it a P-256 one with "
                    "-cert_file/-key_file)")


def install() -> None:
    """The hook, once per process."""
    global _installed
    if _installed:
        return
    RTCDtlsTransport.start = _start  # type: ignore[method-assign]
    _installed = True


def checks(sets: Any) -> dict[str, bool]:
    """What the hooks rely on; ``sets(cls, attr)``: whether ``cls.__init__`` assigns it."""
    return {
        "RTCDtlsTransport.start": inspect.iscoroutinefunction(_original_start),
        "RTCDtlsTransport._role": sets(RTCDtlsTransport, "_role"),
        "RTCDtlsTransport._state": sets(RTCDtlsTransport, "_state"),
        "RTCDtlsTransport.__rx_packets": sets(RTCDtlsTransport, "__rx_packets"),
        "RTCIceTransport._send": sets(RTCIceTransport, "_send"),  # aioice's Connection.send
    }
