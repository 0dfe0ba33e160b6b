"""Every strict reader of outside input, fed what a hostile or broken peer could send
(Hypothesis): it answers with its own refusal or a clean value — never another exception
(a 500, a dead task), never a value outside its bounds."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.errors import RelayError
from relay.markers import MarkerError, clean_fields, clean_label
from relay.record.mirror import Mirror, MirrorError
from relay.sources.klv import KlvError, fields_from_klv
from relay.telemetry import TelemetryError, clean_update
from relay.webrtc.peer import check_offer
from relay.wire import Refused, finite, origin, parse_node, safe_text, wall_ms

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
        assert isinstance(text, str) and len(text) <= 20 and not any(ord(c) < 32 for c in text)
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
