"""Peer connections: creation, offer checks with precise reasons, answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from ..errors import RelayError

__all__ = ["answer_offer", "check_offer", "new_peer", "prefer_codec"]

MIME = {"h264": "video/H264", "vp8": "video/VP8"}
MAX_SDP_BYTES = 64 * 1024


def new_peer(stun_servers: Sequence[str] = ()) -> RTCPeerConnection:
    servers = [RTCIceServer(urls=u) for u in stun_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def check_offer(sdp: str, role: Literal["publish", "view"]) -> list[str]:
    """Validate an SDP offer; returns the video codecs it offers (lower-case names).

    Raises RelayError 400 when it does not parse, 422 when it parses but cannot work.
    """
    if len(sdp) > MAX_SDP_BYTES:
        raise RelayError(413, f"SDP offer is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.strip().startswith("v=0"):
        raise RelayError(400, "body is not an SDP offer (must start with 'v=0')")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises ValueError/IndexError/KeyError on bad lines
        raise RelayError(400, f"SDP offer does not parse: {type(exc).__name__}: {exc}") from None
    video = [m for m in desc.media if m.kind == "video"]
    if not video:
        raise RelayError(422, "SDP offer has no video m-line")
    if not all(m.ice and m.ice.usernameFragment and m.ice.password for m in video):
        raise RelayError(422, "SDP offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if not all(m.dtls and m.dtls.fingerprints for m in video):
        raise RelayError(422, "SDP offer has no DTLS fingerprint (a=fingerprint)")
    m = video[0]
    wanted = ("sendonly", "sendrecv") if role == "publish" else ("recvonly", "sendrecv")
    if m.direction not in wanted:
        raise RelayError(
            422, f"video m-line direction is {m.direction!r}; {role} needs one of {wanted}"
        )
    codecs = [c.mimeType.split("/", 1)[1].lower() for c in m.rtp.codecs]
    usable = [c for c in codecs if c in MIME]
    if not usable:
        raise RelayError(422, f"SDP offer has no usable video codec (offered: {codecs or 'none'})")
    return usable


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Pin the transceiver to one codec (and its RTX). Call before setRemoteDescription."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    mime = MIME[codec]
    chosen = [c for c in caps if c.mimeType == mime]
    rtx = [c for c in caps if c.mimeType == "video/rtx"]
    transceiver.setCodecPreferences(chosen + rtx)


async def answer_offer(pc: RTCPeerConnection, offer_sdp: str, gather_s: float = 10.0) -> str:
    """Apply an offer and return the complete answer (all candidates gathered)."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except (ValueError, KeyError, IndexError) as exc:
        raise RelayError(422, f"SDP offer rejected: {exc}") from None
    answer = await pc.createAnswer()
    await asyncio.wait_for(pc.setLocalDescription(answer), gather_s)
    return str(pc.localDescription.sdp)
