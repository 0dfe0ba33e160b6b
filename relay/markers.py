"""Markers everyone sees: a point on the ground with a kind, a short label, who placed it
and when — placed on a drone's picture or on the map, shown by every page of the incident.

:class:`MarkerBook` owns them. Every change (placed, moved, relabelled, removed) is one
event; with the record on, each event is a line of ``markers.jsonl`` beside the streams'
manifests, hash-chained and signed like them (a removal is a line of its own: nothing is
erased), and the book is rebuilt from that log at start. ``at(t)`` folds the events up to
``t``: replay shows the markers as they were. Listeners get each change encoded once
(the same bytes for every viewer's data channel).

Pure data and the log file: no network; the HTTP handlers apply the rights and the rate.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from xml.sax.saxutils import escape

from .config.checks import MARKER_KINDS
from .wire import Refused, finite, safe_text

__all__ = ["KINDS", "MAX_LABEL", "Marker", "MarkerBook", "MarkerError", "RateBook", "clean_fields",
           "geojson", "kml"]

KINDS = MARKER_KINDS
KIND_NAMES = {"person": "Person", "hotspot": "Hot spot", "hazard": "Hazard", "access": "Access point",
              "water": "Water source", "note": "Note"}
MAX_LABEL = 80
MAX_HISTORY = 50_000  # events kept in memory for replay; the log keeps all


class MarkerError(ValueError):
    """A marker request that cannot be taken: (HTTP status, one line)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Log(Protocol):  # relay.record.chain.Chain (the record is optional)
    path: Path

    def append(self, doc: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Marker:
    id: str
    kind: str
    label: str
    lat: float
    lon: float
    by: str  # who placed it (the token's label, or its role)
    placed: float  # wall-clock seconds
    updated: float
    stream: str = ""  # the picture it was placed on ("" = on the map)
    changed_by: str = ""

    def doc(self) -> dict[str, Any]:
        return asdict(self)


def clean_label(raw: Any) -> str:
    if not isinstance(raw, str):
        raise MarkerError(422, "label must be text")
    if len(raw) > MAX_LABEL:
        raise MarkerError(422, f"label is longer than {MAX_LABEL} characters")
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in raw):
        raise MarkerError(422, "label must not contain control characters")
    try:  # (lone surrogates, U+FFFE/U+FFFF: no XML — the KML export — can hold them)
        safe_text(raw, MAX_LABEL, "label")
    except Refused:
        raise MarkerError(422, "label must be plain text (no surrogates or non-characters)") from None
    return raw.strip()


def _coord(raw: Mapping[str, Any], key: str, lo: float, hi: float) -> float:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
        raise MarkerError(422, f"{key} must be a number in {lo:g}..{hi:g}")
    return round(float(v), 7)


def clean_fields(raw: Mapping[str, Any], partial: bool) -> dict[str, Any]:
    """kind, label, lat, lon: checked; unknown keys refused. ``partial``: any subset."""
    allowed = {"kind", "label", "lat", "lon"}
    unknown = set(raw) - allowed
    if unknown:
        raise MarkerError(422, f"unknown marker field {sorted(unknown)[0]!r}")
    out: dict[str, Any] = {}
    if "kind" in raw or not partial:
        kind = raw.get("kind", "note")
        if kind not in KINDS:
            raise MarkerError(422, f"kind must be one of {', '.join(KINDS)}")
        out["kind"] = kind
    if "label" in raw or not partial:
        out["label"] = clean_label(raw.get("label", ""))
    if ("lat" in raw) != ("lon" in raw):
        raise MarkerError(422, "lat and lon go together")
    if "lat" in raw or not partial:
        out["lat"] = _coord(raw, "lat", -90.0, 90.0)
        out["lon"] = _coord(raw, "lon", -180.0, 180.0)
    if partial and not out:
        raise MarkerError(422, "nothing to change: give kind, label or lat and lon")
    return out


def _message(op: str, doc: dict[str, Any], n: int) -> str:
    """``n``: the book's version after the change — a page applies a marker's changes in
    that order whichever channel brings a copy first (see viewer/markers.js)."""
    return json.dumps({"type": "marker", "op": op, "m": doc, "n": n}, separators=(",", ":"))


class MarkerBook:
    def __init__(self, log: Log | None = None, max_markers: int = 500,
                 lines: Iterable[dict[str, Any]] = ()) -> None:
        self.log = log
        self.max_markers = max_markers
        self.markers: dict[str, Marker] = {}
        self.history: deque[tuple[float, str, dict[str, Any]]] = deque(maxlen=MAX_HISTORY)
        self.listeners: list[Callable[[str], None]] = []
        # Told of each change made here (op, marker, time): a cluster passes it to the others.
        self.changes: list[Callable[[str, dict[str, Any], float], None]] = []
        self.version = 0
        self._snapshot: tuple[int, str] = (-1, "")  # (version, every marker encoded)
        self._lock = threading.Lock()
        for line in lines:  # the log's verified lines, oldest first
            self._apply(line.get("op", ""), line.get("m"), float(line.get("t", 0)))

    @property
    def recorded(self) -> bool:
        return self.log is not None

    def _apply(self, op: str, m: Any, t: float) -> None:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            return
        if op == "remove":
            self.markers.pop(m["id"], None)
        elif op in ("add", "change"):
            try:
                self.markers[m["id"]] = Marker(**m)
            except TypeError:
                return
        else:
            return
        self.history.append((t, op, m))
        self.version += 1

    def _event(self, op: str, m: Marker | dict[str, Any], t: float, via: str = "") -> dict[str, Any]:
        doc = m.doc() if isinstance(m, Marker) else m
        if self.log is not None:
            # the signed record first: what is not in the log did not happen
            line = {"op": op, "m": doc, "t": round(t, 3),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))}
            self.log.append({**line, "via": via} if via else line)
        self._apply(op, doc, t)
        msg = _message(op, doc, self.version)
        for fn in tuple(self.listeners):
            fn(msg)
        if not via:
            for change in tuple(self.changes):
                change(op, doc, t)
        return doc

    def merge(self, op: str, raw: Any, t: Any, via: str) -> bool:
        """A change made on another node of the cluster (``via``), applied here as it was
        made there — its id, author and times — unless this book already has it or newer
        (copies cross; a node rejoining replays the cluster's book). Checked as a change
        made here is. Returns whether it changed anything."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or len(raw["id"]) > 32:
            return False
        with self._lock:
            ours = self.markers.get(raw["id"])
            try:
                late = time.time() + 86400  # a time from another node: finite, not far ahead
                t = finite(t, 0, late, "t")
                if op == "remove":
                    if ours is None:
                        return False
                    self._event("remove", {"id": raw["id"], "by": clean_label(raw.get("by", ""))}, t, via)
                    return True
                if op not in ("add", "change"):
                    return False
                fields = clean_fields({k: raw.get(k) for k in ("kind", "label", "lat", "lon")}, partial=False)
                m = Marker(id=raw["id"], by=clean_label(raw.get("by", "")),
                           placed=finite(raw["placed"], 0, late, "placed"),
                           updated=finite(raw["updated"], 0, late, "updated"),
                           stream=clean_label(raw.get("stream", "")),
                           changed_by=clean_label(raw.get("changed_by", "")), **fields)
            except (MarkerError, KeyError, TypeError, ValueError):  # (Refused is a ValueError)
                return False
            if ours is not None and ours.updated >= m.updated:
                return False
            if ours is None and len(self.markers) >= self.max_markers:
                return False
            self._event("add" if ours is None else "change", m, t, via)
            return True

    def add(self, fields: dict[str, Any], by: str, stream: str = "", now: float | None = None) -> Marker:
        t = time.time() if now is None else now
        with self._lock:
            if len(self.markers) >= self.max_markers:
                raise MarkerError(507, f"the incident has its maximum of {self.max_markers} markers: "
                                       "remove some first")
            m = Marker(id=secrets.token_urlsafe(6), kind=fields["kind"], label=fields["label"],
                       lat=fields["lat"], lon=fields["lon"], by=by, placed=round(t, 3),
                       updated=round(t, 3), stream=stream)
            self._event("add", m, t)
            return m

    def change(self, marker_id: str, fields: dict[str, Any], by: str, now: float | None = None) -> Marker:
        t = time.time() if now is None else now
        with self._lock:
            old = self.markers.get(marker_id)
            if old is None:
                raise MarkerError(404, "no such marker (removed, or never placed)")
            m = replace(old, **fields, updated=round(t, 3), changed_by=by)
            self._event("change", m, t)
            return m

    def remove(self, marker_id: str, by: str, now: float | None = None) -> Marker:
        t = time.time() if now is None else now
        with self._lock:
            old = self.markers.get(marker_id)
            if old is None:
                raise MarkerError(404, "no such marker (removed, or never placed)")
            self._event("remove", {"id": marker_id, "by": by}, t)
            return old

    def listing(self) -> list[dict[str, Any]]:
        return [m.doc() for m in sorted(self.markers.values(), key=lambda m: m.placed)]

    def at(self, t: float) -> list[dict[str, Any]]:
        """The markers as they were at wall-clock time ``t`` (replay)."""
        state: dict[str, dict[str, Any]] = {}
        for when, op, m in self.history:
            if when > t:
                break
            if op == "remove":
                state.pop(m["id"], None)
            else:
                state[m["id"]] = m
        return sorted(state.values(), key=lambda m: m["placed"])

    def snapshot_message(self) -> str:
        """Every marker now, for a viewer whose channel just opened: encoded once per version
        of the book, not once per viewer (the wall opens a channel per tile)."""
        if self._snapshot[0] != self.version:
            doc = {"type": "markers", "all": self.listing(), "n": self.version}
            self._snapshot = (self.version, json.dumps(doc, separators=(",", ":")))
        return self._snapshot[1]


def geojson(markers: list[dict[str, Any]]) -> dict[str, Any]:
    """A FeatureCollection (RFC 7946: [lon, lat])."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": m["id"], "geometry": {"type": "Point", "coordinates": [m["lon"], m["lat"]]},
         "properties": {k: m[k] for k in ("kind", "label", "by", "placed", "updated", "stream")}}
        for m in markers]}


def kml(markers: list[dict[str, Any]], name: str) -> str:
    """KML 2.2 placemarks; every text escaped."""
    marks = "".join(
        f"<Placemark><name>{escape(KIND_NAMES.get(m['kind'], m['kind']))}: {escape(m['label'])}</name>"
        f"<description>placed by {escape(m['by'])} at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(m['placed']))}</description>"
        f"<Point><coordinates>{m['lon']},{m['lat']},0</coordinates></Point></Placemark>"
        for m in markers)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2">'
            f"<Document><name>{escape(name)}</name>{marks}</Document></kml>\n")


class RateBook:
    """At most ``per_min`` marker changes a minute per token (sliding window)."""

    def __init__(self, per_min: int) -> None:
        self.per_min = per_min
        self._seen: dict[str, deque[float]] = {}

    def take(self, who: str, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        if len(self._seen) > 10_000:
            self._seen = {k: w for k, w in self._seen.items() if w and w[-1] > t - 60}
        w = self._seen.setdefault(who, deque())
        while w and w[0] <= t - 60.0:
            w.popleft()
        if len(w) >= self.per_min:
            raise MarkerError(429, f"too many marker changes: at most {self.per_min} a minute per token")
        w.append(t)
