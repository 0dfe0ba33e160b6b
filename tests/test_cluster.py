"""The cluster's directory against a real Redis (Debian's redis-server on 127.0.0.1, started
and stopped by the test): claims are taken once, refreshed, released, given up when Redis
stops answering (before they lapse there) and taken back when it returns; records of nodes
that stop refreshing vanish; garbage in Redis is not believed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from relay.aio import within
from relay.cluster import Directory
from relay.config import ConfigError, parse
from relay.sources.gate import free_tcp_port
from tests.helpers import until_listening

REFRESH, TTL = 0.2, 0.6


class Redis:
    def __init__(self) -> None:
        assert shutil.which("redis-server"), "redis-server is missing: scripts/setup.sh --dev installs it"
        self.port = free_tcp_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        listen = list(extra) or ["--port", str(self.port)]
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", *listen, "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until_listening(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, check=True).stdout.strip()


@pytest.fixture
def redis() -> Iterator[Redis]:
    r = Redis()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def config(server: Redis, name: str, **cluster: Any) -> Any:
    return parse({"server": {"name": name}, "cluster": {
        "redis": f"redis://127.0.0.1:{server.port}/0", "url": f"http://{name}.example:8080",
        "refresh_s": REFRESH, "ttl_s": TTL, **cluster}})


@contextlib.asynccontextmanager
async def node(server: Redis, name: str, wanted: set[str],
               **cluster: Any) -> AsyncIterator[tuple[Directory, list[tuple[str, str]]]]:
    d = Directory(config(server, name, **cluster))
    lost: list[tuple[str, str]] = []
    d.wanted = lambda: set(wanted)
    d.on_lost = lambda stream, owner: lost.append((stream, owner))
    task = asyncio.ensure_future(d.run())
    try:
        yield d, lost
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await d.release_all()


async def until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_one_owner_per_stream_and_release_hands_it_over(redis: Redis) -> None:
    x_wants: set[str] = {"drone1"}
    async with node(redis, "x", x_wants) as (x, _):
        await until(lambda: "drone1" in x.holding)
        async with node(redis, "y", {"drone1"}) as (y, y_lost):
            await until(lambda: y.refreshes > 2)
            assert "drone1" in x.holding and "drone1" not in y.holding
            assert redis.cli("GET", "relay:claim:drone1") == "x"
            assert ("drone1", "x") in y_lost  # told whose it is: its publisher here must go
            owner = y.owner("drone1")
            assert owner is not None and owner["url"] == "http://x.example:8080"
            x_wants.clear()  # x's publisher leaves: released at once, y takes it on its next refresh
            await until(lambda: "drone1" in y.holding, 3 * REFRESH + 1)
            assert redis.cli("GET", "relay:claim:drone1") == "y" and "drone1" not in x.holding


async def test_a_node_that_stops_refreshing_is_gone_within_its_ttl(redis: Redis) -> None:
    async with node(redis, "y", set()) as (y, _):
        async with node(redis, "x", {"drone1"}) as (x, _):
            await until(lambda: "x" in y.nodes and y.owner("drone1") is not None)
            task_gone = time.monotonic()
            # (the context's exit deletes x's record at once; a killed node's expires)
            redis.cli("PERSIST", "relay:node:x")
            redis.cli("PEXPIRE", "relay:node:x", str(int(TTL * 1000)))
        await until(lambda: "x" not in y.nodes, TTL + 3 * REFRESH)
        assert time.monotonic() - task_gone <= TTL + 3 * REFRESH + 0.5
        assert y.owner("drone1") is None


async def test_claims_are_given_up_before_they_lapse_and_taken_back(redis: Redis,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "relay.cluster")
    async with node(redis, "x", {"drone1"}) as (x, _):
        await until(lambda: "drone1" in x.holding)
        last_ok = x.last_ok
        redis.stop()
        await until(lambda: not x.holding, TTL + 1)
        gave_up = time.monotonic() - last_ok
        assert gave_up < TTL, gave_up  # before Redis would let another node take it
        await asyncio.sleep(4 * REFRESH)
        said = [r.getMessage() for r in caplog.records]
        assert said.count("cluster directory unreachable: serving this node's own streams and viewers") == 1, said
        assert x.nodes == {} and x.claims == {}
        with pytest.raises(Exception, match="unreachable"):
            x.require("share links")
        redis.start()  # empty, as a restarted Redis without persistence
        await until(lambda: "drone1" in x.holding, 3)
        assert x.up and redis.cli("GET", "relay:claim:drone1") == "x"
        assert any("rejoined" in r.getMessage() for r in caplog.records)


async def test_garbage_in_redis_is_not_believed(redis: Redis) -> None:
    redis.cli("SET", "relay:node:evil", "<script>not json")
    redis.cli("SET", "relay:node:list", "[1, 2]")
    redis.cli("SET", "relay:claim:drone7", "ghost")  # a claim by a node that has no record
    async with node(redis, "y", set()) as (y, _):
        await until(lambda: y.refreshes > 1)
        assert set(y.nodes) == {"y"}
        assert y.claims.get("drone7") == "ghost" and y.owner("drone7") is None


async def test_redis_over_tls_with_a_password(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """rediss:// with the brigade's CA and a password (as configs/cluster-node.example.toml);
    a wrong password is one warning line, and nothing is claimed."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    redis = Redis()
    redis.start("--port", "0", "--tls-port", str(redis.port), "--tls-cert-file", str(tmp_path / "cert.pem"),
                "--tls-key-file", str(tmp_path / "key.pem"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
                "--tls-auth-clients", "no", "--requirepass", "brigade-redis-pw")
    caplog.set_level(logging.WARNING, "relay.cluster")
    try:
        url = f"rediss://:brigade-redis-pw@localhost:{redis.port}/0"
        async with node(redis, "x", {"drone1"}, redis=url, redis_ca=str(tmp_path / "ca.pem")) as (x, _):
            await until(lambda: "drone1" in x.holding)
            assert x.up and "brigade-redis-pw" not in x.where  # never in a log line
        wrong = url.replace("brigade-redis-pw", "guessed-password")
        async with node(redis, "y", {"drone1"}, redis=wrong, redis_ca=str(tmp_path / "ca.pem")) as (y, _):
            await asyncio.sleep(5 * REFRESH)
            assert not y.up and not y.holding and y.failures >= 3
        said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(said) == 1, said
        assert all("guessed-password" not in str(r.__dict__) for r in caplog.records)
    finally:
        redis.stop()


@pytest.mark.parametrize(("cluster", "key"), [
    ({"redis": "redis://127.0.0.1:6379"}, "cluster.url"),
    ({"redis": "http://127.0.0.1:6379", "url": "http://a:8080"}, "cluster.redis"),
    ({"redis": "redis://127.0.0.1:6379", "url": "http://a:8080/whep"}, "cluster.url"),
    ({"redis": "redis://127.0.0.1:6379", "url": "http://a:8080", "refresh_s": 2, "ttl_s": 3}, "cluster.ttl_s"),
])
def test_cluster_config_errors_name_the_key(cluster: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"cluster": cluster})
    assert err.value.key == key


def test_a_cluster_with_auth_needs_the_shared_signing_secret() -> None:
    with pytest.raises(ConfigError) as err:
        parse({"auth": {"enabled": True, "publish_token": "p" * 12, "view_token": "v" * 12},
               "cluster": {"redis": "redis://127.0.0.1:6379", "url": "http://a:8080"}})
    assert err.value.key == "auth.jwt_secret"


@pytest.mark.parametrize(("url", "origin"), [
    ("https://relay-2.brigade.example:8443", "https://relay-2.brigade.example:8443"),
    ("http://10.0.0.12:8480/whep/x?y", "http://10.0.0.12:8480"),
    ("http://[fd00::12]:8480", "http://[fd00::12]:8480"),
    ("https://evil.example 'unsafe-inline' 'unsafe-eval'", None),
    ("https://evil.example;script-src *", None),
    ("javascript:alert(1)", None),
    ("data:text/html,x", None),
    (["not", "text"], None),
    ("https://a.example:99999", None),
])
def test_node_origins_for_the_pages_policy_are_rebuilt_from_parsed_urls(url: Any, origin: str | None) -> None:
    """A node's URL comes from its record in Redis and goes into every page's
    Content-Security-Policy: only a plain scheme://host:port gets in, never a policy token."""
    from relay.wire import origin as node_origin

    assert node_origin(url) == origin


# ---- whoever can write Redis: what they get (nothing) and what they cannot break


def _record(name: str, url: str, **extra: Any) -> str:
    import json

    return json.dumps({"name": name, "url": url, "t": time.time(), "load": {}, "streams": [],
                       "share_sessions": {}, **extra})


async def test_a_forged_node_url_is_believed_only_as_an_allowed_origin(redis: Redis) -> None:
    """A record pointing at another host: with cluster.peers it is not believed at all; its
    URL is never passed on as written (credentials, paths, other schemes dropped)."""
    redis.cli("SET", "relay:node:evil", _record("evil", "https://attacker.example:443/x?y"))
    redis.cli("SET", "relay:node:mallory", _record("mallory", "javascript:alert(1)//"))
    redis.cli("SET", "relay:node:z", _record("z", "http://user:pw@z.example:8080/path"))
    async with node(redis, "y", set(), peers=["http://z.example:8080"]) as (y, _):
        await until(lambda: y.refreshes > 1)
        assert set(y.nodes) == {"y", "z"}, y.nodes
        assert y.nodes["z"]["url"] == "http://z.example:8080"
        assert y.refused >= 2
    async with node(redis, "w", set()) as (w, _):  # no allow-list: origins only
        await until(lambda: w.refreshes > 1)
        assert w.nodes["evil"]["url"] == "https://attacker.example:443"
        assert "mallory" not in w.nodes


async def test_a_claim_in_the_name_of_no_node_does_not_end_a_live_publisher(redis: Redis) -> None:
    async with node(redis, "a", {"drone1"}) as (a, lost):
        await until(lambda: "drone1" in a.holding)
        redis.cli("SET", "relay:claim:drone1", "nosuchnode", "PX", "60000")
        refreshes = a.refreshes
        await until(lambda: a.refreshes > refreshes + 2)
        assert "drone1" in a.holding and lost == []
        assert redis.cli("GET", "relay:claim:drone1") == "a"


async def test_oversized_and_ill_typed_records_are_not_read(redis: Redis) -> None:
    """32 MB of record is never fetched (its size is asked first); streams of the wrong
    type, non-finite numbers and bad states refuse the record, not the node."""
    big = _record("big", "http://big.example:8080", streams=[{"name": f"s{i}", "state": "live"}
                                                             for i in range(5)], pad="x" * (32 << 20))
    subprocess.run(["redis-cli", "-p", str(redis.port), "-x", "SET", "relay:node:big"], input=big.encode(),
                   check=True, stdout=subprocess.DEVNULL)
    for i, bad in enumerate([{"streams": [1, 2]}, {"streams": "abc"}, {"streams": None},
                             {"t": float("inf")}, {"streams": [{"name": "s", "state": "??"}]},
                             {"streams": [{"name": "s", "state": "live", "fps": 1e308}]},
                             {"streams": [{"name": "s", "state": "live", "title": "\ud800"}]}]):
        raw = _record(f"n{i}", f"http://n{i}.example:8080", **bad).replace("Infinity", "1e999")
        redis.cli("SET", f"relay:node:n{i}", raw)
    async with node(redis, "y", set()) as (y, _):
        await until(lambda: y.refreshes > 1)
        assert set(y.nodes) == {"y"}, sorted(y.nodes)
        assert y.refused >= 8


async def test_hostile_marker_events_are_refused_and_the_listener_goes_on(redis: Redis) -> None:
    """Events with times past any float, labels no XML can hold, Infinity: each is refused
    (and said, throttled); a genuine change right after them still arrives."""
    import json

    from relay.cluster.book import SharedBook
    from relay.markers import MarkerBook, kml
    from relay.share import ShareBook

    def marker(i: int, **bad: Any) -> dict[str, Any]:
        m = {"id": f"m{i}", "kind": "person", "label": f"roof {i}", "lat": 52.5, "lon": 13.4, "by": "x",
             "placed": time.time(), "updated": time.time(), "stream": "", "changed_by": ""}
        return {**m, **bad}

    hostile = [
        '{"op": "add", "m": ' + json.dumps(marker(1)) + ', "t": 1e300, "node": "x"}',
        '{"op": "add", "m": ' + json.dumps(marker(2)) + ', "t": 1' + "0" * 400 + ', "node": "x"}',
        '{"op": "add", "m": ' + json.dumps(marker(3)) + ', "t": 1e11, "node": "x"}',
        json.dumps({"op": "add", "m": marker(4, placed=float("inf")), "t": time.time(), "node": "x"}),
        json.dumps({"op": "add", "m": marker(5, label="\ud800"), "t": time.time(), "node": "x"}),
        json.dumps({"op": "add", "m": marker(6, label="a\ufffeb"), "t": time.time(), "node": "x"}),
    ]
    def subscribers() -> int:
        return int(redis.cli("PUBSUB", "NUMSUB", "relay:events").split()[-1])

    # Twice: as events heard live, and as records already in the book when a node (re)joins
    # and reads them all (a hostile record there killed the listener before it heard anything).
    async def attempt(already_there: bool) -> None:
        redis.cli("DEL", "relay:markers")
        if already_there:
            for i, raw in enumerate(hostile, start=1):
                redis.cli("HSET", "relay:markers", f"m{i}", raw)
        async with node(redis, "y", set()) as (d, _):
            tasks: list[Any] = []
            book = SharedBook(config(redis, "y"), d, ShareBook(), lambda aw: tasks.append(asyncio.ensure_future(aw)))
            markers = MarkerBook(None, 50)
            book.share_markers(markers)
            listener = asyncio.ensure_future(book.listen())
            try:
                await until(lambda: d.refreshes > 1 and subscribers() >= 1)
                for i, raw in enumerate(hostile, start=1):
                    redis.cli("HSET", "relay:markers", f"m{i}", raw)
                    redis.cli("PUBLISH", "relay:events", json.dumps({"type": "marker", "id": f"m{i}", "node": "x"}))
                good = json.dumps({"op": "add", "m": marker(9), "t": time.time(), "node": "x"})
                redis.cli("HSET", "relay:markers", "m9", good)
                redis.cli("PUBLISH", "relay:events", json.dumps({"type": "marker", "id": "m9", "node": "x"}))
                await until(lambda: "m9" in markers.markers)
                assert set(markers.markers) == {"m9"}, sorted(markers.markers)
                assert not listener.done()
                import xml.etree.ElementTree as ET

                doc = kml([m.doc() for m in markers.markers.values()], "x")
                assert "roof 9" in ET.tostring(ET.fromstring(doc), encoding="unicode")
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await within(5, listener)

    await attempt(already_there=False)
    await attempt(already_there=True)


async def test_our_own_record_passes_the_strict_reader_whatever_the_title(redis: Redis) -> None:
    """A configured title TOML allows (long, with a control character) must not make the
    other nodes refuse this node's record — and with it every stream it holds."""
    from relay.cluster.service import Cluster
    from relay.registry import Registry
    from relay.share import ShareBook
    from relay.wire import parse_node

    cfg = parse({"server": {"name": "a"}, "streams": {"drone1": {"title": "Dach\x07 " + "x" * 400}},
                 "cluster": {"redis": f"redis://127.0.0.1:{redis.port}/0", "url": "http://a.example:8080"}})
    registry = Registry(cfg)
    registry.start()
    entry = registry.get("drone1")
    assert entry is not None
    entry.claim("s1", "whip", "drone")
    cluster = Cluster(cfg, registry, ShareBook(), {}, lambda _n: 0, lambda: 0, dict, list)
    import json

    raw = json.dumps({**cluster.record(), "name": "a", "url": "http://a.example:8080", "t": time.time()})
    rec = parse_node("a", raw)
    assert [s["name"] for s in rec.streams] == ["drone1"] and len(rec.streams[0]["title"]) == 200
    await cluster.directory.redis.aclose()


async def test_an_edge_pull_keeps_flowing_frames_across_an_empty_redis_and_takes_the_source(
        redis: Redis) -> None:
    """What ends an edge's working pull: the stream moving to another node, the owner gone
    *and* its frames stopped, the owner forwarding the drone's own H.264 (a pull that began on
    a re-encoded rung switches to it). A Redis that restarted empty is none of these."""
    from relay.cluster.edge import EdgePull
    from relay.registry import Registry

    def owner_record(passthrough: bool) -> None:
        stream = {"name": "drone1", "state": "live", "passthrough": passthrough}
        redis.cli("SET", "relay:node:a", _record("a", "http://127.0.0.1:9", streams=[stream]), "PX", "60000")
        redis.cli("SET", "relay:claim:drone1", "a", "PX", "60000")

    owner_record(passthrough=False)
    async with node(redis, "c", set()) as (c, _):
        await until(lambda: c.owner("drone1") is not None)
        cfg = config(redis, "c")
        pull = EdgePull(Registry(cfg).get_or_create("drone1"), cfg, c, lambda: [])
        assert pull._aim(c.owner("drone1") or {}) and not pull.source
        assert pull.url == "http://127.0.0.1:9/whep/drone1"  # a re-encoded rung: no source yet
        assert pull.moved(flowing=True) is None

        redis.cli("FLUSHALL")  # Redis restarted empty: the owner has not written again yet
        refreshes = c.refreshes
        await until(lambda: c.refreshes > refreshes + 1)
        assert "a" not in c.nodes and c.up
        assert pull.moved(flowing=True) is None  # frames flow: the pull stays
        assert pull.moved(flowing=False) == "node a left the cluster"

        owner_record(passthrough=True)  # the owner is back and knows the codec now
        refreshes = c.refreshes
        await until(lambda: c.refreshes > refreshes + 1)
        assert pull.moved(flowing=True) == "node a forwards the drone's own picture now"
        assert pull._aim(c.owner("drone1") or {}) and pull.source
        assert pull.url == "http://127.0.0.1:9/whep/drone1?rendition=source"
        assert pull.moved(flowing=True) is None

        redis.cli("SET", "relay:node:b", _record("b", "http://127.0.0.1:8"), "PX", "60000")
        redis.cli("SET", "relay:claim:drone1", "b", "PX", "60000")
        refreshes = c.refreshes
        await until(lambda: c.refreshes > refreshes + 1)
        assert pull.moved(flowing=True) == "the stream moved to node b"


async def test_a_publisher_is_not_refused_on_a_dead_nodes_claim_the_cache_still_holds(redis: Redis) -> None:
    """The cached view is up to refresh_s old: before refusing a publisher for another node's
    claim, the node asks Redis (a drone redialling after its node died is taken at once).
    A claim and node that still stand stay believed."""
    redis.cli("SET", "relay:node:a", _record("a", "http://127.0.0.1:9"), "PX", "60000")
    redis.cli("SET", "relay:claim:drone1", "a", "PX", "60000")
    async with node(redis, "c", set(), refresh_s=5.0, ttl_s=10.0) as (c, _):
        await until(lambda: c.claims.get("drone1") == "a" and "a" in c.nodes)
        await c.confirm("drone1")  # both stand: nothing changes
        assert c.claims.get("drone1") == "a" and "a" in c.nodes
        redis.cli("DEL", "relay:node:a")  # a died; c's next refresh is seconds away
        refreshes = c.refreshes
        await c.confirm("drone1")
        assert "a" not in c.nodes and c.refreshes <= refreshes + 1  # (not waiting for a refresh)
