"""Markers (pure parts): the ground geometry both ways, the book and its signed log, the
checks on what a marker may hold, the exports, the rate."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from drone_sim.flight import Flight
from relay.geo import distance_m, ground_point, picture_point
from relay.markers import MarkerBook, MarkerError, RateBook, clean_fields, geojson, kml
from relay.record.chain import Chain, Signer
from relay.record.verify import verify_chain, verify_record

T0 = 1_790_000_000.0


def sample(t: float = 0.0) -> dict[str, float]:
    return Flight(start=T0).at(T0 + t)


def test_centre_of_the_picture_is_where_the_simulator_says_the_camera_looks() -> None:
    for t in (0.0, 7.0, 33.0):
        s = sample(t)
        p = ground_point(s, 0.0, 0.0)
        assert p is not None
        assert distance_m(p[0], p[1], s["center_lat"], s["center_lon"]) < 0.5


def test_ground_point_and_picture_point_are_inverses() -> None:
    s = sample(12.0)
    for u, v in ((0.3, -0.4), (-0.9, 0.9), (0.95, -0.95), (0.0, 0.5)):
        p = ground_point(s, u, v)
        assert p is not None
        back = picture_point(s, *p)
        assert back is not None
        assert math.isclose(back[0], u, abs_tol=1e-4) and math.isclose(back[1], v, abs_tol=1e-4)


def test_off_picture_behind_and_above_the_horizon() -> None:
    s = sample(0.0)
    # The drone's own position, straight below it, is off the picture of a camera looking
    # 34 degrees down (below the bottom edge).
    under = picture_point(s, s["lat"], s["lon"])
    assert under is not None and under[1] < -1
    # A point 500 m behind the drone is behind the camera.
    yaw = math.radians(s["gimbal_yaw"])
    lat = s["lat"] - 500 * math.cos(yaw) / 111_320
    lon = s["lon"] - 500 * math.sin(yaw) / (111_320 * math.cos(math.radians(s["lat"])))
    assert picture_point(s, lat, lon) is None
    level = {**s, "gimbal_pitch": 10.0}
    level.pop("center_lat"), level.pop("center_lon")
    assert ground_point(level, 0.0, 0.0) is None  # looking up: no ground
    assert ground_point({"lat": 1.0, "lon": 1.0}, 0.0, 0.0) is None  # nothing known


@pytest.mark.parametrize("raw,reason", [
    ({"kind": "alien", "label": "", "lat": 1, "lon": 1}, "kind must be one of"),
    ({"kind": "note", "label": "x" * 81, "lat": 1, "lon": 1}, "longer than 80"),
    ({"kind": "note", "label": "a\x00b", "lat": 1, "lon": 1}, "control characters"),
    ({"kind": "note", "label": "ok", "lat": 91, "lon": 1}, "lat must be"),
    ({"kind": "note", "label": "ok", "lat": float("nan"), "lon": 1}, "lat must be"),
    ({"kind": "note", "label": "ok", "lat": True, "lon": 1}, "lat must be"),
    ({"kind": "note", "label": "ok", "lat": 1}, "lat and lon go together"),
    ({"kind": "note", "label": 5, "lat": 1, "lon": 1}, "label must be text"),
    ({"kind": "note", "label": "ok", "lat": 1, "lon": 1, "colour": "red"}, "unknown marker field"),
])
def test_bad_fields_are_refused_with_a_reason(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(MarkerError) as e:
        clean_fields(raw, partial=False)
    assert e.value.status == 422 and reason in e.value.reason


def test_book_folds_events_and_tells_listeners() -> None:
    heard: list[dict[str, Any]] = []
    book = MarkerBook(max_markers=2)
    book.listeners.append(lambda m: heard.append(json.loads(m)))
    a = book.add(clean_fields({"kind": "person", "label": "two on the roof", "lat": 52.5, "lon": 13.4},
                              partial=False), "Leitstelle", "drone1", now=T0)
    book.change(a.id, clean_fields({"lat": 52.5001, "lon": 13.4001}, partial=True), "ELW 1", now=T0 + 10)
    b = book.add(clean_fields({"kind": "water", "label": "hydrant", "lat": 52.6, "lon": 13.5},
                              partial=False), "ELW 1", now=T0 + 20)
    with pytest.raises(MarkerError) as full:
        book.add(clean_fields({"kind": "note", "label": "", "lat": 0, "lon": 0}, partial=False), "x")
    assert full.value.status == 507
    book.remove(a.id, "Leitstelle", now=T0 + 30)
    with pytest.raises(MarkerError):
        book.remove(a.id, "Leitstelle")
    assert [m["id"] for m in book.listing()] == [b.id]
    assert book.at(T0 - 1) == []
    assert [(m["id"], m["lat"]) for m in book.at(T0 + 5)] == [(a.id, 52.5)]
    assert [(m["id"], m["lat"]) for m in book.at(T0 + 25)] == [(a.id, 52.5001), (b.id, 52.6)]
    assert [m["id"] for m in book.at(T0 + 31)] == [b.id]
    assert [(h["op"], h["m"]["id"]) for h in heard] == [("add", a.id), ("change", a.id), ("add", b.id),
                                                        ("remove", a.id)]
    assert heard[1]["m"]["changed_by"] == "ELW 1" and heard[0]["m"]["by"] == "Leitstelle"


def test_signed_log_rebuilds_the_book_and_verify_names_a_tampered_line(tmp_path: Path) -> None:
    signer = Signer.load(tmp_path / "key.pem", generate=True)
    path = tmp_path / "markers.jsonl"
    book = MarkerBook(Chain(path, signer))
    a = book.add(clean_fields({"kind": "hotspot", "label": "glow", "lat": 52.5, "lon": 13.4}, partial=False),
                 "Leitstelle", now=T0)
    b = book.add(clean_fields({"kind": "hazard", "label": "gas", "lat": 52.51, "lon": 13.41}, partial=False),
                 "Leitstelle", now=T0 + 1)
    book.remove(a.id, "ELW 1", now=T0 + 2)
    findings, good = verify_chain(path, signer.public, "markers.jsonl")
    assert findings == [] and len(good) == 3
    again = MarkerBook(Chain(path, signer), lines=[g.doc for g in good if g.doc])
    assert [m["id"] for m in again.listing()] == [b.id]
    assert [m["id"] for m in again.at(T0 + 1.5)] == [a.id, b.id]
    assert verify_record(tmp_path, signer.public).ok
    # Someone edits the label of the hazard in the file: verify names the line.
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"gas"', b'"ok"')
    path.write_bytes(b"\n".join(lines))
    report = verify_record(tmp_path, signer.public)
    assert not report.ok
    assert any(f.where == "markers.jsonl line 2" and f.what == "forged" for f in report.findings)


def test_exports_are_well_formed_and_escape_text() -> None:
    book = MarkerBook()
    book.add(clean_fields({"kind": "person", "label": "<script>alert(1)</script> & co", "lat": 52.5,
                           "lon": 13.4}, partial=False), "Lei<b>tstelle", now=T0)
    gj = geojson(book.listing())
    assert gj["features"][0]["geometry"]["coordinates"] == [13.4, 52.5]  # RFC 7946: lon, lat
    text = kml(book.listing(), "Brand <Nord>")
    assert "<script>" not in text and "&lt;script&gt;" in text and "Lei&lt;b&gt;tstelle" in text
    import xml.etree.ElementTree as ET

    root = ET.fromstring(text.split("\n", 1)[1])
    ns = "{http://www.opengis.net/kml/2.2}"
    assert root.find(f"{ns}Document/{ns}Placemark/{ns}Point/{ns}coordinates").text == "13.4,52.5,0"


def test_rate_per_token() -> None:
    rate = RateBook(3)
    for i in range(3):
        rate.take("a", now=100.0 + i)
    with pytest.raises(MarkerError) as e:
        rate.take("a", now=103.0)
    assert e.value.status == 429
    rate.take("b", now=103.0)  # another token is not held up
    rate.take("a", now=161.0)  # a minute later


def test_changes_from_another_node_merge_once_and_in_order() -> None:
    """A cluster: a change made on another node is applied here as it was made there (its id,
    author, times), told to this node's pages, not passed on again; a copy that crosses an
    older or newer one never undoes the newer; garbage from the cluster's book changes nothing."""
    here, there = MarkerBook(), MarkerBook()
    sent: list[tuple[str, dict[str, Any], float]] = []
    there.changes.append(lambda op, doc, t: sent.append((op, doc, t)))
    told: list[str] = []
    here.listeners.append(told.append)
    passed_on: list[str] = []
    here.changes.append(lambda op, doc, t: passed_on.append(op))
    m = there.add({"kind": "person", "label": "zwei Personen auf dem Dach", "lat": 50.1, "lon": 8.6},
                  by="Einsatzleiter", now=1000.0)
    there.change(m.id, {"label": "drei Personen"}, by="Lagezentrum", now=1010.0)
    assert [op for op, _, _ in sent] == ["add", "change"]
    add, change = sent
    assert here.merge(*change, via="node-a")  # the newer copy first
    assert not here.merge(*add, via="node-a")  # the older one, late: no effect
    assert not here.merge(*change, via="node-a")  # a repeat: no effect
    got = here.markers[m.id]
    assert (got.label, got.by, got.changed_by, got.placed) == ("drei Personen", "Einsatzleiter", "Lagezentrum", 1000.0)
    assert len(told) == 1 and json.loads(told[0])["m"]["id"] == m.id and passed_on == []
    for bad in ({"id": "x", "kind": "bomb", "label": "", "lat": 1, "lon": 1, "placed": 1, "updated": 2},
                {"id": "y", "kind": "note", "label": "<b>\x07</b>", "lat": 1, "lon": 1, "placed": 1, "updated": 2},
                {"id": "z" * 40, "kind": "note", "label": "", "lat": 1, "lon": 1, "placed": 1, "updated": 2},
                ["not", "a", "marker"]):
        assert not here.merge("add", bad, 1.0, via="node-a")
    there.remove(m.id, by="Lagezentrum", now=1020.0)
    assert here.merge(*sent[-1], via="node-a") and m.id not in here.markers
    assert not here.merge(*sent[-1], via="node-a")
