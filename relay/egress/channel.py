"""The view page's "relay" data channel: the protocol and the viewer report's schema.

Relay → page: ``hello`` (once open), ``pong`` (NTP-style clock pings), ``frames`` (which
arrival and capture time belongs to which RTP timestamp), ``telemetry`` (samples with
their capture times), ``rendition`` (a switch, see :meth:`Viewer.announce`), ``markers``
(every marker, once open) and ``marker`` (one placed, changed or removed), ``end``.
Page → relay: ``ping`` and ``report`` (once a second: what the viewer sees).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import LatencyConfig
from ..media import now
from ..registry import Entry
from ..wire import finite, json_doc
from .viewer import Viewer

__all__ = ["MAX_REPORT_BYTES", "REPORT_ENUMS", "REPORT_NUMBERS", "Ping", "clean_report",
           "read_viewer_message", "route_message", "send_times_and_telemetry", "serve"]

log = logging.getLogger("relay.whep")
FRAME_TIMES_PERIOD_S = 0.2
TELEMETRY_BATCH = 50  # samples in one data-channel message at most (~12 KB)
MAX_REPORT_BYTES = 4096
MAX_BUFFERED = 256 * 1024  # bytes queued on a channel (SCTP not acknowledging): send no more
# A viewer's report: each field's type and the range (or the values) it may take. Anything
# else is dropped; a number out of range is dropped, not clamped (it would be a lie).
REPORT_NUMBERS: dict[str, tuple[type, float, float]] = {
    "latency_ms": (float, -1000, 600_000),
    "latency_p95_ms": (float, -1000, 600_000),
    "fps": (float, 0, 1000),
    "bitrate_kbps": (float, 0, 1_000_000),
    "packets_lost": (int, -(2**31), 2**31),
    "loss_pct": (float, 0, 100),
    "frames_decoded": (int, 0, 2**40),
    "frames_dropped": (int, 0, 2**40),
    "jitter_buffer_ms": (float, 0, 600_000),
    "clock_offset_ms": (float, -86_400_000, 86_400_000),
    "clock_rtt_ms": (float, 0, 600_000),
    "width": (int, 0, 16384),
    "height": (int, 0, 16384),
    "freezes": (int, 0, 2**31),  # presented-frame gaps over 200 ms since the session began
}
REPORT_ENUMS = {"latency_kind": ("glass-to-glass", "relay-to-screen")}
UA_MAX = 200


def clean_report(raw: Any) -> dict[str, Any]:
    """Keep the known fields of a viewer's report, typed and in range; drop the rest."""
    if not isinstance(raw, dict):
        raise ValueError("report must be a JSON object")
    out: dict[str, Any] = {}
    for key, (typ, lo, hi) in REPORT_NUMBERS.items():
        v = raw.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi:
            out[key] = typ(v)
    for key, allowed in REPORT_ENUMS.items():
        if raw.get(key) in allowed:
            out[key] = raw[key]
    ua = raw.get("user_agent")
    if isinstance(ua, str):
        # Printable ASCII only: a user agent is shown to the control centre (as text).
        out["user_agent"] = "".join(c for c in ua[:UA_MAX] if 32 <= ord(c) < 127)
    return out


@dataclass(frozen=True)
class Ping:
    """A viewer's clock ping: its id and send time, finite numbers sent back as they came."""

    id: float
    t0: float


def read_viewer_message(message: Any) -> Ping | dict[str, Any] | None:
    """A message on a viewer's channel, read by the one rule for it: a :class:`Ping`, a
    report (cleaned, :func:`clean_report`), or None for a kind the relay does not take.
    ValueError for what is not a message: not text, over MAX_REPORT_BYTES, not a JSON
    object, a ping whose fields are not finite numbers, a report that is not an object."""
    if not isinstance(message, str) or len(message) > MAX_REPORT_BYTES:
        raise ValueError("not a text message of at most 4 KB")
    msg = json_doc(message, "viewer message")
    if not isinstance(msg, dict):
        raise ValueError("not a JSON object")
    kind = msg.get("type")
    if kind == "ping":
        finite(msg.get("id"), -1e16, 1e16, "ping id")  # (Refused is a ValueError)
        finite(msg.get("t0"), -1e16, 1e16, "ping t0")
        return Ping(msg["id"], msg["t0"])
    if kind == "report":
        return clean_report(msg.get("report"))
    return None


def serve(viewer: Viewer, ch: Any, latency: LatencyConfig, on_report: Callable[[], None],
          greetings: list[Callable[[], str]] | None = None) -> None:
    """Speak the protocol on ``ch``: hello when it opens (then each of ``greetings``), pongs,
    and the viewer's reports (kept in ``viewer.info``; ``on_report`` is called after each)."""
    info = viewer.info
    viewer.channel = ch
    thresholds = {"green_ms": latency.green_ms, "yellow_ms": latency.yellow_ms, "creep_ms": latency.creep_ms}

    @ch.on("open")  # type: ignore[untyped-decorator]
    def on_open() -> None:
        ch.send(json.dumps({"type": "hello", "stream": viewer.entry.name, "viewer": info.public_id,
                            "rendition": info.rendition, "auto": info.auto,
                            "reason": info.rendition_reason, "thresholds": thresholds}))
        for greet in greetings or ():
            ch.send(greet())

    if ch.readyState == "open":
        on_open()

    @ch.on("message")  # type: ignore[untyped-decorator]
    def on_message(message: Any) -> None:
        t1 = time.time() * 1000.0
        viewer.heard_at = now()  # (any message: the peer is there, whatever it says)
        try:
            msg = read_viewer_message(message)
        except ValueError:
            info.bad_messages += 1
            if info.bad_messages in (1, 100, 10_000):  # a flood is three lines, not thousands
                log.info("bad data channel message", extra={"viewer": info.public_id,
                                                            "count": info.bad_messages})
            return
        if isinstance(msg, Ping):
            if ch.bufferedAmount > MAX_BUFFERED:
                return  # nothing more while the viewer does not read
            t2 = time.time() * 1000.0
            ch.send(json.dumps({"type": "pong", "id": msg.id, "t0": msg.t0, "t1": t1, "t2": t2}))
        elif msg is not None:
            info.report = msg
            info.report_time = time.time()
            on_report()


def route_message(entry: Entry, me: str) -> str:
    """``source``: the stream's title, the path it took to this relay, each hop's delay."""
    path, hops = entry.source_info.route(me)
    return json.dumps({"type": "source", "title": entry.title or entry.source_info.upstream_title,
                       "path": path, "hops": hops})


async def send_times_and_telemetry(viewer: Viewer, period_s: float = FRAME_TIMES_PERIOD_S,
                                   me: str = "") -> None:
    """Five times a second: which arrival and capture time belongs to which RTP timestamp
    of the frames this viewer was sent (the browser matches them with what it presents),
    and the telemetry samples since the last message, each tagged with its capture time
    (encoded once per sample, the same bytes for every viewer). With nothing new, once a
    second: how old the newest telemetry is, so a silent source shows stale."""
    tele = viewer.entry.telemetry
    track = viewer.track
    sent_seq = 0
    quiet_since = route_at = 0.0
    while True:
        await asyncio.sleep(period_s)
        ch = viewer.channel
        if ch is None or ch.readyState != "open":
            continue
        if me and now() - route_at >= 1.0:  # (a WHEP client that is a relay passes it on)
            route_at = now()
            ch.send(route_message(viewer.entry, me))
        if track.frame_times:
            frames = list(track.frame_times)
            track.frame_times.clear()
            ch.send(json.dumps({"type": "frames", "f": frames}, separators=(",", ":")))
        tele.flush()
        # A viewer that joins gets the last few seconds, not the whole ring: the page
        # needs samples around the frames it shows, and one message must stay small.
        samples = tele.since(max(sent_seq, tele.seq - TELEMETRY_BATCH))
        t = now()
        if samples or (tele.state and t - quiet_since >= 1.0):
            sent_seq = tele.seq
            quiet_since = t
            age = tele.age()
            head = json.dumps({"type": "telemetry", "stale": tele.stale(),
                               "age": None if age is None else round(age, 2)}, separators=(",", ":"))
            ch.send(f'{head[:-1]},"s":[{",".join(samples)}]}}')
