"""The RTMP chunk reader on hand-made byte streams: the header types, a type-3 chunk that
starts a message (adds the previous delta), extended timestamps (repeated on type-3 chunks),
chunk streams interleaved, messages split at the peer's chunk size."""

from __future__ import annotations

import asyncio

from relay.sources.rtmp_chunks import ChunkReader


def _basic(fmt: int, csid: int) -> bytes:
    return bytes([(fmt << 6) | csid])


def _u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


async def _read(data: bytes, chunk_size: int = 128, n: int = 10) -> list[tuple[int, int, int, bytes]]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    counted: list[int] = []
    cr = ChunkReader(reader, lambda: chunk_size, lambda size, _len: counted.append(size))
    out = []
    try:
        async for c in cr.messages():
            out.append((c.chunk_id, c.msg_type_id, c.timestamp, c.payload))
            if len(out) == n:
                break
    except asyncio.IncompleteReadError:
        pass
    assert sum(counted) == sum(len(p) for *_, p in out)
    return out


async def test_header_types_and_type3_deltas() -> None:
    data = (_basic(0, 4) + _u24(1000) + _u24(2) + bytes([8]) + (1).to_bytes(4, "little") + b"a1"
            + _basic(2, 4) + _u24(23) + b"a2"  # type 2: + 23 ms
            + _basic(3, 4) + b"a3"  # type 3 starting a message: + 23 again
            + _basic(3, 4) + b"a4")
    got = await _read(data)
    assert [(t, p) for _, _, t, p in got] == [(1000, b"a1"), (1023, b"a2"), (1046, b"a3"), (1069, b"a4")]


async def test_split_messages_interleaved_and_extended_timestamps() -> None:
    big = bytes(range(200))  # 200 bytes at chunk size 128: two chunks
    ext = 0x1000000 + 5  # past 0xFFFFFF ms: the extended field, repeated on the type-3 chunk
    data = (_basic(0, 6) + _u24(0xFFFFFF) + _u24(200) + bytes([9]) + (1).to_bytes(4, "little")
            + ext.to_bytes(4, "big") + big[:128]
            + _basic(0, 4) + _u24(7) + _u24(3) + bytes([8]) + (1).to_bytes(4, "little") + b"aud"  # interleaved
            + _basic(3, 6) + ext.to_bytes(4, "big") + big[128:]
            + _basic(1, 6) + _u24(33) + _u24(1) + bytes([9]) + b"v")  # next video: + 33
    got = await _read(data)
    assert got == [(4, 8, 7, b"aud"), (6, 9, ext, big), (6, 9, ext + 33, b"v")]
    # Two-byte and three-byte chunk stream ids.
    data = (bytes([0x00, 10]) + _u24(1) + _u24(1) + bytes([9]) + (1).to_bytes(4, "little") + b"x"
            + bytes([0x01, 0x2C, 0x01]) + _u24(2) + _u24(1) + bytes([9]) + (1).to_bytes(4, "little") + b"y")
    got = await _read(data)
    assert [(c, p) for c, _, _, p in got] == [(74, b"x"), (64 + 300, b"y")]
