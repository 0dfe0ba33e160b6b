"""RTMP push ingest (DJI apps' "custom RTMP"): many drones on one port, each to its stream.

Why pyrtmp: FFmpeg's RTMP listen mode (through PyAV) takes one client per listening
socket, so several drones could not share port 1935; pyrtmp is a small asyncio RTMP
server (handshake, chunk streams, AMF commands) that hands us each publisher's messages.
We import only its session and message modules (its ``rtmp.py`` configures root logging).

Per publisher (:mod:`.rtmp_video`): FLV video tags → Annex-B (H.264, or H.265 from
Enhanced RTMP or FLV codec id 12) → one decoder in a worker thread → frames into the
stream; a codec the relay cannot take is said (API, slate, log, metrics). Audio is
ignored. A token comes as ``?token=`` on the app or stream name, or as the stream key
itself (``rtmp://relay/live/<publish token>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from pyrtmp import StreamClosedException
from pyrtmp.messages.command import NCConnect, NCCreateStream, NSPublish
from pyrtmp.messages.factory import MessageFactory
from pyrtmp.messages.protocol_control import SetChunkSize, SetPeerBandwidth, WindowAcknowledgementSize
from pyrtmp.messages.user_control import StreamBegin
from pyrtmp.session_manager import SessionManager

from ..aio import within
from ..auth import authenticate
from ..config import STREAM_NAME, Config
from ..errors import RelayError
from ..limits import Limiter
from ..logs import Throttled
from ..registry import Registry
from .rtmp_chunks import ChunkReader, handshake
from .rtmp_video import MSG_AGGREGATE, MSG_AMF3_COMMAND, MSG_VIDEO, RtmpPublisher, aggregate_video

__all__ = ["RtmpIngest", "split_name"]

log = logging.getLogger("relay.rtmp")
# pyrtmp warns of every command it has no class for (releaseStream, FCPublish: what FFmpeg
# and OBS always send); they are routine.
logging.getLogger("pyrtmp.messages.command").setLevel(logging.ERROR)
BAD_INPUT_LOG_EVERY_S = 10.0  # a client that sends garbage costs one WARNING line this often


def split_name(name: str) -> tuple[str, dict[str, list[str]]]:
    base, _, query = name.partition("?")
    return base.strip("/"), parse_qs(query)


PARSED = frozenset({1, 2, 3, 4, 5, 6, 0x14})  # protocol control and (AMF0) commands: pyrtmp parses them
STREAM_ID = 1  # the message stream createStream hands out (pyrtmp's answer), published on


def _send(session: Any, chunk: Any) -> None:
    """One message with a full (type 0) chunk header. pyrtmp compresses each header against
    the last chunk written on *any* chunk stream, so a status on chunk stream 3 could go
    out with a type 1 header (no message stream id) and inherit stream 0 from the earlier
    `_result` there: GStreamer's rtmp2sink waits for it on the stream it published on and
    never sends media. Full headers are always valid (a few bytes more, a handful of times
    per connection)."""
    session.previous_chunk_for_writing = None
    session.write_chunk_to_stream(chunk)


def _keepalive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive: a drone whose LTE link vanished (no FIN) is noticed in ~25 s at worst."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class _Conn:
    """One RTMP connection's limits: publish deadline, bytes before authorisation, idleness."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.opened = time.monotonic()
        self.last_read = self.opened
        self.preauth_bytes = 0
        self.published = False
        self.closed_because = ""

    def close(self, because: str) -> None:
        if not self.closed_because:
            self.closed_because = because
        self.writer.close()


MAX_MESSAGE_BYTES = 8 << 20  # a 4K keyframe is ~1 MB; anything far larger is an attack


class _CappedSession(SessionManager):  # type: ignore[misc]
    """pyrtmp's session (its writer and message types) reading with our chunk reader, with
    limits at the raw-chunk level: a cap on whole messages would come too late (a 16 MB
    message sent before ``publish`` would already have been read), so each raw chunk is
    counted as it is read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn,
                 preauth_bytes: int, limiter: Limiter) -> None:
        super().__init__(reader=reader, writer=writer)
        self.conn = conn
        self.preauth_limit = preauth_bytes
        self.limiter = limiter

    async def handshake(self) -> None:
        await handshake(self.reader, self.writer)

    async def read_chunks_from_stream(self) -> AsyncIterator[Any]:
        """Whole messages (our chunk reader: :mod:`.rtmp_chunks`), each raw chunk counted."""
        reader = ChunkReader(self.reader, lambda: int(self.reader_chunk_size), self._count)
        async for chunk in reader.messages():
            yield chunk

    def _count(self, size: int, msg_length: int) -> None:
        conn = self.conn
        conn.last_read = time.monotonic()
        if not conn.published:
            conn.preauth_bytes += size + 12
            if conn.preauth_bytes > self.preauth_limit or msg_length > self.preauth_limit:
                self.limiter.refused["rtmp_preauth_bytes"] += 1
                raise RelayError(413, f"{max(conn.preauth_bytes, msg_length)} bytes before publish "
                                      f"(limits.rtmp_preauth_bytes = {self.preauth_limit})")
        elif msg_length > MAX_MESSAGE_BYTES:
            raise RelayError(413, f"RTMP message of {msg_length} bytes (limit {MAX_MESSAGE_BYTES})")


@dataclass
class _Client:
    """What one connection has told us so far."""

    remote: str
    conn: _Conn
    app: str = ""
    tc_query: dict[str, list[str]] = field(default_factory=dict)
    publisher: RtmpPublisher | None = None
    ignored: dict[int, int] = field(default_factory=dict)  # message type -> count (audio, data, ...)


class RtmpIngest:
    def __init__(self, registry: Registry, config: Config, limiter: Limiter | None = None) -> None:
        self.registry = registry
        self.config = config
        self.limiter = limiter or Limiter(config.limits)
        self.server: asyncio.Server | None = None
        self.publishers: dict[str, RtmpPublisher] = {}
        self.conns: set[_Conn] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self.bad_input = 0  # connections dropped for sending what is not RTMP
        self.unsupported_codec = 0  # publishers whose video codec the relay cannot take
        self._faults = Throttled(log, BAD_INPUT_LOG_EVERY_S)

    async def start(self) -> None:
        rc = self.config.rtmp
        self.server = await asyncio.start_server(self._client, rc.host, rc.port)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        log.info("RTMP listening", extra={"url": f"rtmp://{rc.host}:{rc.port}/{rc.app}/<stream>"})

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _watch(self) -> None:
        """Close connections that never publish, and publishers that went silent."""
        lim = self.config.limits
        while True:
            await asyncio.sleep(0.5)
            t = time.monotonic()
            for c in tuple(self.conns):
                if not c.published and t - c.opened > lim.rtmp_publish_within_s:
                    self.limiter.refused["rtmp_no_publish"] += 1
                    c.close(f"no publish within {lim.rtmp_publish_within_s:.0f} s")
                elif c.published and t - c.last_read > lim.rtmp_read_timeout_s:
                    c.close(f"nothing received for {lim.rtmp_read_timeout_s:.0f} s")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for c in tuple(self.conns):
            c.close("relay shutting down")
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await within(2, self.server.wait_closed())
        for pub in tuple(self.publishers.values()):
            pub.close()

    def _resolve(self, app: str, tc_query: dict[str, list[str]], name: str) -> tuple[str, str | None]:
        """(stream, token) from the publish name, the app's query, or a key that is a token."""
        stream, query = split_name(name)
        key_of: str | None = None
        for sc in self.config.streams:  # the key may be a stream's publish token
            if sc.publish_token and hmac.compare_digest(stream.encode(), sc.publish_token.encode()):
                key_of = key_of or sc.name  # every candidate compared, constant time each
        if key_of is not None:
            return key_of, stream
        if "/" in stream:  # rtmp://relay/live/<stream>/<token>
            stream, _, key = stream.partition("/")
            return stream, key
        tokens = query.get("token") or tc_query.get("token") or []
        return stream, tokens[0] if tokens else None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        lim = self.config.limits
        if len(self.conns) >= lim.rtmp_connections:
            self.limiter.refused["rtmp_connections"] += 1
            log.warning("RTMP connection refused: too many connections",
                        extra={"remote": remote, "limit": lim.rtmp_connections})
            writer.close()
            return
        conn = _Conn(writer)
        self.conns.add(conn)
        _keepalive(writer)
        session = _CappedSession(reader, writer, conn, lim.rtmp_preauth_bytes, self.limiter)
        client = _Client(remote, conn)
        reason = "publisher disconnected"
        try:
            await within(10, session.handshake())
            async for chunk in session.read_chunks_from_stream():
                await self._message(session, chunk, client)
        except RelayError as exc:
            reason = exc.reason
            self._client_fault(f"refused {exc.status}", "RTMP publish refused", remote=remote,
                               status=exc.status, reason=exc.reason)
        except (StreamClosedException, ConnectionError, asyncio.IncompleteReadError):
            pass
        except TimeoutError:
            reason = "handshake timed out"
        except Exception as exc:
            reason = self._not_rtmp(remote, exc)
        finally:
            self.conns.discard(conn)
            self._left(client, conn.closed_because or reason)
            writer.close()

    async def _message(self, session: _CappedSession, chunk: Any, client: _Client) -> None:
        """One message of a client: media to its publisher, commands answered. What the
        relay has no use for (audio, metadata in any of its variants, shared objects, types
        pyrtmp does not know) is passed over without being parsed: a quirk there must not
        cost the drone its stream."""
        kind = int(chunk.msg_type_id)
        if kind == MSG_VIDEO:
            if client.publisher is not None:
                client.publisher.video(bytes(chunk.payload), int(chunk.timestamp))
            return
        if kind == MSG_AGGREGATE:
            if client.publisher is not None:
                for body, ts in aggregate_video(bytes(chunk.payload), int(chunk.timestamp)):
                    client.publisher.video(body, ts)
            return
        if kind == MSG_AMF3_COMMAND and chunk.payload[:1] == b"\x00":  # AMF3 command: AMF0 after one byte
            chunk.payload, chunk.msg_type_id, chunk.msg_length = chunk.payload[1:], 0x14, chunk.msg_length - 1
        elif kind not in PARSED:
            client.ignored[kind] = client.ignored.get(kind, 0) + 1
            return
        message = MessageFactory.from_chunk(chunk)
        if isinstance(message, NCConnect):
            client.app, client.tc_query = split_name(str(message.command_object.get("app", "")))
            tc = str(message.command_object.get("tcUrl", ""))
            client.tc_query = client.tc_query or split_name(tc.rsplit("/", 1)[-1])[1]
            _send(session, WindowAcknowledgementSize(ack_window_size=5000000))
            _send(session, SetPeerBandwidth(ack_window_size=5000000, limit_type=2))
            _send(session, StreamBegin(stream_id=0))
            _send(session, SetChunkSize(chunk_size=8192))
            session.writer_chunk_size = 8192
            _send(session, message.create_response())
            await session.drain()
        elif isinstance(message, NCCreateStream):
            _send(session, message.create_response())  # the new stream's id: STREAM_ID
            await session.drain()
        elif isinstance(message, NSPublish):
            client.publisher = await self._publish(client.app, client.tc_query, str(message.publishing_name),
                                             client.remote, client.conn)
            client.conn.published = True
            _send(session, StreamBegin(stream_id=STREAM_ID))
            status = message.create_response()
            status.msg_stream_id = STREAM_ID  # on the stream it published on, always
            _send(session, status)
            await session.drain()
        elif isinstance(message, SetChunkSize):
            session.reader_chunk_size = message.chunk_size
        # (Audio and other messages: not needed.)

    def _not_rtmp(self, remote: str, exc: Exception) -> str:
        self.bad_input += 1
        self._client_fault("not rtmp", "RTMP connection dropped: not RTMP", remote=remote,
                           error=f"{type(exc).__name__}: {exc}"[:120])
        return f"protocol error: {type(exc).__name__}"

    def _client_fault(self, kind: str, msg: str, **extra: Any) -> None:
        """A client's fault: one WARNING line per kind per BAD_INPUT_LOG_EVERY_S (:class:`Throttled`)."""
        self._faults.warn(kind, msg, **extra)

    def _left(self, client: _Client, reason: str) -> None:
        publisher = client.publisher
        if publisher is not None:
            publisher.close()
            self.publishers.pop(publisher.session_id, None)
            publisher.entry.release(publisher.session_id)
            log.info("RTMP publisher left", extra={"stream": publisher.entry.name, "reason": reason})
        elif client.conn.closed_because:
            log.info("RTMP connection closed", extra={"remote": client.remote, "reason": reason})

    async def _publish(self, app: str, tc_query: dict[str, list[str]], name: str, remote: str,
                 conn: _Conn) -> RtmpPublisher:
        if app.strip("/") != self.config.rtmp.app:
            raise RelayError(404, f"unknown RTMP app {app!r} (use /{self.config.rtmp.app}/<stream>)")
        stream, token = self._resolve(app, tc_query, name)
        if not STREAM_NAME.match(stream):
            raise RelayError(400, f"bad stream name {stream!r}")
        decision = authenticate(self.config, "publish", stream, token)
        if not decision.allowed:
            raise RelayError(decision.status, decision.reason)
        entry = await self.registry.ready_to_claim(stream)
        session_id = f"rtmp-{secrets.token_urlsafe(8)}"
        # A frozen publisher (LTE drop, no FIN) is evicted when this one is authorised.
        entry.claim(session_id, "rtmp", remote,
                    evict=lambda _old: self._evict(_old))
        entry.source_info.set_codec("h264")
        pub = RtmpPublisher(entry, session_id, asyncio.get_running_loop())
        pub.conn = conn
        pub.on_unsupported = self._count_unsupported
        self.publishers[session_id] = pub
        log.info("RTMP publisher joined", extra={"stream": stream, "remote": remote})
        return pub

    def _count_unsupported(self) -> None:
        self.unsupported_codec += 1

    def _evict(self, session_id: str) -> None:
        old = self.publishers.get(session_id)
        if old is not None and old.conn is not None:
            old.conn.close("replaced by a new publisher")
