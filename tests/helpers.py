"""Test peers: a real aiortc WHEP viewer, a relay on loopback, the simulated drone."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from drone_sim.stamp import Stamp, decode
from relay.app import create_app
from relay.config import Config, parse
from relay.http import SERVICES, Services
from relay.webrtc.compat import receiver_timestamp_origin

SMALL = {
    "renditions": [
        {"name": "high", "height": 720, "bitrate_kbps": 2500},
        {"name": "low", "height": 180, "bitrate_kbps": 300},
    ],
    "webrtc": {"ice_addresses": ["127.0.0.1"]},
}


@dataclass
class RelayHandle:
    url: str
    services: Services
    runner: web.AppRunner

    @property
    def config(self) -> Config:
        return self.services.config

    def entry(self, name: str) -> Any:
        return self.services.registry.get(name)

    def viewers(self, name: str) -> dict[str, Any]:
        """The stream's viewers (session id -> ViewerInfo), as the egress keeps them."""
        return self.services.whep.viewers_of(name)

    async def streams(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/api/streams") as r:
            return {d["name"]: d for d in (await r.json())["streams"]}


async def start_relay(data: dict[str, Any] | None = None, host: str = "127.0.0.1",
                      env: dict[str, str] | None = None) -> RelayHandle:
    """A relay in this process. Its overload governor is off unless the test's config says
    otherwise: tests that count frames measure delivery, and on a machine loaded by the other
    lanes the governor would rightly halve their frame rate (tests/e2e/test_overload.py and
    tests/test_overload.py are the governor's)."""
    data = dict(data if data is not None else SMALL)
    data.setdefault("overload", {"enabled": False})
    config = parse(data, env=env or {})  # (``env``: what a config's ``*_env`` keys read)
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    ssl_context = None
    if config.tls_cert and config.tls_key:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    name = "localhost" if ssl_context else host
    return RelayHandle(f"{config.scheme}://{name}:{port}", app[SERVICES], runner)


@dataclass
class Seen:
    frames: int = 0
    stamps: list[tuple[Stamp, float]] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    first_at: float | None = None
    keyframes: int = 0
    relay_stamps: int = 0  # frames carrying the relay's painted stamp (bottom-right)
    rtp_capture: dict[int, int] = field(default_factory=dict)  # RTP timestamp -> drone stamp ms


class WhepViewer:
    """A WHEP viewer we wrote with aiortc: counts frames, reads the drone stamp."""

    def __init__(
        self, base: str, stream: str, rendition: str | None = None, token: str | None = None,
        read_stamps: bool = True, channel: bool = False, echo: bool = False,
    ) -> None:
        self.url = f"{base}/whep/{stream}" + (f"?rendition={rendition}" if rendition else "")
        self.token = token
        self.read_stamps = read_stamps
        self.seen = Seen()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self.channel: Any = None
        self.messages: list[dict[str, Any]] = []
        self._want_channel = channel
        self._want_echo = echo
        self.echo: Any = None  # the "echo" data channel, as the view page opens it
        self.echo_back = True  # answer what the relay sends on it, as the page does
        self._task: asyncio.Task[None] | None = None
        self.paused = False

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    async def start(self) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        if self._want_channel:
            self.channel = self.pc.createDataChannel("relay")

            @self.channel.on("message")
            def on_message(m: str) -> None:
                self.messages.append(json.loads(m))

        if self._want_echo:
            self.echo = self.pc.createDataChannel("echo", ordered=False, maxRetransmits=0)

            @self.echo.on("message")
            def on_echo(m: str) -> None:
                # (As the page: a short message is echoed; a longer one is news, JSON.)
                if self.echo_back and isinstance(m, str) and len(m) <= 16:
                    self.echo.send(m)

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
            self._task = asyncio.ensure_future(self._read(track, receiver))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as s, s.post(
            self.url, data=self.pc.localDescription.sdp,
            headers=self.headers({"Content-Type": "application/sdp"}),
        ) as r:
            body = await r.text()
            if r.status != 201:
                raise AssertionError(f"WHEP answered {r.status}: {body}")
            self.location = urljoin(self.url, r.headers["Location"])
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def _read(self, track: Any, receiver: Any) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if self.paused:
                    continue
                now = time.time()
                self.seen.frames += 1
                self.seen.keyframes += bool(frame.key_frame)
                self.seen.first_at = self.seen.first_at or now
                self.seen.sizes.add((frame.width, frame.height))
                if self.read_stamps:
                    gray = frame.to_ndarray(format="gray")
                    stamp = decode(gray)
                    if stamp is not None:
                        self.seen.stamps.append((stamp, now))
                        origin = receiver_timestamp_origin(receiver)
                        if origin is not None and frame.pts is not None:
                            self.seen.rtp_capture[(origin + frame.pts) & 0xFFFFFFFF] = stamp.capture_ms
                    if decode(gray, "relay") is not None:
                        self.seen.relay_stamps += 1

    async def wait_frames(self, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.seen.frames < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.seen.frames} of {n} frames in {timeout} s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        if self.location:
            with contextlib.suppress(aiohttp.ClientError):
                async with aiohttp.ClientSession() as s, s.delete(self.location, headers=self.headers()):
                    pass
        await self.pc.close()


class Drone:
    """The simulated drone, publishing over WHIP from this process."""

    # 640x360 unless a test is about the picture's size: a quarter of the encoding and
    # decoding of 720p, on a 2-core machine that runs several tests at once.
    def __init__(self, url: str | list[str], token: str | None = None, size: tuple[int, int] = (640, 360),
                 fps: float = 30.0, retry: bool = True, ca_file: str | None = None) -> None:
        from drone_sim.whip import publish_whip

        self.stop_event = asyncio.Event()
        self.task = asyncio.ensure_future(
            publish_whip(url, token, size, fps, 2500, self.stop_event, retry=retry, ca_file=ca_file)
        )

    async def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self.task, 5)


async def call(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """An HTTP request with a bearer token: (status, the JSON answer, or its one-line text)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body, headers=headers) as r:
        text = await r.text()
        return r.status, (json.loads(text) if r.content_type.endswith("json") else text.strip())


async def wait_for(cond: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Until ``cond()`` holds (a coroutine function's result is awaited)."""
    deadline = time.monotonic() + timeout
    while True:
        held = cond()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def codec_pair(codec: str, size: tuple[int, int], kbps: int = 500) -> tuple[Any, Any]:
    """A low-latency encoder (libx264 or libvpx) and the matching decoder, as in the field."""
    import fractions

    import av

    enc: Any = av.CodecContext.create(codec, "w")
    enc.width, enc.height = size
    enc.pix_fmt = "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.bit_rate = kbps * 1000
    enc.options = ({"preset": "ultrafast", "tune": "zerolatency"} if codec == "libx264"
                   else {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"})
    dec: Any = av.CodecContext.create("h264" if codec == "libx264" else "vp8", "r")
    return enc, dec


class SharedRelay:
    """A relay, the simulated drone and one viewer on an event loop of their own, in a
    thread: one set shared by a module's read-only tests (each test runs on its own loop,
    so a shared loop would stand still between them and the stream would be lost)."""

    def __init__(self, data: dict[str, Any] | None = None, rendition: str = "low") -> None:
        import threading

        from relay.webrtc import use_host_addresses

        use_host_addresses(["127.0.0.1"])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="shared-relay", daemon=True)
        self.thread.start()
        self.relay, self.viewer, self._drone = self._run(self._start(data, rendition), 30)

    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, data: dict[str, Any] | None, rendition: str) -> tuple[RelayHandle, Any, Drone]:
        relay = await start_relay(data)
        drone = Drone(f"{relay.url}/whip/drone1")
        await wait_for(lambda: relay.entry("drone1") is not None and relay.entry("drone1").frames_in > 5,
                       15, "drone1 to go live")
        viewer = WhepViewer(relay.url, "drone1", rendition=rendition, read_stamps=False)
        await viewer.start()
        await viewer.wait_frames(5)
        return relay, viewer, drone

    async def _stop(self) -> None:
        await self.viewer.close()
        await self._drone.stop()
        await self.relay.runner.cleanup()

    def close(self) -> None:
        try:
            self._run(self._stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def p256_cert(tmp_path: Path) -> tuple[str, str]:
    """A self-signed P-256 certificate and key (PEM) for FFmpeg's -cert_file/-key_file."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ffmpeg-whip")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    c, k = tmp_path / "cert.pem", tmp_path / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()))
    return str(c), str(k)


def _socket_on(proto: str, port: int, state: str | None = None) -> bool:
    """Whether a socket of this machine has local ``port`` in /proc/net/<proto>{,6}, in
    ``state`` (kernel hex, "0A" = LISTEN) where given."""
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for fields in (line.split() for line in lines):
            if (len(fields) > 3 and int(fields[1].rsplit(":", 1)[1], 16) == port
                    and (state is None or fields[3] == state)):
                return True
    return False


def tcp_listening(port: int) -> bool:
    """Whether a socket of this machine listens on TCP ``port`` (read from /proc/net/tcp*,
    without connecting: a one-shot listener such as FFmpeg's RTSP listen would take a probe
    connection for its client)."""
    return _socket_on("tcp", port, "0A")


def until_listening(port: int, proc: Any, what: str, timeout: float = 10.0) -> None:
    """Until the server ``proc`` (a Popen) listens on TCP ``port``; fails when it exits first."""
    deadline = time.monotonic() + timeout
    while not tcp_listening(port):
        assert proc.poll() is None, f"{what} exited ({proc.returncode}) before it listened"
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.05)


def udp_bound(port: int) -> bool:
    """Whether a socket of this machine is bound to UDP ``port`` (/proc/net/udp*): a source
    that listens for datagrams has opened its input."""
    return _socket_on("udp", port)
