"""Reading an RTMP connection: the handshake and the chunk stream (RTMP 1.0, 5.2 and 5.3),
byte-wise from the asyncio stream, into whole messages (pyrtmp's ``Chunk``, which its
message factory and our handlers take).

Written here because pyrtmp's reader skips rules real encoders rely on: a type-3 chunk
that starts a new message adds the previous timestamp delta (pyrtmp repeats the previous
timestamp: FFmpeg sends audio, and encoders with a constant frame interval send video, this
way, so every such message carried the same time); the extended timestamp is repeated on
type-3 chunks (pyrtmp does not read it there, and loses its place in the stream after a
timestamp past 4.6 hours). It reads bytes, not bits (pyrtmp parses each header bit-wise).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pyrtmp.messages import Chunk

__all__ = ["ChunkReader", "handshake"]

HANDSHAKE_BYTES = 1536
EXTENDED = 0xFFFFFF


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """C0 C1 in; S0 S1 S2 out (S2 echoes C1); C2 in (simple handshake, as pyrtmp and nginx-rtmp)."""
    c0c1 = await reader.readexactly(1 + HANDSHAKE_BYTES)
    s1 = bytes(8) + os.urandom(HANDSHAKE_BYTES - 8)  # time 0, zero, random
    s2 = c0c1[1:5] + c0c1[1:5] + c0c1[9:]  # time, time2 = C1's time, C1's random
    writer.write(bytes([c0c1[0]]) + s1 + s2)
    await writer.drain()
    await reader.readexactly(HANDSHAKE_BYTES)


@dataclass
class _Stream:
    """One chunk stream's last header, and the message being assembled on it."""

    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    payload: bytearray | None = None  # None: no message in progress


class ChunkReader:
    def __init__(self, reader: asyncio.StreamReader, chunk_size: Callable[[], int],
                 on_chunk: Callable[[int, int], None]) -> None:
        self.reader = reader
        self.chunk_size = chunk_size  # the peer's current chunk size (Set Chunk Size changes it)
        self.on_chunk = on_chunk  # (payload bytes, message length) of each chunk read: limits
        self.streams: dict[int, _Stream] = {}

    async def _int(self, n: int, order: str = "big") -> int:
        return int.from_bytes(await self.reader.readexactly(n), order)  # type: ignore[arg-type]

    async def messages(self) -> AsyncIterator[Chunk]:
        while True:
            chunk = await self._chunk()
            if chunk is not None:
                yield chunk

    async def _chunk(self) -> Chunk | None:
        first = (await self.reader.readexactly(1))[0]
        fmt, csid = first >> 6, first & 0x3F
        if csid == 0:
            csid = 64 + await self._int(1)
        elif csid == 1:
            csid = 64 + await self._int(2, "little")
        s = self.streams.get(csid)
        if s is None:
            if fmt != 0:
                raise ValueError(f"chunk stream {csid} starts with a type-{fmt} header")
            s = self.streams[csid] = _Stream()
        starting = s.payload is None or fmt != 3  # types 0-2 always begin a message
        if fmt == 0:
            ts = await self._int(3)
            s.length, s.type_id = await self._int(3), await self._int(1)
            s.stream_id = await self._int(4, "little")
        elif fmt in (1, 2):
            ts = await self._int(3)
            if fmt == 1:
                s.length, s.type_id = await self._int(3), await self._int(1)
        if fmt != 3:
            s.extended = ts == EXTENDED
            if s.extended:
                ts = await self._int(4)
            if fmt == 0:
                s.timestamp, s.delta = ts, 0
            elif starting:
                s.delta = ts
                s.timestamp = (s.timestamp + ts) & 0xFFFFFFFF
        else:
            if s.extended:
                await self._int(4)  # repeated on every chunk of an extended-timestamp message
            if starting:
                s.timestamp = (s.timestamp + s.delta) & 0xFFFFFFFF
        if starting:
            s.payload = bytearray()
        assert s.payload is not None
        n = min(self.chunk_size(), s.length - len(s.payload))
        self.on_chunk(n, s.length)
        s.payload += await self.reader.readexactly(n)
        if len(s.payload) < s.length:
            return None
        payload, s.payload = bytes(s.payload), None
        return Chunk(chunk_type=fmt, chunk_id=csid, timestamp=s.timestamp, msg_length=s.length,
                     msg_type_id=s.type_id, msg_stream_id=s.stream_id, payload=payload)
