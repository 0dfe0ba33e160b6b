"""Every strict reader of outside input, fed what a hostile or broken peer could send
(Hypothesis): it answers with its own refusal or a clean value — never another exception
(a 500, a dead task), never a value outside its bounds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.cluster.directory import json_dict
from relay.config import parse
from relay.egress.channel import REPORT_ENUMS, REPORT_NUMBERS, Ping, read_viewer_message
from relay.errors import RelayError
from relay.markers import MarkerError, clean_fields, clean_label
from relay.record.mirror import Mirror, MirrorError
from relay.registry import Registry
from relay.sources.klv import KlvError, fields_from_klv
from relay.sources.rtmp_chunks import ChunkReader
from relay.sources.rtmp_video import aggregate_video
from relay.sources.upstream import Upstream
from relay.telemetry import TelemetryError, clean_update
from relay.webrtc.peer import check_offer
from relay.wire import Refused, finite, json_doc, origin, parse_node, safe_text, wall_ms

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON as it comes off a wire: any nesting of the JSON types, odd floats and strings included.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30)
NODE_KEYS = ["name", "url", "t", "load", "streams", "share_sessions", "state", "title", "fps", "width",
             "height", "viewers", "passthrough", "problem", "cores", "out_mbps", "publisher", "source_codec"]
node_like = st.dictionaries(st.sampled_from(NODE_KEYS), json_values, max_size=8)


@FAST
@given(st.one_of(json_values, node_like, st.builds(lambda s: {"name": "n", "url": "http://n.example:1",
                                                                "t": 1.0, "streams": [s]}, node_like)))
def test_a_node_record_from_redis_is_taken_whole_or_refused(raw: Any) -> None:
    try:
        rec = parse_node("n", json.dumps(raw, allow_nan=True))
    except Refused:
        return
    doc = rec.doc()
    json.dumps(doc, allow_nan=False)  # what was taken is plain, finite JSON
    for s in doc["streams"]:
        assert isinstance(s["name"], str) and math.isfinite(s["fps"])


@FAST
@given(json_values, st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_outside_numbers_and_text_come_in_bounds_or_not_at_all(raw: Any, a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    try:
        v = finite(raw, lo, hi, "x")
        assert lo <= v <= hi and math.isfinite(v)
    except Refused:
        pass
    try:
        text = safe_text(raw, 20, "x")
        # XML 1.0 text: no C0 control but tab, newline and CR; no surrogate or non-character.
        assert isinstance(text, str) and len(text) <= 20
        assert not any((ord(c) < 32 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF
                       or c in "\ufffe\uffff" for c in text), repr(text)
    except Refused:
        pass
    with contextlib.suppress(Refused):
        assert isinstance(wall_ms(raw, "x", now_ms=1.8e12), int)
    o = origin(raw)
    assert o is None or (o.startswith(("http://", "https://")) and "@" not in o and o.count("/") == 2)


@FAST
@given(st.dictionaries(st.text(max_size=16), json_values, max_size=8)
       | st.dictionaries(st.sampled_from(["lat", "lon", "alt", "rel_alt", "heading", "battery", "speed",
                                          "gimbal_pitch", "gimbal_yaw", "hfov", "vfov"]), json_values,
                         max_size=8))
def test_telemetry_from_a_drone_is_clean_or_refused(raw: dict[str, Any]) -> None:
    try:
        fields = clean_update(raw)
    except TelemetryError:
        return
    assert all(isinstance(v, float) and math.isfinite(v) for v in fields.values())


@FAST
@given(json_values, st.dictionaries(st.sampled_from(["lat", "lon", "label", "kind", "note", "color"]),
                                    json_values, max_size=6), st.booleans())
def test_markers_from_a_page_are_clean_or_refused(label: Any, raw: dict[str, Any], partial: bool) -> None:
    try:
        text = clean_label(label)
        assert isinstance(text, str)
    except MarkerError:
        pass
    try:
        clean = clean_fields(raw, partial)
    except MarkerError:
        return
    json.dumps(clean, allow_nan=False)


@FAST
@given(st.binary(max_size=400))
def test_klv_from_a_drone_is_parsed_or_refused(data: bytes) -> None:
    try:
        _t, fields = fields_from_klv(data)
    except KlvError:
        return
    assert all(isinstance(v, float) for v in fields.values())


@FAST
@given(st.binary(max_size=300) | st.builds(lambda d: json.dumps(d).encode(), json_values))
def test_a_vehicles_manifest_line_is_parsed_or_refused(raw: bytes) -> None:
    try:
        doc = Mirror._parse(raw)
    except MirrorError as exc:
        assert exc.status == 400
        return
    assert isinstance(doc["seq"], int)


SDP_LINES = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "m=video 9 UDP/TLS/RTP/SAVPF 96",
             "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=mid:1", "a=rtpmap:96 H264/90000",
             "a=rtpmap:96 VP8/90000", "a=sendonly", "a=recvonly", "a=ice-ufrag:x", "a=ice-pwd:y",
             "a=fingerprint:sha-256 00", "a=setup:actpass", "c=IN IP4 0.0.0.0", "a=group:BUNDLE 0 1"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(SDP_LINES) | st.text(max_size=30), max_size=25),
       st.sampled_from(["publish", "view"]))
def test_an_offer_is_checked_with_a_400_or_422_never_anything_else(lines: list[str], role: str) -> None:
    try:
        codecs = check_offer("\r\n".join(lines) + "\r\n", role)  # type: ignore[arg-type]
    except RelayError as exc:
        assert exc.status in (400, 422), exc.status
        return
    assert isinstance(codecs, list)


DEEP = ["[" * 5000, '{"a":' * 3000, '{"type":"ping","id":' + "[" * 2000]
NOT_JSON_NUMBERS = ['{"type":"ping","id":NaN,"t0":1}', '{"t":Infinity}', "-Infinity", '[NaN]']


def test_every_json_reader_refuses_deep_nesting_and_non_numbers() -> None:
    """``[[[[…`` (RecursionError in Python's parser, which ``except ValueError`` does not
    catch: it escaped the data channels' handlers) and NaN/Infinity (Python takes them; JSON
    has no such thing), at each reader of outside JSON: each refuses in its own way."""
    for raw in DEEP + NOT_JSON_NUMBERS:
        with contextlib.suppress(Refused):
            json_doc(raw, "x")
            raise AssertionError(f"taken: {raw[:30]}")
        with contextlib.suppress(Refused):
            parse_node("n", raw)
            raise AssertionError(f"node record taken: {raw[:30]}")
        assert json_dict(raw) is None
        try:
            Mirror._parse(raw.encode()[:8000])
            raise AssertionError(f"manifest line taken: {raw[:30]}")
        except MirrorError as exc:
            assert exc.status == 400
        with contextlib.suppress(ValueError):
            read_viewer_message(raw[:4096])
            raise AssertionError(f"viewer message taken: {raw[:30]}")
    assert json_doc('{"a":[1,2.5,"x",null,true]}', "x") == {"a": [1, 2.5, "x", None, True]}


@FAST
@given(st.text(max_size=60) | st.builds(lambda d: json.dumps(d, allow_nan=True), json_values)
       | st.builds(lambda k, d: json.dumps({"type": k, "id": d, "t0": d, "report": d}, allow_nan=True),
                   st.sampled_from(["ping", "report", "x"]), json_values)
       | st.builds(lambda r: json.dumps({"type": "report", "report": r}, allow_nan=True),
                   st.dictionaries(st.sampled_from([*REPORT_NUMBERS, *REPORT_ENUMS, "user_agent"]),
                                   json_values, max_size=6)))
def test_a_viewers_message_is_a_ping_a_clean_report_or_refused(raw: str) -> None:
    try:
        msg = read_viewer_message(raw)
    except ValueError:
        return
    if isinstance(msg, Ping):
        assert all(isinstance(v, int | float) and math.isfinite(v) for v in (msg.id, msg.t0))
        json.dumps({"id": msg.id, "t0": msg.t0}, allow_nan=False)
    elif msg is not None:
        json.dumps(msg, allow_nan=False)
        assert set(msg) <= {*REPORT_NUMBERS, *REPORT_ENUMS, "user_agent"}
        for k, (_typ, lo, hi) in REPORT_NUMBERS.items():
            assert k not in msg or lo <= msg[k] <= hi


class _Channel:
    """A data channel's event side, as Upstream uses it (aiortc's is a pyee emitter)."""

    readyState = "open"

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def on(self, event: str, handler: Any) -> None:
        self.handlers[event] = handler


_UPSTREAM_KEYS = st.sampled_from(["type", "f", "s", "path", "hops", "title", "t0", "t1", "t2", "t", "lat"])
_relay_msg = st.builds(
    lambda kind, doc: json.dumps({**doc, "type": kind}, allow_nan=True),
    st.sampled_from(["frames", "telemetry", "source", "pong", "markers", "x"]),
    st.dictionaries(_UPSTREAM_KEYS, json_values | st.lists(st.lists(json_values, max_size=4), max_size=4)
                    | st.lists(st.dictionaries(_UPSTREAM_KEYS, json_values, max_size=4), max_size=4),
                    max_size=5))


@FAST
@given(st.lists(_relay_msg | st.text(max_size=40) | st.sampled_from(DEEP + NOT_JSON_NUMBERS), max_size=6))
def test_a_forwarding_relays_channel_messages_never_break_the_session(messages: list[str]) -> None:
    """What another relay sends on a forwarded session's "relay" channel: each message is
    taken within its bounds or counted bad; no exception leaves the handler (it would end
    the session's channel), and no time, clock offset or path comes out of range."""
    entry = Registry(parse({}, env={})).get_or_create("d1")
    ch = _Channel()
    up = Upstream(entry, ch, "centre")
    now_ms = time.time() * 1000
    for m in messages:
        ch.handlers["message"](m)
    assert math.isfinite(up.offset_ms) and abs(up.offset_ms) <= 86_400_000
    for arrival, capture in up.times.values():
        assert abs(arrival - now_ms) <= 2 * 86_400_000
        assert capture is None or abs(capture - now_ms) <= 2 * 86_400_000
    assert all(isinstance(p, str) and p.isprintable() and len(p) <= 40 for p in up.path)
    for _seq, t, _doc in entry.telemetry.recent:
        assert math.isfinite(t) and abs(t * 1000 - now_ms) <= 2 * 86_400_000


@FAST
@given(st.binary(max_size=600) | st.lists(
    st.tuples(st.integers(0, 3), st.integers(2, 70), st.integers(0, 0xFFFFFF), st.integers(0, 600),
              st.integers(0, 255), st.binary(max_size=200)), max_size=8).map(
    lambda cs: b"".join(bytes([(f << 6) | min(c, 63)]) + (ts.to_bytes(3, "big") if f < 3 else b"")
                        + ((n.to_bytes(3, "big") + bytes([t])) if f < 2 else b"")
                        + (bytes(4) if f == 0 else b"") + body for f, c, ts, n, t, body in cs)))
def test_an_rtmp_byte_stream_is_whole_messages_or_a_refusal(data: bytes) -> None:
    """Any bytes after the handshake: the chunk reader gives whole messages (each exactly
    its declared length) or stops with a refusal or at the end; the session's limit sees
    every chunk before its bytes are read (a message over the limit is never assembled)."""
    limit = 4096

    def count(size: int, length: int) -> None:
        if length > limit:
            raise ValueError("message over the limit")
        assert 0 <= size <= length

    async def read() -> list[Any]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        out = []
        try:
            async for c in ChunkReader(reader, lambda: 128, count).messages():
                out.append(c)
        except (asyncio.IncompleteReadError, ValueError):
            pass
        return out

    for c in asyncio.run(read()):
        assert len(c.payload) == c.msg_length <= limit and 0 <= c.timestamp < 2**32


@FAST
@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_an_rtmp_aggregate_message_is_its_whole_video_tags_or_fewer(payload: bytes, ts: int) -> None:
    total = 0
    for body, t in aggregate_video(payload, ts):
        assert 0 <= t < 2**32
        total += len(body)
    assert total <= len(payload)


OSD_KEYS = ["latitude", "longitude", "elevation", "height", "attitude_head", "attitude_pitch", "attitude_roll",
            "horizontal_speed", "battery", "mode_code", "53-0-0", "cameras", "99-0-7", "x-0-0"]
GIMBAL_KEYS = ["gimbal_pitch", "gimbal_yaw", "zoom_factor", "measure_target_error_state", "measure_target_latitude",
               "measure_target_longitude", "measure_target_distance", "thermal_global_temperature_max"]
osd_like = st.dictionaries(st.sampled_from(OSD_KEYS), json_values | st.dictionaries(
    st.sampled_from([*GIMBAL_KEYS, "capacity_percent"]), json_values, max_size=6), max_size=10)


@FAST
@given(st.sampled_from(["thing/product/1581F5BKD00000AC/osd", "sys/product/RC0000001/status",
                        "thing/product/RC0000001/state", "thing/product/../osd", "thing/product/A B/osd", "x"]),
       st.one_of(json_values, st.builds(lambda d: {"tid": "t", "bid": "b", "timestamp": 1, "data": d},
                                        st.one_of(osd_like, json_values))),
       st.binary(max_size=64))
def test_a_dji_message_is_read_whole_or_refused(topic: str, raw: Any, junk: bytes) -> None:
    """What a DJI device (or anyone with a broker account) publishes: the envelope, the OSD,
    the topology and the live capacity are each taken as clean values or refused."""
    from relay.dji.wire import read_envelope, read_live_capacity, read_osd, read_topo
    from relay.telemetry import FIELDS

    for payload in (json.dumps(raw, allow_nan=True).encode(), junk):
        try:
            env = read_envelope(topic, payload)
        except Refused:
            continue
        osd = read_osd(env.data)
        for k, v in osd.fields.items():  # every field the telemetry takes, in its range
            lo, hi = FIELDS[k]
            assert math.isfinite(v) and lo <= v <= hi, (k, v)
        with contextlib.suppress(Refused):
            for sub in read_topo(env.data):
                assert sub["sn"].isalnum()
        for video, lenses in read_live_capacity(env.data).items():
            assert video.count("/") == 2 and all(x in ("normal", "wide", "zoom", "ir", "thermal") for x in lenses)
