"""A hostile, broken or impostor relay at the other end of the uplink (a WHEP source we pull
from, the centre we forward to): a real aiohttp server of the test's own on 127.0.0.1
answers with a 400 MB body, bytes that are not UTF-8, a Location on another host, a
backfill answer without its seq. Each is refused with a precise reason; nothing is buffered
past its bound; the pull's task keeps going; our token goes to no other host."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.cascade import WhepPull
from relay.cascade.peerhttp import Refused, post_offer, read_json
from relay.config import parse
from relay.registry import Registry
from relay.sources.upstream import Upstream


class Peer:
    """A relay that is not ours: each test sets what it answers."""

    def __init__(self) -> None:
        self.sent = 0  # body bytes it managed to write
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.answer: Any = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Authorization")))
        await request.read()
        return await self.answer(request)


@pytest.fixture
async def peers() -> AsyncIterator[list[tuple[Peer, str]]]:
    out, runners = [], []
    for _ in range(2):
        peer = Peer()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", peer.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        out.append((peer, f"http://127.0.0.1:{runner.addresses[0][1]}"))
    yield out
    for runner in runners:
        await runner.cleanup()


def flood(peer: Peer, total: int) -> Any:
    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=201, headers={"Content-Type": "application/sdp", "Location": "/s/1"})
        await resp.prepare(request)
        chunk = b"v=0\r\n" + b"a" * 65531
        try:
            while peer.sent < total:
                await resp.write(chunk)
                peer.sent += len(chunk)
        except (ConnectionResetError, RuntimeError):
            pass  # the client stopped reading: what we want
        return resp
    return answer


async def test_an_answer_over_its_bound_is_refused_as_it_arrives(peers: list[tuple[Peer, str]]) -> None:
    peer, url = peers[0]
    peer.answer = flood(peer, 400 << 20)
    sc = parse({"streams": {"x": {"source": f"whep+{url}/whep/x"}}}).streams[0]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(Refused, match="over 65536 bytes"):
            await post_offer(http, f"{url}/whep/x", "v=0\r\n", None, sc)
    await asyncio.sleep(0.2)
    # It could not push 400 MB into us: we stopped reading at 64 KB and hung up (what it got
    # out before noticing sat in the kernel's socket buffers, not in the relay).
    assert peer.sent < 32 << 20, peer.sent


async def test_not_utf8_not_json_and_no_seq_are_refused(peers: list[tuple[Peer, str]]) -> None:
    peer, url = peers[0]
    sc = parse({"streams": {"x": {"source": f"whep+{url}/whep/x"}}}).streams[0]

    async def bad_bytes(_: web.Request) -> web.Response:
        return web.Response(status=201, body=b"v=0\r\n\xff\xfe\xfd", headers={"Location": "/s/1"})
    peer.answer = bad_bytes
    async with aiohttp.ClientSession() as http:
        with pytest.raises(Refused, match="not UTF-8"):
            await post_offer(http, f"{url}/whep/x", "v=0\r\n", None, sc)

        async def no_seq(_: web.Request) -> web.Response:
            return web.json_response({"stream": "x"})
        peer.answer = no_seq
        async with http.get(url) as resp:
            doc = await read_json(resp)
        assert doc == {"stream": "x"}  # read; the backfill then refuses it (below, in its loop)


async def test_a_hostile_whep_source_neither_kills_the_pull_nor_gets_the_token_elsewhere(
        peers: list[tuple[Peer, str]]) -> None:
    (source, url), (other, other_url) = peers
    config = parse({"webrtc": {"ice_addresses": ["127.0.0.1"]},
                    "streams": {"x": {"source": f"whep+{url}/whep/x", "source_token": "pull-secret-123"}}})
    registry = Registry(config)
    registry.start()
    entry = registry.get("x")
    assert entry is not None
    pull = WhepPull(entry, config.streams[0], config)
    outcomes = []
    async with aiohttp.ClientSession() as http:
        for answer in (flood(source, 400 << 20), _raw(b"\xff\xfe not utf-8"), _garbage_sdp(other_url)):
            source.answer = answer
            outcomes.append((await pull.attempt(http), pull.last_error))
    assert [o for o, _ in outcomes] == ["refused", "refused", "refused"], outcomes
    assert "over 65536 bytes" in outcomes[0][1] and "not UTF-8" in outcomes[1][1]
    # The third answered 201 with a Location on another host and an SDP aiortc cannot take:
    # the session failed, and no DELETE (with our token) went to that host.
    assert other.requests == []
    assert all(auth in (None, "Bearer pull-secret-123") for _, _, auth in source.requests)
    assert entry.slot.holder is None  # nothing left claimed


def _raw(body: bytes) -> Any:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=201, body=body, headers={"Location": "/s/1"})
    return answer


def _garbage_sdp(elsewhere: str) -> Any:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=201, text="v=0\r\nnot an answer\r\n",
                            headers={"Location": f"{elsewhere}/whep/x/stolen"})
    return answer


def test_peer_channel_times_out_of_range_are_refused() -> None:
    """A pull's "relay" channel: capture times of 2^53-1 or 1, a pong with t1 = 1e308 or
    Infinity, telemetry stamped 1e300 — each refused; the times and offset stay sane."""
    config = parse({"streams": {"x": {}}})
    registry = Registry(config)
    registry.start()
    entry = registry.get("x")
    assert entry is not None

    class Channel:
        readyState = "open"

        def on(self, *_: Any) -> None:
            pass

    up = Upstream(entry, Channel(), "centre")
    now_ms = int(time.time() * 1000)
    up._on_message(json.dumps({"type": "frames", "f": [[1, now_ms, 2**53 - 1], [2, now_ms, 1]]}))
    up._on_message(json.dumps({"type": "frames", "f": [[3, now_ms, now_ms - 40, 1]]}))
    assert 1 not in up.times and 2 not in up.times and up.times[3] == (now_ms, now_ms - 40)
    for t1 in ("1e308", "Infinity", "-1e308", "1" + "0" * 400):
        up._on_message(f'{{"type":"pong","t0":{now_ms},"t1":{t1},"t2":{t1}}}')
    assert up.offset_ms == 0.0 and up.bad >= 5
    up._on_message('{"type":"telemetry","s":[{"t":1e300,"lat":52.5,"lon":13.4}]}')
    assert entry.telemetry.state == {} or entry.telemetry.state.get("lat") is None
