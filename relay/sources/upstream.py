"""What another relay sends with its picture when it forwards a stream to this one.

A forwarding relay (the command vehicle's) publishes over WHIP like any sender and opens
two data channels on the same session: "relay" (the view page's protocol, spoken from the
other side: ``frames`` — which capture and arrival time belongs to which RTP timestamp —,
``telemetry`` samples with their capture times, ``source`` — title, the path so far and
each hop's delay —, ``pong`` answers to our clock pings) and "echo" (every message sent
straight back, so the forwarder sees a queue fill on the uplink). We answer on "relay"
what a view page would: a ``report`` once a second (the frame rate we decode, the freezes
we saw), which is the evidence the forwarder's ABR needs.

Everything here is from outside: bounded, typed, and text kept as text. A publisher may
only tell us about the stream it is allowed to publish.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from ..media import Unit, now
from ..registry import Entry
from ..telemetry import TelemetryError, clean_update
from ..wire import finite, json_doc, wall_ms

__all__ = ["MAX_MESSAGE_BYTES", "Upstream", "echo_back"]

log = logging.getLogger("relay.whip")
MAX_MESSAGE_BYTES = 64 * 1024
MAX_PATH = 8
NAME_MAX = 40
TITLE_MAX = 120
PING_PERIOD_S = 2.0
REPORT_PERIOD_S = 1.0
FREEZE_GAP_S = 0.2  # as the view page counts a freeze: a gap between frames over 200 ms


def _text(value: Any, limit: int) -> str:
    """Printable text only, bounded (shown to the control centre, always as text)."""
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value[:limit] if c.isprintable())


def _ms(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53:
        return value
    return None


class Upstream:
    """One forwarded session's "relay" channel, at the receiving relay."""

    def __init__(self, entry: Entry, channel: Any, me: str) -> None:
        self.entry = entry
        self.channel = channel
        self.me = me  # this relay's name, the last element of the path
        self.times: OrderedDict[int, tuple[int, int | None]] = OrderedDict()  # wire RTP ts -> ms (ours)
        self.offset_ms = 0.0  # their clock - ours
        self.clock_rtt_ms: float | None = None
        self._clock: list[tuple[float, float]] = []  # (rtt, offset) of the last pings
        self.path: list[str] = []
        self.hops: list[dict[str, Any]] = []
        self.title = ""
        self.matched = self.estimated = self.bad = 0
        self._last_delta: tuple[int, int | None] | None = None  # our arrival - theirs (ms)
        self._hop: list[float] = []  # our arrival - their arrival, recent frames (ms)
        self._decoded: OrderedDict[int, int] = OrderedDict()  # wire RTP ts -> our arrival (ms), times to come
        self._frames: list[float] = []  # when frames were decoded (monotonic), for the report
        self._freezes = 0
        channel.on("message", self._on_message)

    # ------------------------------------------------------------------ in

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str) and message.startswith('{"type":"markers"'):
            return  # the other relay's markers (all of them, maybe large): not taken over here
        if not isinstance(message, str) or len(message) > MAX_MESSAGE_BYTES:
            self.bad += 1
            return
        try:
            msg = json_doc(message, "relay message")
            kind = msg.get("type")
            handler = {"frames": self._frames_msg, "telemetry": self._telemetry_msg,
                       "source": self._source_msg, "pong": self._pong_msg}.get(kind)
            if handler is not None:
                handler(msg)
        except (ValueError, AttributeError, TypeError, KeyError, OverflowError):  # (Refused: ValueError)
            self.bad += 1
            if self.bad in (1, 100, 10_000):
                log.info("bad message from forwarding relay", extra={"stream": self.entry.name,
                                                                     "count": self.bad})

    def _frames_msg(self, msg: dict[str, Any]) -> None:
        now_ms = time.time() * 1000 + self.offset_ms  # (their clock)
        for item in msg["f"][:512]:
            if not isinstance(item, list) or len(item) not in (3, 4):
                raise ValueError("bad frame time")
            rtp, arrival, capture = item[:3]  # (a fourth: the slate, not a live picture)
            if not isinstance(rtp, int) or not 0 <= rtp < 2**32 or _ms(arrival) is None:
                raise ValueError("bad frame time")
            # Times within a day of now (their clock): 2^53-1 or 1 would show ages of ±10^15 ms.
            arrival = wall_ms(arrival, "arrival", now_ms)
            cap = None if capture is None else wall_ms(capture, "capture", now_ms)
            times = (round(arrival - self.offset_ms), None if cap is None else round(cap - self.offset_ms))
            ours = self._decoded.pop(rtp, None)
            if ours is not None:  # the frame came first (usual: the channel is a few ms behind)
                self._learn(ours, times)
            else:
                self.times[rtp] = times
                self.times.move_to_end(rtp)
        while len(self.times) > 512:
            self.times.popitem(last=False)

    def _learn(self, ours: int, times: tuple[int, int | None]) -> None:
        arrival, capture = times
        self._last_delta = (ours - arrival, None if capture is None else ours - capture)
        self._hop.append(ours - arrival)
        del self._hop[:-30]

    def _telemetry_msg(self, msg: dict[str, Any]) -> None:
        for raw in msg.get("s", [])[:100]:
            if not isinstance(raw, dict) or not isinstance(raw.get("t"), int | float):
                raise ValueError("bad sample")
            fields = {k: v for k, v in raw.items() if k != "t"}
            try:
                clean = clean_update(fields)
            except TelemetryError:
                self.entry.telemetry.bad("relay")
                continue
            t = wall_ms(float(raw["t"]) * 1000, "telemetry t", time.time() * 1000 + self.offset_ms) / 1000
            self.entry.telemetry.update("relay", clean, t=t - self.offset_ms / 1000.0)

    def _source_msg(self, msg: dict[str, Any]) -> None:
        path = msg.get("path")
        hops = msg.get("hops")
        if not isinstance(path, list) or not isinstance(hops, list):
            raise ValueError("bad source message")
        self.path = [_text(p, NAME_MAX) for p in path[:MAX_PATH]]
        self.hops = []
        for h in hops[: MAX_PATH - 1]:
            delay = h.get("ms") if isinstance(h, dict) else None
            self.hops.append({"from": _text(h.get("from"), NAME_MAX), "to": _text(h.get("to"), NAME_MAX),
                              "ms": round(delay, 1) if isinstance(delay, int | float)
                              and not isinstance(delay, bool) and 0 <= delay < 600_000 else None})
        self.title = _text(msg.get("title"), TITLE_MAX)
        self._publish_route()

    def _pong_msg(self, msg: dict[str, Any]) -> None:
        t3 = time.time() * 1000.0
        t0 = finite(msg.get("t0"), t3 - 60_000, t3, "t0")  # a ping of ours, within a minute
        t1, t2 = (wall_ms(msg.get(k), k, t3) for k in ("t1", "t2"))  # their clock: within a day
        if not 0 <= t2 - t1 < 60_000:
            raise ValueError("pong: t2 before t1, or a minute after")
        self._clock.append((max(0.0, (t3 - t0) - (t2 - t1)), ((t1 - t0) + (t2 - t3)) / 2))
        del self._clock[:-8]
        self.clock_rtt_ms, self.offset_ms = min(self._clock)  # the least-queued sample

    # ------------------------------------------------------------------ frames

    def stamp(self, unit: Unit, wire_ts: int | None) -> None:
        """Give a frame decoded from the forwarded session the times it had upstream: its
        capture time (the drone's, where known) and its first relay's arrival time, in our
        clock. A frame whose times have not come yet gets the last known delays
        (``estimated``): the channel usually arrives a few ms after the frame decodes
        (measured: 3 of 113 frames had their times first), and the delays change slowly."""
        t = now()
        self._frames.append(t)
        if len(self._frames) >= 2 and self._frames[-1] - self._frames[-2] > FREEZE_GAP_S:
            self._freezes += 1
        del self._frames[:-64]
        ours = unit.arrival_wall_ms
        times = self.times.pop(wire_ts, None) if wire_ts is not None else None
        if times is not None:
            self.matched += 1
            self._learn(ours, times)
        else:
            if wire_ts is not None:
                self._decoded[wire_ts] = ours  # its times, when they come, tell the hop's delay
                while len(self._decoded) > 128:
                    self._decoded.popitem(last=False)
            times = self._estimate(ours)
            if times is None:
                return
            self.estimated += 1
        unit.arrival_wall_ms, unit.capture_wall_ms = times

    def times_for(self, wire_ts: int, ours: int) -> tuple[int, int | None] | None:
        """The upstream (arrival, capture) ms of a frame by its RTP timestamp, without using
        it up (the decoded frame's :meth:`stamp` comes later), or from the last delays."""
        times = self.times.get(wire_ts)
        return times if times is not None else self._estimate(ours)

    def _estimate(self, ours: int) -> tuple[int, int | None] | None:
        """A frame's upstream times from the last known delays (None before any)."""
        if self._last_delta is None:
            return None
        arrival_delta, capture_delta = self._last_delta
        return ours - arrival_delta, None if capture_delta is None else ours - capture_delta

    def hop_ms(self) -> float | None:
        """The last hop's delay: our arrival - theirs, median of recent frames."""
        if not self._hop:
            return None
        return float(sorted(self._hop)[len(self._hop) // 2])

    def _publish_route(self) -> None:
        path = [*self.path, self.me] if self.path else []
        hops = list(self.hops)
        if self.path:
            hops.append({"from": self.path[-1], "to": self.me, "ms": self.hop_ms()})
        self.entry.source_info.set_route(path, hops, self.title)

    # ------------------------------------------------------------------ out

    async def run(self) -> None:
        """Pings for the clock offset; a report once a second (our fps and freezes)."""
        n = 0
        while self.channel.readyState != "closed":
            await asyncio.sleep(REPORT_PERIOD_S)
            if self.channel.readyState != "open":
                continue
            n += 1
            t = now()
            recent = [f for f in self._frames if t - f <= 1.0]
            self.channel.send(json.dumps({"type": "report", "report": {
                "fps": float(len(recent)), "freezes": self._freezes}}))
            if n % int(PING_PERIOD_S / REPORT_PERIOD_S) == 1 or len(self._clock) < 4:
                self.channel.send(json.dumps({"type": "ping", "id": n, "t0": time.time() * 1000.0}))
            self._publish_route()


def echo_back(channel: Any) -> None:
    """The "echo" channel: every short message straight back (the sender times the trip)."""
    def on_message(message: Any) -> None:
        if isinstance(message, str) and len(message) <= 16 and channel.readyState == "open":
            channel.send(message)

    channel.on("message", on_message)
