"""Publish the scene over WHIP with aiortc, encoding once with PyAV (libx264, zerolatency).

The encoder runs in a worker thread; aiortc's sender only packetises our packets. A PLI
or FIR from the relay forces the next frame to be a keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import ipaddress
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urljoin, urlparse

import aiohttp
import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket
from av.video.frame import PictureType

from .scene import Scene

__all__ = ["StampedTrack", "publish_whip"]

log = logging.getLogger("drone_sim")
TIME_BASE = fractions.Fraction(1, 90000)


class H264Source:
    """Renders and encodes frames at a fixed rate; thread-confined to one worker."""

    def __init__(self, width: int, height: int, fps: float, bitrate_kbps: int) -> None:
        self.scene = Scene(width, height)
        self.fps = fps
        ctx: Any = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = fractions.Fraction(round(fps), 1)
        ctx.bit_rate = bitrate_kbps * 1000
        ctx.thread_count = 1
        gop = max(1, round(fps * 2))
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:bframes=0",
        }
        ctx.open()
        self.ctx = ctx
        self.frame_no = 0
        self.start = time.monotonic()

    def next_packets(self, keyframe: bool) -> list[Any]:
        n = self.frame_no
        self.frame_no += 1
        capture_ms = int(time.time() * 1000)
        img = self.scene.render(n, t=n / self.fps, capture_ms=capture_ms)
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts = int(n * 90000 / self.fps)
        frame.time_base = TIME_BASE
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        packets = list(self.ctx.encode(frame))
        for p in packets:
            p.time_base = TIME_BASE
        return packets


class StampedTrack(MediaStreamTrack):
    """A video track yielding pre-encoded H.264 packets at the scene's frame rate."""

    kind = "video"

    def __init__(self, width: int, height: int, fps: float, bitrate_kbps: int) -> None:
        super().__init__()
        self._source = H264Source(width, height, fps, bitrate_kbps)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="drone-encode")
        self._pending: list[Any] = []
        self._t0: float | None = None
        self._n = 0
        self.want_keyframe = True
        self.frames_sent = 0

    async def recv(self) -> Any:
        while not self._pending:
            if self._t0 is None:
                self._t0 = time.monotonic()
            due = self._t0 + self._n / self._source.fps
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # fell behind (CPU starved): skip ahead, do not burst
                self._t0 = time.monotonic() - self._n / self._source.fps
            self._n += 1
            key, self.want_keyframe = self.want_keyframe, False
            loop = asyncio.get_running_loop()
            self._pending = await loop.run_in_executor(
                self._executor, self._source.next_packets, key
            )
        self.frames_sent += 1
        return self._pending.pop(0)

    def stop(self) -> None:
        super().stop()
        self._executor.shutdown(wait=False)


def _loopback_only_if_local(url: str) -> None:
    """Offer only 127.0.0.1 when the relay is on this machine (aioice skips loopback)."""
    host = urlparse(url).hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if local:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


def _hook_keyframe_requests(sender: RTCRtpSender, track: StampedTrack) -> None:
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            track.want_keyframe = True
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


async def publish_once(
    url: str, token: str | None, track: StampedTrack, stop: asyncio.Event,
    ca_file: str | None = None,
) -> str:
    """One WHIP session: returns why it ended."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(track, direction="sendonly")
    caps = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in caps if c.mimeType == "video/H264"])
    _hook_keyframe_requests(transceiver.sender, track)
    ended = asyncio.Event()
    reason = "stopped"

    @pc.on("connectionstatechange")
    def on_state() -> None:
        nonlocal reason
        if pc.connectionState in ("failed", "closed"):
            reason = f"connection {pc.connectionState}"
            ended.set()

    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    location = None
    connector = None
    if ca_file:  # a relay whose certificate comes from the brigade's own CA
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca_file))
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(url, data=pc.localDescription.sdp, headers=headers) as resp:
                body = await resp.text()
                if resp.status != 201:
                    return f"relay answered {resp.status}: {body.strip()}"
                location = urljoin(url, resp.headers.get("Location", ""))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            log.info("publishing", extra={"url": url, "session": location})
            watch = asyncio.ensure_future(_watch(pc, transceiver.sender))
            waiters = [asyncio.ensure_future(ended.wait()), asyncio.ensure_future(stop.wait()), watch]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if watch.done() and not watch.cancelled():
                reason = watch.result()
            if stop.is_set():
                reason = "stopped"
        finally:
            if location:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with http.delete(location, headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=2)):
                        pass
            await pc.close()
    return reason


CONNECT_S = 10.0  # no connection this long after the answer: dial again
SILENT_S = 3.0  # no receiver report from the relay this long: it is gone (killed, unplugged)


async def _watch(pc: RTCPeerConnection, sender: RTCRtpSender) -> str:
    """Why a session that did not end by itself is dead: never connected, or the relay's
    receiver reports stopped (a killed relay sends no goodbye; ICE's own consent checks
    take some 30 s to notice)."""
    started = last_change = time.monotonic()
    last_seen: Any = None
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        if pc.connectionState != "connected":
            if now - started > CONNECT_S:
                return f"not connected after {CONNECT_S:.0f} s"
            last_change = now
            continue
        reports = [s.timestamp for s in (await sender.getStats()).values() if s.type == "remote-inbound-rtp"]
        seen = max(reports) if reports else None
        if seen != last_seen:
            last_seen, last_change = seen, now
        elif now - last_change > SILENT_S:
            return f"relay silent for {SILENT_S:.0f} s"


async def publish_whip(
    url: str | list[str],
    token: str | None = None,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30.0,
    bitrate_kbps: int = 2500,
    stop: asyncio.Event | None = None,
    retry: bool = True,
    ca_file: str | None = None,
) -> None:
    """Publish until ``stop`` is set; reconnect with backoff when the session ends. Given
    several URLs (a cluster's nodes), each new attempt dials the next one in turn."""
    urls = [url] if isinstance(url, str) else list(url)
    _loopback_only_if_local(urls[0])
    stop = stop or asyncio.Event()
    backoff = 0.5
    attempt = 0
    while not stop.is_set():
        url = urls[attempt % len(urls)]
        attempt += 1
        track = StampedTrack(size[0], size[1], fps, bitrate_kbps)
        started = time.monotonic()
        try:
            reason = await publish_once(url, token, track, stop, ca_file)
        except (aiohttp.ClientError, OSError) as exc:
            reason = f"cannot reach relay: {exc}"
        finally:
            track.stop()
        if stop.is_set() or not retry:
            return
        if time.monotonic() - started > 10:
            backoff = 0.5
        log.warning("publish ended, retrying", extra={"reason": reason, "in_s": backoff, "url": url})
        if attempt % len(urls):  # the next address at once; the backoff after the whole round
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(backoff):  # (not wait_for: on 3.11 it can lose a cancel)
                await stop.wait()
        backoff = min(backoff * 2, 10.0)
