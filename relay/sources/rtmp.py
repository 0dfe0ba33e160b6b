"""RTMP push ingest (DJI apps' "custom RTMP"): many drones on one port, each to its stream.

Why pyrtmp: FFmpeg's RTMP listen mode (through PyAV) takes one client per listening
socket, so several drones could not share port 1935; pyrtmp is a small asyncio RTMP
server (handshake, chunk streams, AMF commands) that hands us each publisher's messages.
We import only its session and message modules (its ``rtmp.py`` configures root logging).

Per publisher: FLV video tags → AVC sequence header (SPS/PPS) and AVCC NAL units →
Annex-B → one H.264 decoder in a worker thread → frames into the stream. Audio and
unknown codec ids are ignored (logged once). A token comes as ``?token=`` on the app or
stream name, or as the stream key itself (``rtmp://relay/live/<publish token>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import av
from pyrtmp import StreamClosedException
from pyrtmp.messages.audio import AudioMessage
from pyrtmp.messages.command import NCConnect, NCCreateStream, NSPublish
from pyrtmp.messages.factory import MessageFactory
from pyrtmp.messages.protocol_control import SetChunkSize, SetPeerBandwidth, WindowAcknowledgementSize
from pyrtmp.messages.user_control import StreamBegin
from pyrtmp.messages.video import VideoMessage
from pyrtmp.session_manager import SessionManager

from ..auth import authenticate
from ..config import STREAM_NAME, Config
from ..errors import RelayError
from ..media import Unit, now
from ..registry import Entry, Registry
from .h264 import AvcToAnnexB, FrameAssembler, PassthroughClock

__all__ = ["RtmpIngest", "split_name"]

log = logging.getLogger("relay.rtmp")


def split_name(name: str) -> tuple[str, dict[str, list[str]]]:
    base, _, query = name.partition("?")
    return base.strip("/"), parse_qs(query)


class _Publisher:
    def __init__(self, entry: Entry, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.entry = entry
        self.session_id = session_id
        self.loop = loop
        self.parser = AvcToAnnexB()
        self.frames = FrameAssembler(entry.name)
        self.clock = PassthroughClock(entry.name)
        self.decoder: Any = av.CodecContext.create("h264", "r")
        self.decoder.thread_type = "SLICE"
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"rtmp-{entry.name}")
        self.errors = 0
        self.pending = 0

    def video(self, body: bytes, timestamp: int) -> None:
        arrived = now()
        parsed = self.parser.feed(body)
        if parsed is None:
            return
        self.entry.touch()
        for data, key in self.frames.push(parsed[0], parsed[1], timestamp):
            self._frame(data, key, arrived)

    def _frame(self, data: bytes, key: bool, arrived: float) -> None:
        if self.entry.passthrough is not None:
            self.entry.passthrough.publish(
                self.clock.unit(data, key, None, self.parser.sps_pps, arrived))
        if not self.entry.wants_frames():
            return
        if self.pending > 30:  # decoder far behind: drop rather than queue without bound
            self.errors += 1
            return
        self.pending += 1
        self.executor.submit(self._decode, data, arrived)

    def _decode(self, data: bytes, arrived: float) -> None:
        try:
            frames = self.decoder.decode(av.Packet(data))
        except av.FFmpegError:
            self.errors += 1
            if self.errors in (1, 10, 100):
                log.warning("corrupt RTMP video skipped",
                            extra={"stream": self.entry.name, "errors": self.errors})
            frames = []
        finally:
            self.pending -= 1
        for frame in frames:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.entry.source.publish,
                                               Unit.decoded(frame, arrived))

    def close(self) -> None:
        self.executor.shutdown(wait=False)


class RtmpIngest:
    def __init__(self, registry: Registry, config: Config) -> None:
        self.registry = registry
        self.config = config
        self.server: asyncio.Server | None = None
        self.publishers: dict[str, _Publisher] = {}

    async def start(self) -> None:
        rc = self.config.rtmp
        self.server = await asyncio.start_server(self._client, rc.host, rc.port)
        log.info("RTMP listening", extra={"url": f"rtmp://{rc.host}:{rc.port}/{rc.app}/<stream>"})

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        for pub in tuple(self.publishers.values()):
            pub.close()

    def _resolve(self, app: str, tc_query: dict[str, list[str]], name: str) -> tuple[str, str | None]:
        """(stream, token) from the publish name, the app's query, or a key that is a token."""
        stream, query = split_name(name)
        for sc in self.config.streams:
            if sc.publish_token and stream == sc.publish_token:
                return sc.name, stream
        if "/" in stream:  # rtmp://relay/live/<stream>/<token>
            stream, _, key = stream.partition("/")
            return stream, key
        tokens = query.get("token") or tc_query.get("token") or []
        return stream, tokens[0] if tokens else None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = SessionManager(reader=reader, writer=writer)
        remote = str(writer.get_extra_info("peername"))
        app, tc_query = "", dict[str, list[str]]()
        publisher: _Publisher | None = None
        reason = "publisher disconnected"
        try:
            await asyncio.wait_for(session.handshake(), 10)
            async for chunk in session.read_chunks_from_stream():
                message = MessageFactory.from_chunk(chunk)
                if isinstance(message, VideoMessage):
                    if publisher is not None:
                        publisher.video(bytes(chunk.payload), int(chunk.timestamp))
                elif isinstance(message, AudioMessage):
                    continue
                elif isinstance(message, NCConnect):
                    app_full = str(message.command_object.get("app", ""))
                    app, tc_query = split_name(app_full)
                    tc = str(message.command_object.get("tcUrl", ""))
                    tc_query = tc_query or split_name(tc.rsplit("/", 1)[-1])[1]
                    session.write_chunk_to_stream(WindowAcknowledgementSize(ack_window_size=5000000))
                    session.write_chunk_to_stream(SetPeerBandwidth(ack_window_size=5000000, limit_type=2))
                    session.write_chunk_to_stream(StreamBegin(stream_id=0))
                    session.write_chunk_to_stream(SetChunkSize(chunk_size=8192))
                    session.writer_chunk_size = 8192
                    session.write_chunk_to_stream(message.create_response())
                    await session.drain()
                elif isinstance(message, NCCreateStream):
                    session.write_chunk_to_stream(message.create_response())
                    await session.drain()
                elif isinstance(message, NSPublish):
                    publisher = self._publish(app, tc_query, str(message.publishing_name), remote)
                    session.write_chunk_to_stream(StreamBegin(stream_id=1))
                    session.write_chunk_to_stream(message.create_response())
                    await session.drain()
                elif isinstance(message, SetChunkSize):
                    session.reader_chunk_size = message.chunk_size
        except RelayError as exc:
            reason = exc.reason
            log.warning("RTMP publish refused", extra={"remote": remote, "status": exc.status,
                                                       "reason": exc.reason})
        except (StreamClosedException, ConnectionError, asyncio.IncompleteReadError):
            pass
        except TimeoutError:
            reason = "handshake timed out"
        except Exception:
            reason = "protocol error"
            log.exception("RTMP session failed", extra={"remote": remote})
        finally:
            if publisher is not None:
                publisher.close()
                self.publishers.pop(publisher.session_id, None)
                publisher.entry.release(publisher.session_id)
                log.info("RTMP publisher left", extra={"stream": publisher.entry.name,
                                                       "reason": reason})
            writer.close()

    def _publish(self, app: str, tc_query: dict[str, list[str]], name: str, remote: str) -> _Publisher:
        if app.strip("/") != self.config.rtmp.app:
            raise RelayError(404, f"unknown RTMP app {app!r} (use /{self.config.rtmp.app}/<stream>)")
        stream, token = self._resolve(app, tc_query, name)
        if not STREAM_NAME.match(stream):
            raise RelayError(400, f"bad stream name {stream!r}")
        decision = authenticate(self.config, "publish", stream, token)
        if not decision.allowed:
            raise RelayError(decision.status, decision.reason)
        entry = self.registry.get_or_create(stream)
        session_id = f"rtmp-{secrets.token_urlsafe(8)}"
        entry.claim(session_id, "rtmp", remote)
        entry.source_codec = "h264"
        pub = _Publisher(entry, session_id, asyncio.get_running_loop())
        self.publishers[session_id] = pub
        log.info("RTMP publisher joined", extra={"stream": stream, "remote": remote})
        return pub
