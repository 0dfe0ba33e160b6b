"""Sources read with FFmpeg (PyAV) in a thread: RTSP pull, MPEG-TS over UDP, RTP H.264.

One thread per source opens the input, demuxes the video stream, decodes each packet once
and hands frames to the event loop. Corrupt or truncated packets are skipped (a decoder
error costs that packet, never the stream); when the input stops or cannot be opened the
source retries with backoff, and the stream shows "signal lost" meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import av

from ..config import StreamConfig, redact_url
from ..errors import RelayError
from ..media import Unit
from ..osthread import name_os_thread
from ..registry import Entry
from ..telemetry import TelemetryError, clean_update
from .decodable import Decodability
from .feed import Feed, FeedReader
from .gate import TcpGate, UdpGate, free_tcp_port, free_udp_port
from .h264 import PassthroughClock, annexb_config
from .klv import KlvError, fields_from_klv

__all__ = ["AvPullSource", "input_for"]

log = logging.getLogger("relay.source")

OPEN_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 2.0
MAX_BACKOFF_S = 1.0
LISTEN_S = 5  # an RTSP listener re-arms this often (FFmpeg needs a finite listen_timeout)


def _rtp_sdp(host: str, port: int, codec: str = "h264") -> str:
    fmt = "H265/90000\r\n" if codec == "h265" else "H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
    return (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=drone\r\n"
        f"c=IN IP4 {host}\r\nt=0 0\r\nm=video {port} RTP/AVP 96\r\n"
        f"a=rtpmap:96 {fmt}"
    )


LOW_DELAY = {"analyzeduration": "500000", "probesize": "500000", "fflags": "discardcorrupt"}


def input_for(sc: StreamConfig, gate_port: int = 0) -> tuple[str, str | None, dict[str, str], str]:
    """(url or file, format, options, kind) for FFmpeg, from a stream's ``source``.

    UDP and RTP inputs read from ``127.0.0.1:gate_port``, where the :class:`UdpGate` that
    owns the configured port forwards the allowed sender's datagrams.
    """
    assert sc.source is not None
    u = urlsplit(sc.source)
    low = dict(LOW_DELAY)
    if u.scheme in ("rtsp", "rtsps"):
        if sc.rtsp_listen:  # the drone pushes to us (ANNOUNCE/RECORD)
            opts = {**low, "rtsp_flags": "listen", "listen_timeout": str(int(LISTEN_S)),
                    "rtsp_transport": sc.rtsp_transport}
            url = sc.source
            if gate_port:  # FFmpeg listens on loopback; the TcpGate owns the public port
                url = u._replace(netloc=f"127.0.0.1:{gate_port}").geturl()
            return url, "rtsp", opts, "rtsp-push"
        opts = {**low, "rtsp_transport": sc.rtsp_transport, "timeout": str(int(READ_TIMEOUT_S * 1e6))}
        return sc.source, "rtsp", opts, "rtsp"
    host, port = u.hostname or "0.0.0.0", u.port or 5600
    if gate_port:
        host, port = "127.0.0.1", gate_port
    if u.scheme == "udp":
        url = f"udp://{host}:{port}?overrun_nonfatal=1&fifo_size=50000&timeout={int(READ_TIMEOUT_S * 1e6)}"
        return url, "mpegts", low, "udp"
    # rtp://: FFmpeg needs an SDP to know what payload type 96 is (streams.x.rtp_codec).
    fd, path = tempfile.mkstemp(prefix=f"relay-{sc.name}-", suffix=".sdp")
    with os.fdopen(fd, "w") as f:
        f.write(_rtp_sdp("0.0.0.0" if host in ("0.0.0.0", "") else host, port, sc.rtp_codec))
    opts = {**low, "protocol_whitelist": "file,udp,rtp", "reorder_queue_size": "0"}
    return path, "sdp", opts, "rtp"


class AvPullSource:
    def __init__(self, entry: Entry, sc: StreamConfig, loop: asyncio.AbstractEventLoop,
                 feed: Feed | None = None) -> None:
        self.entry = entry
        self.sc = sc
        self.loop = loop
        self.feed = feed  # SRT: MPEG-TS from an in-process ingest, publisher by publisher
        scheme = urlsplit(sc.source or "").scheme if feed is None else "srt"
        self.gate: UdpGate | None = None
        self.tcp_gate: TcpGate | None = None
        gate_port = free_udp_port(pair=scheme == "rtp") if scheme in ("udp", "rtp") else 0
        if sc.rtsp_listen and sc.allow_senders:
            gate_port = free_tcp_port()
            self.tcp_gate = TcpGate(sc.name, sc.allow_senders, gate_port)
        self.url: str
        self.format: str | None
        if feed is not None:
            self.url, self.format, self.options, self.kind = "", "mpegts", dict(LOW_DELAY), "srt"
        else:
            self.url, self.format, self.options, self.kind = input_for(sc, gate_port)
        self.shown = redact_url(sc.source or "")  # never the credentials, in the API or logs
        if gate_port and self.tcp_gate is None:
            self.gate = UdpGate(sc.name, sc.allow_senders, ("127.0.0.1", gate_port),
                                takeover_after_s=entry.liveness.lost_after_s)
        self.session_id = f"{self.kind}-{sc.name}"
        self._last_claim_try = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"src-{sc.name}", daemon=True)
        self.clock = PassthroughClock(sc.name)
        entry.slot.announce_packets()  # viewers may join "source" before the first packet
        self._logged_busy = False
        self.decode_errors = 0
        self.decodable = Decodability()
        self.packets = 0
        self.connects = 0
        self.failures = 0

    async def start(self) -> None:
        u = urlsplit(self.sc.source or "")
        if self.gate is not None:
            await self.gate.start(u.hostname or "0.0.0.0", u.port or 5600)
        if self.tcp_gate is not None:
            await self.tcp_gate.start(u.hostname or "0.0.0.0", u.port or 554)
        self._thread.start()

    async def stop(self) -> None:
        for gate in (self.gate, self.tcp_gate):
            if gate is not None:
                gate.close()
        self._stop.set()
        if self.feed is not None:
            self.feed.close()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        if self.kind == "rtp":
            with contextlib.suppress(OSError):
                os.unlink(self.url)

    # ------------------------------------------------------------------ thread

    def _call(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self.loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        name_os_thread()
        backoff = 0.5
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._read_once()
            except Exception as exc:
                if self.kind == "rtsp-push" and "timed out" in str(exc).lower():
                    backoff = 0.0  # nobody pushed yet: listen again at once
                elif self.kind == "rtsp-push" and time.monotonic() - started > 1.0:
                    backoff = 0.0  # a publisher came and went: listen again at once for its return
                elif not self._stop.is_set():
                    self.failures += 1
                    if self.failures == 1 or self.failures % 40 == 0:  # quiet while it stays down
                        log.warning("source unavailable, retrying",
                                    extra={"stream": self.sc.name, "kind": self.kind,
                                           "error": self._clean(str(exc))[:200],
                                           "attempts": self.failures})
            finally:
                self._call(self.entry.release, self.session_id)
            if self.feed is not None or (self.kind == "rtsp-push" and time.monotonic() - started > 1.0):
                backoff = 0.0  # (a publisher that left without an error, likewise; SRT: the
                # next publisher's bytes wait in the feed, its reader blocks until they come)
            elif time.monotonic() - started > 10:
                backoff = 0.5
            self._stop.wait(backoff)
            # Capped low: a camera that comes back must be live again within ~2 s, and a
            # refused connection to a camera that is down costs nothing.
            backoff = min(max(backoff, 0.25) * 2, MAX_BACKOFF_S)

    def _read_once(self) -> None:
        open_s = LISTEN_S + 2 if self.kind == "rtsp-push" else OPEN_TIMEOUT_S
        container: Any
        if self.feed is not None:
            container = av.open(FeedReader(self.feed, self._stop), format=self.format, options=self.options)
        else:
            container = av.open(self.url, format=self.format, options=self.options,
                                timeout=(open_s, READ_TIMEOUT_S))
        try:
            video = next((s for s in container.streams if s.type == "video"), None)
            if video is None:
                raise RuntimeError("input has no video stream")
            video.thread_type = "SLICE"  # frame threading would add a frame of delay
            self.connects += 1
            self.failures = 0
            self.decodable = Decodability()  # a new connection: judged afresh
            ctx = video.codec_context
            self._call(self._opened, ctx.width, ctx.height, ctx.name)
            log.info("source connected", extra={"stream": self.sc.name, "kind": self.kind,
                                                "codec": video.codec_context.name})
            codec = video.codec_context.name
            config = annexb_config(video.codec_context.extradata) if codec == "h264" else b""
            entry = self.entry
            # MISB ST 0601 KLV beside the video (MPEG-TS, RTSP): the drone's telemetry.
            klv = next((s for s in container.streams if s.type == "data"
                        and getattr(s, "name", "") in ("klv", "smpte_klv")), None)
            for packet in container.demux(*(s for s in (video, klv) if s is not None)):
                if self._stop.is_set():
                    return
                if packet.size == 0:
                    continue
                if klv is not None and packet.stream is klv:
                    self._klv(bytes(packet))
                    continue
                arrived = time.monotonic()
                self.packets += 1
                decoding = entry.wants_frames()
                if not self.decodable.ok(decoding):
                    # Nothing decodable for a second: not a live picture (lost until it is).
                    self._decode(packet, arrived, codec)
                    continue
                if entry.passthrough is not None and codec == "h264":
                    seconds = float(packet.pts * packet.time_base) if packet.pts is not None else None
                    unit = self.clock.unit(bytes(packet), bool(packet.is_keyframe), seconds, config,
                                           arrived, packet.dts is not None and packet.dts != packet.pts)
                    self._call(self._passthrough, unit)
                else:
                    self._call(self._touch)
                if decoding:
                    self._decode(packet, arrived, codec)
        finally:
            container.close()

    def _decode(self, packet: Any, arrived: float, codec: str) -> None:
        try:
            frames = packet.decode()
            self.decodable.decoded(len(frames), error=False)
        except av.FFmpegError as exc:
            self.decodable.decoded(0, error=True)
            self.decode_errors += 1
            if self.decode_errors in (1, 10, 100) or self.decode_errors % 1000 == 0:
                log.warning("corrupt packet skipped",
                            extra={"stream": self.sc.name, "errors": self.decode_errors,
                                   "error": str(exc)[:200]})
            return
        for frame in frames:
            self._call(self._publish, Unit.decoded(frame, arrived), codec)

    def _klv(self, data: bytes) -> None:
        """Decode in this thread; the loop only merges the fields."""
        try:
            t, raw = fields_from_klv(data)
            fields = clean_update(raw)
        except (KlvError, TelemetryError):
            self._call(self.entry.telemetry.bad, "klv")
            return
        self._call(self._telemetry, t, fields)

    # ------------------------------------------------------------------ loop side

    def _telemetry(self, t: float, fields: dict[str, float]) -> None:
        if self._owns():
            self.entry.telemetry.update("klv", fields, t=t)

    def _clean(self, text: str) -> str:
        return text.replace(self.sc.source or "\0", self.shown)

    def _opened(self, width: int, height: int, codec: str) -> None:
        """The input is open (an RTP session's SDP, a listener, a probed stream): its size is
        known now, not only once frames are decoded (passthrough-only streams decode none).
        The stream is claimed at the first packet, not here: an idle UDP/RTP input is no
        publisher."""
        if self.entry.publisher in (None, self.session_id):
            self.entry.source_info.set_size(width, height)
            self.entry.source_info.set_codec(codec)  # H.265: its source rung is not offered

    def _owns(self) -> bool:
        """Whether this source is the stream's publisher; claims it when it may.

        Another publisher whose media flows keeps the stream (this source's frames are
        dropped); one that went silent is taken over — the rule every ingest follows.
        """
        e = self.entry
        if e.publisher == self.session_id:
            return True
        t = time.monotonic()
        if t - self._last_claim_try < 0.5:
            return False
        self._last_claim_try = t
        try:
            e.claim(self.session_id, self.kind, self.shown)
        except RelayError:
            if e.publisher is not None and not self._logged_busy:
                self._logged_busy = True
                log.warning("source ignored: the stream has another live publisher",
                            extra={"stream": self.sc.name, "publisher": e.publisher_kind})
            return False
        self._logged_busy = False
        return True

    def _passthrough(self, unit: Unit) -> None:
        if not self._owns():
            return
        self.entry.touch()
        if self.entry.passthrough is not None:
            self.entry.passthrough.publish(unit)

    def _touch(self) -> None:
        if self._owns():
            self.entry.touch()

    def _publish(self, unit: Unit, codec: str) -> None:
        if not self._owns():
            return
        self.entry.source_info.set_codec(codec)
        self.entry.source.publish(unit)
