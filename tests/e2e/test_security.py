"""The intruder's tests: each role against each endpoint, other viewers' sessions, limits,
split and malformed offers. Each attack must fail and leave everything else as it was."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import jwt
import pytest

from relay.auth import mint_token
from tests.e2e.test_errors import AUDIO_ONLY, offer_sdp, post
from tests.helpers import Drone, WhepViewer, wait_for

SECRET = "x" * 40
TOKENS = {
    "pub_alpha": "alpha-publish-secret",
    "viewer_alpha": "alpha-view-secret",
    "control": "control-centre-secret",
    "admin": "admin-secret-token",
}
LOW = [{"name": "low", "height": 180, "bitrate_kbps": 300}]


def secured(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "renditions": LOW,
        "webrtc": {"ice_addresses": ["127.0.0.1"],
                   "ice_servers": [{"urls": ["turn:127.0.0.1:3478?transport=tcp"], "secret": "turn-shared-secret"}]},
        "auth": {
            "enabled": True,
            "jwt_secret": SECRET,
            "tokens": [{"token": TOKENS["control"], "role": "control", "name": "Leitstelle"},
                       {"token": TOKENS["admin"], "role": "admin"}],
        },
        "streams": {
            "alpha": {"publish_token": TOKENS["pub_alpha"], "view_token": TOKENS["viewer_alpha"]},
            "bravo": {"publish_token": "bravo-publish-secret", "view_token": "bravo-view-secret"},
        },
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


async def request(method: str, url: str, token: str | None, body: str | bytes = b"",
                  ctype: str = "application/sdp") -> tuple[int, str, Any]:
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.request(method, url, data=body, headers=headers) as r:
        return r.status, await r.text(), r.headers


# Expected status per endpoint: a 422 for an offer or a 404 for a missing picture means the
# request got past authorisation (the audio-only offer and the empty stream are deliberate).
ENDPOINTS: list[tuple[str, str, str, str]] = [
    ("whip alpha", "POST", "/whip/alpha", "offer"),
    ("whip bravo", "POST", "/whip/bravo", "offer"),
    ("whep alpha", "POST", "/whep/alpha", "offer"),
    ("whep bravo", "POST", "/whep/bravo", "offer"),
    ("ice alpha", "OPTIONS", "/whep/alpha", ""),
    ("list", "GET", "/api/streams", ""),
    ("stream alpha", "GET", "/api/streams/alpha", ""),
    ("stats alpha", "GET", "/api/streams/alpha/stats", ""),
    ("snapshot alpha", "GET", "/api/streams/alpha/snapshot.jpg", ""),
    ("metrics", "GET", "/metrics", ""),
    ("mint", "POST", "/api/tokens", "mint"),
]
EXPECT = {
    #                whipA whipB wheA wheB  ice  list strA stats snap  metr mint
    "none":         (401, 401, 401, 401, 204, 401, 401, 401, 401, 401, 401),
    "wrong":        (403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    "pub_alpha":    (422, 403, 422, 403, 204, 200, 200, 403, 404, 403, 403),
    "viewer_alpha": (403, 403, 422, 403, 204, 200, 200, 403, 404, 403, 403),
    "jwt_viewer":   (403, 403, 422, 403, 204, 200, 200, 403, 404, 403, 403),
    "jwt_expired":  (403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    "jwt_forged":   (403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    "control":      (403, 403, 422, 422, 204, 200, 200, 200, 404, 200, 201),
    "admin":        (422, 422, 422, 422, 204, 200, 200, 200, 404, 200, 201),
}


async def test_each_role_against_each_endpoint(relay_factory: Any) -> None:
    relay = await relay_factory(secured())
    cfg = relay.config
    tokens: dict[str, str | None] = {"none": None, "wrong": "not-a-token-at-all", **TOKENS}
    tokens["jwt_viewer"] = mint_token(cfg, "viewer", ["alpha"], 600)[0]
    tokens["jwt_expired"] = mint_token(cfg, "viewer", ["alpha"], 60, now=time.time() - 3600)[0]
    tokens["jwt_forged"] = jwt.encode({"role": "admin", "streams": ["*"], "iat": int(time.time()),
                                       "exp": int(time.time()) + 600}, "y" * 40, algorithm="HS256")
    mint_body = json.dumps({"role": "viewer", "streams": ["alpha"], "ttl_s": 600})
    failures = []
    for who, expected in EXPECT.items():
        for (label, method, path, body), want in zip(ENDPOINTS, expected, strict=True):
            data, ctype = {"offer": (AUDIO_ONLY, "application/sdp"),
                           "mint": (mint_body, "application/json")}.get(body, ("", "text/plain"))
            status, text, _ = await request(method, relay.url + path, tokens[who], data, ctype)
            if status != want:
                failures.append(f"{who} {label}: {status} (want {want}) {text.strip()[:80]}")
    assert not failures, "\n".join(failures)
    # A CORS pre-flight (no credentials) gets no TURN credentials; a viewer gets fresh ones.
    _, _, headers = await request("OPTIONS", relay.url + "/whep/alpha", None)
    assert "Link" not in headers
    _, _, headers = await request("OPTIONS", relay.url + "/whep/alpha", TOKENS["viewer_alpha"])
    link = headers["Link"]
    assert link.startswith('<turn:127.0.0.1:3478?transport=tcp>; rel="ice-server"; username="')
    assert 'credential-type="password"' in link and "turn-shared-secret" not in link
    # Nothing was created or claimed by all those attempts.
    assert set(relay.services.registry.entries) == {"alpha", "bravo"}
    assert all(e.publisher is None for e in relay.services.registry.entries.values())
    # A stream-scoped viewer lists only its streams; control lists all.
    for who, names in (("viewer_alpha", {"alpha"}), ("control", {"alpha", "bravo"})):
        status, text, _ = await request("GET", relay.url + "/api/streams", tokens[who])
        assert {s["name"] for s in json.loads(text)["streams"]} == names


async def test_minted_tokens_are_bounded_by_role(relay_factory: Any) -> None:
    relay = await relay_factory(secured())
    url = relay.url + "/api/tokens"
    body = json.dumps({"role": "admin", "streams": ["alpha"], "ttl_s": 600})
    status, text, _ = await request("POST", url, TOKENS["control"], body, "application/json")
    assert status == 403 and "may not mint 'admin'" in text  # control cannot escalate
    body = json.dumps({"role": "viewer", "streams": ["alpha"], "ttl_s": 10**9})
    status, text, _ = await request("POST", url, TOKENS["control"], body, "application/json")
    assert status == 422 and "ttl_s" in text
    status, text, _ = await request("POST", url, TOKENS["control"], "{not json", "application/json")
    assert status == 400
    # Nesting deeper than Python's parser (a RecursionError, not a ValueError: a 500 before)
    # and NaN (not JSON): a 400 with its reason, at the token, marker and telemetry readers.
    for body in ("[" * 2000, '{"role":"viewer","streams":["alpha"],"ttl_s":NaN}'):
        for where in ("/api/tokens", "/api/markers", "/api/streams/alpha/telemetry"):
            status, text, _ = await request("POST", relay.url + where, TOKENS["admin"], body, "application/json")
            assert status == 400 and "JSON" in text, (where, body[:20], status, text)
    body = json.dumps({"role": "viewer", "streams": ["alpha"], "ttl_s": 120, "label": "Einsatzleiter Nord"})
    status, text, headers = await request("POST", url, TOKENS["control"], body, "application/json")
    assert status == 201 and headers["Cache-Control"] == "no-store"
    minted = json.loads(text)
    claims = jwt.decode(minted["token"], SECRET, algorithms=["HS256"])
    assert claims["role"] == "viewer" and claims["streams"] == ["alpha"] and claims["exp"] - claims["iat"] == 120
    status, _, _ = await request("GET", relay.url + "/api/streams/bravo", minted["token"])
    assert status == 403  # scoped to alpha
    # A label that no XML (the KML export, where it names a marker's author) or log can hold:
    # refused precisely, nothing minted.
    for label in ("a\x01b", "\ud800", "x\ufffe"):
        body = json.dumps({"role": "viewer", "streams": ["alpha"], "ttl_s": 120, "label": label})
        status, text, _ = await request("POST", url, TOKENS["control"], body, "application/json")
        assert status == 422 and "label must be plain text" in text, (label, status, text)
    # A cluster node's claim (its pull's keyframe requests are not held to a viewer's budget)
    # is not for minting over HTTP: refused by name, nothing minted.
    body = json.dumps({"role": "viewer", "streams": ["alpha"], "ttl_s": 120, "node": "b"})
    status, text, _ = await request("POST", url, TOKENS["control"], body, "application/json")
    assert status == 422 and "unknown field 'node'" in text


async def test_sessions_belong_to_their_viewer(relay_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Viewers cannot read others' sessions, stats never reveal a session's secret, and
    knowing a viewer's public id does not let anyone end its session."""
    caplog.set_level(logging.DEBUG, logger="relay")
    relay = await relay_factory(secured())
    drone = Drone(f"{relay.url}/whip/alpha", token=TOKENS["pub_alpha"])
    a = WhepViewer(relay.url, "alpha", token=TOKENS["viewer_alpha"], read_stamps=False)
    b = WhepViewer(relay.url, "alpha", token=TOKENS["viewer_alpha"], read_stamps=False)
    try:
        await wait_for(lambda: relay.entry("alpha").frames_in > 5, 15, "alpha live")
        await a.start()
        await b.start()
        await a.wait_frames(5)
        a_secret = a.location.rsplit("/", 1)[1] if a.location else ""
        # A viewer token does not read per-viewer stats at all.
        status, _, _ = await request("GET", f"{relay.url}/api/streams/alpha/stats", TOKENS["viewer_alpha"])
        assert status == 403
        # The control centre does, and sees who is watching, but no session secret.
        status, text, _ = await request("GET", f"{relay.url}/api/streams/alpha/stats", TOKENS["control"])
        assert status == 200
        doc = json.loads(text)
        assert len(doc["viewers"]) == 2 and a_secret not in text
        assert {v["who"] for v in doc["viewers"]} == {"streams.alpha.view_token"}
        status, metrics, _ = await request("GET", f"{relay.url}/metrics", TOKENS["control"])
        assert status == 200 and a_secret not in metrics
        # B (or anyone) tries to end A's session with what the stats show: refused.
        for v in doc["viewers"]:
            status, _, _ = await request("DELETE", f"{relay.url}/whep/alpha/{v['id']}", TOKENS["viewer_alpha"])
            assert status == 404
        # Ending A's session needs A's own secret, and the right token.
        status, _, _ = await request("DELETE", a.location or "", "bravo-view-secret")
        assert status == 403
        n = a.seen.frames
        await a.wait_frames(n + 10, timeout=5)  # A plays on
        assert len(relay.viewers("alpha")) == 2
        # Logs name sessions by their public id only.
        publisher_secret = relay.entry("alpha").publisher
        logged = "\n".join(str(r.__dict__) for r in caplog.records)  # messages and their fields
        assert a_secret not in logged and publisher_secret not in logged
        assert doc["viewers"][0]["id"] in logged
    finally:
        await a.close()
        await b.close()
        await drone.stop()


async def test_security_headers_on_pages_and_api(relay_factory: Any) -> None:
    relay = await relay_factory(secured())
    for path in ("/", "/view/alpha", "/wall", "/static/whep.js", "/api/streams", "/nope", "/favicon.ico"):
        status, _, headers = await request("GET", relay.url + path, None)
        # (every page names its icon, and a browser's own /favicon.ico is no 404 in a log)
        assert path != "/favicon.ico" or (status == 200 and headers["Content-Type"] == "image/svg+xml"), status
        csp = headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    # A token in the query string is not accepted: it would land in logs and Referer headers.
    status, _, _ = await request("GET", f"{relay.url}/api/streams?token={TOKENS['control']}", None)
    assert status == 401
    # A browser's pre-flight before another origin's call with a token (the stream list of
    # another cluster node fetching this node's snapshots): 204 with the CORS headers, no
    # body; it opens nothing — the call itself is authorised as ever, other methods stay 405.
    preflight = {"Origin": "http://node-b.example:8080", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    async with aiohttp.ClientSession() as s, s.options(f"{relay.url}/api/streams/alpha/snapshot.jpg",
                                                       headers=preflight) as r:
        assert r.status == 204 and await r.read() == b"", r.status
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    status, _, _ = await request("GET", f"{relay.url}/api/streams/alpha/snapshot.jpg", None)
    assert status == 401
    status, _, _ = await request("DELETE", f"{relay.url}/api/streams/alpha/snapshot.jpg", TOKENS["admin"])
    assert status == 405


async def test_limits_answer_429_503_and_are_counted(relay_factory: Any) -> None:
    relay = await relay_factory({
        "renditions": LOW, "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "limits": {"viewers_per_stream": 2, "sessions_per_client": 3, "unconfigured_streams": 2,
                   "offers_per_client_per_min": 8, "waiting_expire_s": 1.0},
    })
    drone = Drone(f"{relay.url}/whip/d1")
    viewers: list[WhepViewer] = []
    try:
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 15, "d1")
        for _ in range(2):
            v = WhepViewer(relay.url, "d1", read_stamps=False)
            await v.start()
            viewers.append(v)
        status, text, _ = await post(f"{relay.url}/whep/d1", await offer_sdp())
        assert status == 503 and "maximum of 2 viewers" in text
        # The drone's session, two viewers: the client's fourth session is one too many.
        status, text, _ = await post(f"{relay.url}/whip/other", await offer_sdp("sendonly"))
        assert status == 429 and "sessions" in text
        # Offers per minute: the next ones are refused before any work is done.
        statuses = [(await post(f"{relay.url}/whep/d1", AUDIO_ONLY))[0] for _ in range(6)]
        assert statuses[-1] == 429, statuses
        await viewers[0].wait_frames(5)
        n = viewers[0].seen.frames
        await viewers[0].wait_frames(n + 10, timeout=5)  # the admitted viewers play on
        _, metrics, _ = await request("GET", relay.url + "/metrics", None)
        for name in ("refused_viewers_per_stream", "refused_sessions_per_client", "refused_offers_per_client"):
            line = next(ln for ln in metrics.splitlines() if ln.startswith(f"relay_{name}_total"))
            assert float(line.split()[-1]) >= 1, line
    finally:
        for v in viewers:
            await v.close()
        await drone.stop()


async def test_unconfigured_streams_are_bounded_and_expire(relay_factory: Any) -> None:
    relay = await relay_factory({
        "renditions": LOW, "webrtc": {"ice_addresses": ["127.0.0.1"]},
        "limits": {"unconfigured_streams": 3, "waiting_expire_s": 1.0,
                   "offers_per_client_per_min": 1000, "sessions_per_client": 1000},
    })
    statuses = []
    for i in range(10):  # offers to new names that never connect
        statuses.append((await post(f"{relay.url}/whip/junk{i}", await offer_sdp("sendonly")))[0])
    assert statuses.count(201) == 3 and statuses.count(503) == 7, statuses
    # The unanswered sessions time out; their never-live streams are forgotten.
    for s in tuple(relay.services.whip.sessions.values()):
        await s.close("test: never connected")
    await wait_for(lambda: not relay.services.registry.entries, 15, "waiting streams to expire")
    status, _, _ = await post(f"{relay.url}/whip/fresh", await offer_sdp("sendonly"))
    assert status == 201


async def test_offer_split_across_tcp_segments_is_read_whole(relay_factory: Any) -> None:
    relay = await relay_factory()
    host, port = relay.url.removeprefix("http://").split(":")
    sdp = (await offer_sdp("sendonly")).encode()
    head = (f"POST /whip/split HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\nConnection: close\r\n\r\n").encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + sdp[:300])
    await writer.drain()
    await asyncio.sleep(0.3)  # as a forwarding proxy or a slow LTE uplink would
    writer.write(sdp[300:])
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    assert response.startswith(b"HTTP/1.1 201"), response[:200]


async def test_two_m_lines_sharing_a_mid_get_422_and_one_log_line(
        relay_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    relay = await relay_factory()
    sdp = await offer_sdp("sendonly")
    video = sdp[sdp.index("m=video"):]
    doubled = sdp + video  # a second video m-line with the same a=mid
    caplog.set_level(logging.INFO)
    status, text, _ = await post(f"{relay.url}/whip/dup", doubled)
    assert status == 422 and "a=mid" in text and text.count("\n") == 1
    assert not any(r.exc_info for r in caplog.records), "a bad offer must not log a traceback"
    assert relay.entry("dup") is None


async def test_source_credentials_never_reach_the_api(relay_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    relay = await relay_factory({
        "renditions": LOW,
        "streams": {"cam": {"source": "rtsp://admin:hunter2secret@127.0.0.1:9/live"}},
    })
    await wait_for(lambda: any("source unavailable" in r.getMessage() for r in caplog.records), 15,
                   "the failed pull's log line")  # (nothing listens on port 9)
    streams = json.dumps(await relay.streams())
    assert "hunter2secret" not in streams
    assert "hunter2secret" not in caplog.text
    assert any("source unavailable" in r.getMessage() for r in caplog.records)


async def test_ice_port_range_and_interface_names(relay_factory: Any) -> None:
    relay = await relay_factory({"renditions": LOW,
                                 "webrtc": {"ice_addresses": ["lo"], "port_min": 41000, "port_max": 41009}})
    drone = Drone(f"{relay.url}/whip/d1")
    viewers = []
    try:
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 15, "d1")
        for _ in range(3):
            v = WhepViewer(relay.url, "d1", read_stamps=False)
            await v.start()
            viewers.append(v)
        await viewers[-1].wait_frames(5)
        ports = set()
        for s in (*relay.services.whep.sessions.values(), *relay.services.whip.sessions.values()):
            for line in s.pc.localDescription.sdp.splitlines():
                if line.startswith("a=candidate:"):
                    parts = line.split()
                    assert parts[4] in ("127.0.0.1", "::1")  # "lo" resolved to its addresses
                    ports.add(int(parts[5]))
        assert ports and all(41000 <= p <= 41009 for p in ports), ports
    finally:
        for v in viewers:
            await v.close()
        await drone.stop()


async def test_mutated_offers_never_get_a_500(relay_factory: Any) -> None:
    """150 offers with lines dropped, duplicated, swapped or garbled: each is answered 201 or
    a precise 4xx, never a 500, and the live viewer plays on."""
    import random

    relay = await relay_factory({"renditions": LOW, "webrtc": {"ice_addresses": ["127.0.0.1"]},
                                 "limits": {"offers_per_client_per_min": 10000, "sessions_per_client": 10000,
                                            "unconfigured_streams": 10000, "viewers_per_stream": 1000,
                                            "viewers_total": 1000}})
    drone = Drone(f"{relay.url}/whip/d1", size=(640, 360))
    viewer = WhepViewer(relay.url, "d1", read_stamps=False)
    rng = random.Random(2026)
    try:
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 15, "d1")
        await viewer.start()
        await viewer.wait_frames(5)
        base = {"recvonly": (await offer_sdp("recvonly")).split("\r\n"),
                "sendonly": (await offer_sdp("sendonly")).split("\r\n")}
        seen: dict[int, int] = {}
        for i in range(150):
            direction = rng.choice(["recvonly", "sendonly"])
            lines = list(base[direction])
            for _ in range(rng.randint(1, 4)):
                j = rng.randrange(len(lines))
                op = rng.choice(["drop", "dup", "swap", "garble", "truncate"])
                if op == "drop":
                    del lines[j]
                elif op == "dup":
                    lines.insert(j, lines[j])
                elif op == "swap":
                    k = rng.randrange(len(lines))
                    lines[j], lines[k] = lines[k], lines[j]
                elif op == "garble" and lines[j]:
                    pos = rng.randrange(len(lines[j]))
                    lines[j] = lines[j][:pos] + rng.choice(["", ":", " ", "\x00", "9999999999", "=x"]) + lines[j][pos + 1:]
                else:
                    lines[j] = lines[j][: len(lines[j]) // 2]
            path = "/whep/d1" if direction == "recvonly" else f"/whip/fz{i}"
            status, text, _ = await post(relay.url + path, "\r\n".join(lines))
            seen[status] = seen.get(status, 0) + 1
            assert status in (201, 400, 409, 413, 415, 422), f"offer {i}: {status} {text[:200]}"
            assert status == 201 or text.count("\n") == 1, text
        for s in (*relay.services.whep.sessions.values(), *relay.services.whip.sessions.values()):
            if s.pc.connectionState != "connected":
                await s.close("test: fuzzed offer")
        n = viewer.seen.frames
        await viewer.wait_frames(n + 10, timeout=5)
        assert seen.get(422, 0) + seen.get(400, 0) > 50, seen
    finally:
        await viewer.close()
        await drone.stop()


async def test_viewers_total_is_a_relay_wide_limit(relay_factory: Any) -> None:
    relay = await relay_factory({"renditions": LOW, "webrtc": {"ice_addresses": ["127.0.0.1"]},
                                 "limits": {"viewers_total": 1}, "streams": {"a": {}, "b": {}}})
    first = WhepViewer(relay.url, "a", read_stamps=False)
    try:
        await first.start()
        status, text, _ = await post(f"{relay.url}/whep/b", await offer_sdp())
        assert status == 503 and "maximum of 1 viewers" in text
        assert relay.services.limiter.refused["viewers_total"] == 1 and not relay.viewers("b")
    finally:
        await first.close()


async def test_the_echo_channel_takes_only_the_relays_own_numbers(relay_factory: Any) -> None:
    """The relay times round trips on a viewer's "echo" channel while it probes the link: a
    viewer that sends anything but an outstanding number of the relay's (HTML, garbage, a
    number never sent, one answered already) changes nothing, and its picture plays on."""
    relay = await relay_factory({"renditions": LOW, "webrtc": {"ice_addresses": ["127.0.0.1"]}})
    drone = Drone(f"{relay.url}/whip/d1")
    v = WhepViewer(relay.url, "d1", read_stamps=False, echo=True)
    try:
        await wait_for(lambda: relay.entry("d1") is not None and relay.entry("d1").frames_in > 5, 15, "d1")
        await v.start()
        await v.wait_frames(5)
        whep = relay.services.whep
        sid = next(iter(relay.viewers("d1")))
        await wait_for(lambda: sid in whep.viewers and whep.viewers[sid].echo is not None
                       and whep.viewers[sid].echo.channel.readyState == "open", 10, "echo channel open")
        echoes = whep.viewers[sid].echo
        for junk in ["<img src=x onerror=alert(1)>", "-1", "1" * 40, "7", "", "1.5", "\u0661", "{}"]:
            v.echo.send(junk)
        await asyncio.sleep(0.5)
        assert not echoes.rtts
        assert echoes.send()  # the relay's own number comes back: one round trip
        await wait_for(lambda: len(echoes.rtts) == 1, 5, "the echo")
        v.echo.send(str(echoes._n))  # the same number again: not counted twice
        await asyncio.sleep(0.3)
        assert len(echoes.rtts) == 1 and 0 <= echoes.rtts[0][1] < 1.0
        n = v.seen.frames
        await v.wait_frames(n + 10, timeout=5)
    finally:
        await v.close()
        await drone.stop()
