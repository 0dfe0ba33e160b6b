"""Peer connections: creation, offer checks with precise reasons, answers."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from ..aio import within
from ..errors import RelayError
from .ice import IcePolicy, announce_candidates, gathering_with

log = logging.getLogger("relay.webrtc")

__all__ = ["accept_answer", "answer_offer", "check_offer", "make_offer", "new_peer", "prefer_codec"]

MIME = {"h264": "video/H264", "vp8": "video/VP8"}
MAX_SDP_BYTES = 64 * 1024


def new_peer(ice_servers: Sequence[dict[str, Any]] = ()) -> RTCPeerConnection:
    """A peer using ``ice_servers`` (``{"urls", "username", "credential"}`` as in the browser).

    aiortc takes one STUN and one TURN server; the first of each is used.
    """
    servers = []
    have: set[str] = set()
    for s in ice_servers:
        for url in s["urls"]:
            kind = "turn" if url.startswith("turn") else "stun"
            if kind in have:
                continue
            have.add(kind)
            servers.append(RTCIceServer(urls=url, username=s.get("username"),
                                        credential=s.get("credential")))
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def check_offer(sdp: str, role: Literal["publish", "view"]) -> list[str]:
    """Validate an SDP offer; returns the video codecs it offers (lower-case names).

    Raises RelayError 400 when it does not parse, 422 when it parses but cannot work.
    """
    if len(sdp) > MAX_SDP_BYTES:
        raise RelayError(413, f"SDP offer is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.strip().startswith("v=0"):
        raise RelayError(400, "body is not an SDP offer (must start with 'v=0')")
    _check_lines(sdp)
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises ValueError/IndexError/KeyError on bad lines
        raise RelayError(400, f"SDP offer does not parse: {type(exc).__name__}: {exc}") from None
    mids = [m.rtp.muxId for m in desc.media if m.rtp.muxId]
    if len(mids) != len(set(mids)):
        raise RelayError(422, "SDP offer repeats an a=mid value (each m-line needs its own)")
    video = [m for m in desc.media if m.kind == "video"]
    if not video:
        raise RelayError(422, "SDP offer has no video m-line")
    if video[0].port == 0:
        raise RelayError(422, "SDP offer rejects its video m-line (port 0)")
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


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ATTR_BOUNDS = {"a=ice-ufrag:": (4, 256), "a=ice-pwd:": (22, 256)}  # RFC 8839 section 5.4


def _check_lines(sdp: str) -> None:
    """What aiortc's parser lets through but no real peer sends: control characters (a NUL
    in ``s=``), ICE credentials out of RFC 8839's bounds, header extension ids out of RFC
    8285's range (1-14 one-byte, up to 255 two-byte)."""
    if _CONTROL.search(sdp):
        raise RelayError(400, "SDP offer contains control characters")
    for line in sdp.splitlines():
        for prefix, (lo, hi) in _ATTR_BOUNDS.items():
            if line.startswith(prefix) and not lo <= len(line) - len(prefix) <= hi:
                raise RelayError(400, f"SDP offer's {prefix[2:-1]} must be {lo}-{hi} characters")
        if line.startswith("a=extmap:"):
            ident = line[9:].split(None, 1)[0].split("/", 1)[0]
            if not ident.isdigit() or not 1 <= int(ident) <= 255:
                raise RelayError(400, f"SDP offer's a=extmap id {ident[:10]!r} is not 1-255")


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Pin the transceiver to one codec (and its RTX). Call before setRemoteDescription."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    mime = MIME[codec]
    chosen = [c for c in caps if c.mimeType == mime]
    rtx = [c for c in caps if c.mimeType == "video/rtx"]
    transceiver.setCodecPreferences(chosen + rtx)


async def answer_offer(
    pc: RTCPeerConnection, offer_sdp: str, ice: IcePolicy | None = None, gather_s: float = 10.0
) -> str:
    """Apply an offer and return the complete answer (all candidates gathered on the host
    addresses and ports of ``ice``, the answering relay's own).

    Any failure caused by the offer is a 422 with one line; the traceback stays out of
    the log (it is the client's mistake, not ours).
    """
    ice = ice or IcePolicy()
    with gathering_with(ice):
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            answer = await pc.createAnswer()
        except Exception as exc:  # ValueError, KeyError, aiortc's InvalidAccessError, ...
            raise RelayError(422, f"SDP offer rejected: {type(exc).__name__}: {exc}"[:300]) from None
        try:
            await within(gather_s, pc.setLocalDescription(answer))
        except OSError as exc:
            log.warning("ICE could not bind", extra={"error": str(exc)})
            raise RelayError(503, f"no ICE port available: {exc.strerror or exc}") from None
    return announce_candidates(str(pc.localDescription.sdp), ice.announce)


async def make_offer(pc: RTCPeerConnection, ice: IcePolicy | None = None, gather_s: float = 10.0) -> str:
    """This relay dials out (it forwards a stream to another relay): the complete offer,
    candidates gathered under the relay's own ``ice`` policy."""
    ice = ice or IcePolicy()
    with gathering_with(ice):
        try:
            await within(gather_s, pc.setLocalDescription(await pc.createOffer()))
        except OSError as exc:
            log.warning("ICE could not bind", extra={"error": str(exc)})
            raise RelayError(503, f"no ICE port available: {exc.strerror or exc}") from None
    return announce_candidates(str(pc.localDescription.sdp), ice.announce)


async def accept_answer(pc: RTCPeerConnection, answer_sdp: str) -> None:
    """The other relay's answer to our offer (502 when it is not one we can use)."""
    if not answer_sdp.strip().startswith("v=0"):
        raise RelayError(502, "the other side's answer is not SDP")
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
    except Exception as exc:
        why = f"the other side's answer was rejected: {type(exc).__name__}: {exc}"
        raise RelayError(502, why[:300]) from None
