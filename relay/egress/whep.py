"""WHEP egress: a viewer's SDP offer in, an answer out, the rendition's shared packets to it.

Each viewer reads its rendition through its own bounded queue (``Stream.subscribe``) and
its sender only packetises: no per-viewer encoding. A data channel ("relay") carries
clock pings (NTP-style) and the viewer's once-a-second report of what it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..abr import AbrController, PadProbe, QueueWatch, Rung, Sample, Switch
from ..auth import Principal
from ..config import PASSTHROUGH, Config
from ..errors import RelayError
from ..limits import Limiter
from ..media import Unit, now
from ..registry import Entry, Registry, ViewerInfo
from ..stream import Reader, Stream
from ..webrtc import (
    IcePolicy,
    PacketTrack,
    PeerSession,
    RtcpTap,
    answer_offer,
    can_pad,
    check_offer,
    listen_for_keyframe_requests,
    new_peer,
    prefer_codec,
    send_padding,
    sent_packet_count,
)

__all__ = ["WhepEgress"]

log = logging.getLogger("relay.whep")
AUTO = "auto"  # the rendition name that asks the relay to choose from the viewer's link
FRAME_TIMES_PERIOD_S = 0.2
TELEMETRY_BATCH = 50  # samples in one data-channel message at most (~12 KB)
VIEWER_SILENT_S = 6.0
ABR_PERIOD_S = 0.5
PROBE_PAD_S = 1.2  # a padding probe pads this long (ramping up over PROBE_RAMP_S),
PROBE_RAMP_S = 0.6
ECHO_BASE_S = 0.2  # round trips timed before the padding starts: the baseline
ECHO_EVERY_S = 0.04
ECHO_QUEUE_S = 0.025  # two round trips this much over the baseline (and its spread): a queue
PROBE_TAIL_S = 0.4  # then waits this long for the NACKs of what the link's queue dropped
WATCH_EVERY_S = 0.1  # an auto viewer's link is watched for a standing queue this often (QueueWatch)

MAX_REPORT_BYTES = 4096
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


def _loss_over(hist: deque[tuple[float, int, int]], t: float, min_s: float = 1.0,
               min_packets: int = 30) -> float | None:
    """Loss from cumulative receiver-report counters over at least ``min_s`` and
    ``min_packets`` (one report often covers a handful of packets: one lost is not 25 %)."""
    if len(hist) < 2:
        return None
    _, lost1, exp1 = hist[-1]
    for t0, lost0, exp0 in reversed(hist):
        expected = exp1 - exp0
        if t - t0 >= min_s and expected >= min_packets:
            return max(0.0, min(1.0, (lost1 - lost0) / expected))
    return None


class Echoes:
    """Round trips to the viewer over its "echo" data channel (unordered, no retransmission:
    the page sends each message straight back). It shares the viewer's link, so a queue
    filling up on the way (a padding probe the link cannot carry) shows as a growing round
    trip, within tens of milliseconds; a lost message is simply never answered."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._n = 0
        self._sent: dict[int, float] = {}
        self.rtts: deque[tuple[float, float]] = deque(maxlen=64)  # (answered at, round trip s)
        self.watch = QueueWatch()

        @channel.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: Any) -> None:
            if (not isinstance(message, str) or len(message) > 16 or not message.isascii()
                    or not message.isdigit()):
                return
            sent = self._sent.pop(int(message), None)  # only what we sent counts, once
            if sent is not None:
                t = now()
                self.rtts.append((t, t - sent))
                self.watch.answered(sent, t)

    def send_text(self, text: str) -> None:
        """A message for the page (JSON, never echoed back), if the channel is open."""
        if self.channel.readyState == "open":
            self.channel.send(text)

    def send(self) -> bool:
        if self.channel.readyState != "open":
            return False
        self._n += 1
        self._sent[self._n] = t = now()
        self.watch.sent(t)
        if len(self._sent) > 64:
            self._sent.pop(next(iter(self._sent)))
        self.channel.send(str(self._n))
        return True


class WhepEgress:
    def __init__(self, registry: Registry, config: Config, limiter: Limiter | None = None,
                 ice: Callable[[], list[dict[str, Any]]] | None = None,
                 sessions_of: Callable[[str], int] | None = None) -> None:
        self.registry = registry
        self.config = config
        self.limiter = limiter or Limiter(config.limits)
        self.ice = ice or (lambda: [])
        self.sessions_of = sessions_of  # all sessions (WHIP + WHEP) from one client address
        self.sessions: dict[str, PeerSession] = {}
        self.tracks: dict[str, PacketTrack] = {}
        self.channels: dict[str, Any] = {}
        self.echoes: dict[str, Echoes] = {}
        self.creep_resets = 0

    def _admit(self, entry: Entry, remote: str) -> None:
        lim = self.config.limits
        if len(entry.viewers) >= lim.viewers_per_stream:
            raise self.limiter.refuse("viewers_per_stream", 503,
                                      f"stream {entry.name!r} has its maximum of "
                                      f"{lim.viewers_per_stream} viewers")
        if len(self.sessions) >= lim.viewers_total:
            raise self.limiter.refuse("viewers_total", 503,
                                      f"the relay has its maximum of {lim.viewers_total} viewers")
        mine = self.sessions_of(remote) if self.sessions_of else sum(
            1 for s in self.sessions.values() if s.remote == remote)
        if mine >= lim.sessions_per_client:
            raise self.limiter.refuse("sessions_per_client", 429,
                                      f"{remote} already has {mine} sessions "
                                      f"(limits.sessions_per_client = {lim.sessions_per_client})")

    async def play(
        self, stream: str, offer_sdp: str, remote: str, rendition: str | None = None,
        principal: Principal | None = None,
    ) -> tuple[str, str]:
        """Start a viewing session; returns (session id, SDP answer)."""
        entry = self.registry.get(stream)
        if entry is None:
            raise RelayError(404, f"no stream {stream!r}")
        self._admit(entry, remote)
        ladder = self._ladder(entry)
        auto = rendition in (None, AUTO) and len(ladder) > 1
        if rendition == AUTO and not auto:
            rendition = None  # one rung or passthrough only: nothing to choose between
        if auto:
            rendition = AbrController.start_rung(ladder, self.config.abr.start_kbps)
        elif rendition is None:
            rendition = PASSTHROUGH if entry.mode == "passthrough" else self.config.renditions[0].name
        out = entry.rendition_stream(rendition)
        rend = self.config.rendition(rendition)
        if out is None:
            names = [r.name for r in self.config.renditions] if entry.mode != "passthrough" else []
            if entry.passthrough is not None:
                names.append(PASSTHROUGH)
            raise RelayError(404, f"stream {stream!r} has no rendition {rendition!r} "
                                  f"(mode {entry.mode}; have: {', '.join(names)})")
        codec = rend.codec if rend is not None else "h264"
        codecs = check_offer(offer_sdp, "view")
        if codec not in codecs:
            raise RelayError(
                422, f"rendition {rendition!r} is {codec}; the offer only accepts {codecs}"
            )
        pc = new_peer(self.ice())
        session = PeerSession("whep", stream, pc, remote)
        session.principal = principal
        transceiver = pc.addTransceiver("video", direction="sendonly")
        prefer_codec(transceiver, codec)
        name = rendition
        info = ViewerInfo(session=session.id, rendition=name, remote=remote,
                          who=principal.name if principal is not None else "", auto=auto,
                          rendition_reason="auto: start" if auto else "chosen")

        def on_sent(unit: Unit) -> None:
            entry.latency.record(info.rendition, unit.timeline)

        track = PacketTrack(lambda: out.subscribe(label=session.public), on_sent)
        transceiver.sender.replaceTrack(track)
        track.sender = transceiver.sender
        session.spawn(self._send_times_and_telemetry(entry, track, session))

        def keyframe_request(reason: str) -> None:
            # Through this viewer's own budget: its PLIs cannot multiply everyone's keyframes.
            if track.reader is not None:
                track.reader.request_keyframe(reason)

        tap = listen_for_keyframe_requests(transceiver.sender, keyframe_request)
        session.spawn(self._watch_silence(tap, session))

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            if channel.label == "echo":
                self.echoes[session.id] = Echoes(channel)
            else:
                self._serve_channel(entry, info, track, channel)

        self.sessions[session.id] = session
        self.tracks[session.id] = track
        session.on_close.append(self._closed)
        try:
            answer = await answer_offer(pc, offer_sdp, IcePolicy.of(self.config.webrtc))
        except BaseException:
            await session.close("offer failed")
            raise
        entry.viewers[session.id] = info
        session.spawn(self._poll_rtt(info, transceiver.sender, tap))
        if auto:
            rungs = [r for r in ladder if r.name in {x.name for x in self.config.renditions
                                                      if x.codec == codec}]
            ctl = AbrController(rungs, rendition, hold_s=self.config.abr.hold_s,
                                max_hold_s=self.config.abr.max_hold_s)
            session.spawn(self._adapt(entry, info, track, tap, transceiver.sender, ctl, session))
        log.info("viewer joined", extra={"stream": stream, "rendition": name,
                                         "session": session.public, "remote": remote})
        return session.id, answer

    def _ladder(self, entry: Entry) -> list[Rung]:
        if entry.mode == "passthrough" or not self.config.abr.enabled:
            return []
        return [Rung(r.name, r.bitrate_kbps, r.max_fps) for r in self.config.renditions]

    async def _adapt(self, entry: Entry, info: ViewerInfo, track: PacketTrack, tap: RtcpTap,
                     sender: Any, ctl: AbrController, session: PeerSession) -> None:
        """Every 0.5 s: what the link showed -> the controller -> a keyframe-aligned switch."""
        plis = nacks_new = freezes = 0
        sent_total: int | None = None
        bytes_total: int | None = None
        last_rr: Any = None
        rr_seen = 0.0  # when the previous receiver report arrived (its interval starts there)
        rr_hist: deque[tuple[float, int, int]] = deque(maxlen=64)  # (time, lost, expected)
        changed = {"at": 0.0, "wall": 0.0, "n": 0}  # the last change-over (monotonic, wall clock, count)
        probe: asyncio.Task[None] | None = None
        watching = False
        pkt_bytes = 0.0  # a media packet's mean size, lately

        def forget() -> None:
            """A failed padding probe: the receiver reports and viewer reports that cover it
            describe its overload, not the rung."""
            changed["at"], changed["wall"] = time.monotonic(), time.time()
            rr_hist.clear()

        def perform(sw: Switch) -> None:
            target = entry.rendition_stream(sw.to)
            if target is None:
                return
            log.info("viewer switches rendition", extra={
                "stream": entry.name, "viewer": info.public_id, "from": sw.frm, "to": sw.to,
                "reason": sw.reason})

            def switched() -> None:
                after_rtp = tap.change_over()  # before the new rung's first packet is sent
                changed["at"], changed["wall"] = time.monotonic(), time.time()
                changed["n"] += 1
                rr_hist.clear()
                info.rendition = sw.to
                info.rendition_reason = sw.reason
                info.switches.append({"t": time.time(), "from": sw.frm, "to": sw.to, "reason": sw.reason})
                del info.switches[:-20]
                # The page labels the picture from the first frame after ``after_rtp`` on. The
                # reliable channel may be held up for a second behind a lost message on a link
                # that just collapsed: copies go on the echo channel too (unordered, never
                # retransmitted: one of three gets through), and the page keeps the first.
                msg = json.dumps({"type": "rendition", "name": sw.to, "auto": True, "reason": sw.reason,
                                  "n": changed["n"], "after_rtp": after_rtp})
                ch = self.channels.get(session.id)
                if ch is not None and ch.readyState == "open":
                    ch.send(msg)
                echo = self.echoes.get(session.id)
                if echo is not None:
                    loop = asyncio.get_running_loop()
                    for k in range(3):
                        loop.call_later(0.08 * k, echo.send_text, msg)

            def subscribe(target: Stream = target) -> Reader:
                return target.subscribe(label=session.public)

            track.switch(subscribe, switched)

        t = time.monotonic()
        while True:
            # Every ABR_PERIOD_S, or at once when the viewer's estimate collapses (a link
            # that fell: every half second there counts).
            tap.remb_alarm_bps = ctl.remb_collapse * ctl.sent_kbps * 1000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tap.alarm.wait(), max(0.05, t + ABR_PERIOD_S - time.monotonic()))
            tap.alarm.clear()
            period = max(0.05, time.monotonic() - t)
            t = time.monotonic()
            loss = None
            sent = 0
            sent_kbps: float | None = None
            try:
                for st in (await sender.getStats()).values():
                    if st.type == "outbound-rtp":
                        if sent_total is not None:
                            sent = max(0, st.packetsSent - sent_total)
                        sent_total = st.packetsSent
                        if bytes_total is not None:
                            sent_kbps = 8 * max(0, st.bytesSent - bytes_total) / period / 1000
                            if sent:
                                # Over a second or two: what a full queue delivers after a
                                # switch down is still the old rung's (larger) packets.
                                size = max(0, st.bytesSent - bytes_total) / sent
                                pkt_bytes = size if not pkt_bytes else 0.7 * pkt_bytes + 0.3 * size
                        bytes_total = st.bytesSent
                    if st.type == "remote-inbound-rtp" and st.timestamp != last_rr:
                        last_rr = st.timestamp
                        if rr_seen >= changed["at"]:  # it covers only the current rung
                            rr_hist.append((t, st.packetsLost, st.packetsLost + st.packetsReceived))
                        rr_seen = t
            except Exception:
                pass
            loss = _loss_over(rr_hist, t)
            remb = tap.remb_bps / 1000.0 if tap.remb_bps and t - tap.remb_time < 3.0 else None
            # The viewer's report covers the second before it: only one made entirely on
            # the current rung is evidence about it.
            fresh = time.time() - info.report_time < 2.5 and info.report_time - changed["wall"] > 1.2
            rep = info.report if fresh else {}
            reported = int(info.report.get("freezes", freezes))
            new_freezes = max(0, reported - freezes) if fresh else 0
            freezes = reported
            # Retransmit at most a quarter of what the viewer is sent (see RtcpTap).
            tap.nack_rate = max(10.0, 0.25 * sent / period)
            queue_ms = link_kbps = None
            echo = self.echoes.get(session.id) if self.config.abr.queue_watch else None
            if echo is not None:
                if not watching:
                    watching = True
                    session.spawn(self._watch_queue(echo, tap))
                standing = echo.watch.standing(now())
                if standing is not None:
                    queue_ms = standing[1] * 1000
                    # (Receiver reports from before the last switch describe the old rung.)
                    pps = tap.delivered_pps(max(standing[0], changed["at"]))
                    if pps is not None and pkt_bytes:
                        link_kbps = pps * pkt_bytes * 8 / 1000  # the media it delivered
            sample = Sample(t=t, remb_kbps=remb, loss=loss, nacks=tap.nacks_new - nacks_new, sent=sent,
                            sent_kbps=sent_kbps, plis=tap.plis - plis, fps=rep.get("fps"),
                            freezes=new_freezes, queue_ms=queue_ms, link_kbps=link_kbps)
            plis, nacks_new = tap.plis, tap.nacks_new
            info.samples.append({"t": round(time.time(), 2), "rendition": info.rendition, "remb_kbps": remb,
                                 "loss": None if loss is None else round(loss, 3), "nacks_new": sample.nacks,
                                 "sent": sent, "sent_kbps": None if sent_kbps is None else round(sent_kbps),
                                 "nacks_refused": tap.nacks_refused, "nacks_stale": tap.nacks_stale,
                                 "plis": sample.plis, "fps": sample.fps, "freezes": new_freezes,
                                 "queue_ms": None if queue_ms is None else round(queue_ms),
                                 "link_kbps": None if link_kbps is None else round(link_kbps)})
            del info.samples[:-240]
            info.estimate_kbps = round(ctl.estimate_kbps, 1) if ctl.estimate_kbps else None
            ctl.padding = can_pad(sender)
            sw = ctl.feed(sample)
            if probe is not None and ctl.probing is None and not probe.done():
                probe.cancel()
            if sw is None:
                continue
            if sw.probe:
                probe = session.spawn(self._pad_probe(entry, info, tap, sender, ctl, perform, forget))
                continue
            perform(sw)

    async def _pad_probe(self, entry: Entry, info: ViewerInfo, tap: RtcpTap, sender: Any,
                         ctl: AbrController, perform: Callable[[Switch], None],
                         forget: Callable[[], None]) -> None:
        """Pad the viewer's link with copies of packets already sent (on the retransmission
        stream: the browser drops the duplicates) up to each probed rung's rate in turn, and
        judge from what the link shows meanwhile (:class:`PadProbe` decides): a link that
        cannot carry a rung pays a few hundred ms of queue, and the step up goes to the best
        rung it carried. Round trips are timed for ECHO_BASE_S before the padding (the
        baseline); without an echo channel only the first stage is tried (NACKs need time
        to show)."""
        to = ctl.probing
        echo = self.echoes.get(info.session)
        timed = echo is not None and echo.channel.readyState == "open"
        remb0 = tap.remb_bps if tap.remb_bps and now() - tap.remb_time < 3.0 else None
        if remb0 is not None and remb0 > 1300 * ctl.sent_kbps:
            # The estimate is far above what the viewer gets (still falling after a fall of
            # the link, or never tested): its next cut says nothing about this probe.
            remb0 = None
        probe = PadProbe(ctl.probe_stages() if timed else ctl.probe_stages()[:1], remb0=remb0,
                         pad_s=PROBE_PAD_S, ramp_s=PROBE_RAMP_S, queue_over_s=ECHO_QUEUE_S)
        lead = ECHO_BASE_S if timed else 0.0
        remb_at = tap.remb_time
        padded = 0
        due = 0.0  # bytes of padding owed by now
        n0 = p0 = nacks = sent = 0
        started = False
        next_echo = last = 0.0
        t0 = time.monotonic()
        end = lead + len(probe.stages) * PROBE_PAD_S + PROBE_TAIL_S
        while (el := time.monotonic() - t0) < end:
            if echo is not None and lead and el >= next_echo:
                echo.send()
                next_echo = el + ECHO_EVERY_S
            if el < lead:
                await asyncio.sleep(0.01)  # the round trip before any padding: the baseline
                continue
            pad_el = el - lead
            if not started:
                started, last = True, pad_el
                n0, p0 = tap.nacks_new, sent_packet_count(sender)
                if echo is not None:
                    probe.baseline([r for at, r in echo.rtts if at >= t0])
            kbps = probe.rate_kbps(pad_el)
            nacks, sent = tap.nacks_new - n0, sent_packet_count(sender) - p0
            if tap.remb_time != remb_at and tap.remb_bps is not None:
                remb_at = tap.remb_time
                probe.estimate(pad_el, tap.remb_bps)
            if echo is not None:
                probe.round_trips([r for at, r in echo.rtts if at >= t0 + lead + 0.05])
            if probe.stop(pad_el, ctl.probe_failing(nacks, sent)):
                break
            if kbps is not None:
                due += kbps * 125 * (pad_el - last)  # kbit/s -> bytes
                if due > padded:
                    padded += await send_padding(sender, int(due) - padded)
            last = pad_el
            await asyncio.sleep(0.01)
        if ctl.probing != to:
            return  # the controller moved on
        res, sw = ctl.probe_result(time.monotonic(), nacks, sent, remb_fell_to=probe.fell_to,
                                   queue_ms=None if probe.queue_s is None else probe.queue_s * 1000,
                                   tried=probe.tried)
        info.probes.append({"t": time.time(), "to": res.to, "ok": res.ok, "detail": res.detail,
                            "stages": [n for n, _ in probe.stages[:probe.k + 1]],
                            "switch_to": sw.to if sw is not None else None,
                            "padding_kbps": round(probe.padding_kbps), "padded_kB": round(padded / 1000, 1),
                            "remb_before": remb0 and round(remb0 / 1000),
                            "remb_min": probe.remb_min and round(probe.remb_min / 1000),
                            "base_rtt_ms": probe.base_rtt and round(probe.base_rtt * 1000, 1),
                            "rtts_ms": [round(r * 1000) for at, r in (echo.rtts if echo else ()) if at >= t0],
                            "for_s": round(time.monotonic() - t0, 2)})
        del info.probes[:-20]
        log.info("padding probe", extra={"stream": entry.name, "viewer": info.public_id, "to": res.to,
                                         "ok": res.ok, "detail": res.detail})
        if sw is not None:
            perform(sw)
        else:
            forget()

    async def _watch_queue(self, echo: Echoes, tap: RtcpTap) -> None:
        """An auto viewer's link, watched for a standing queue (:class:`QueueWatch`): an echo
        every WATCH_EVERY_S (~90 bytes each way); a queue that stands, its rate measured,
        wakes the controller at once. Ends with the session (or the channel)."""
        measured = False
        while echo.channel.readyState != "closed":
            echo.send()
            # (Once the queue stands and receiver reports since cover enough of it to tell
            # the link's rate: that is the evidence.)
            standing = echo.watch.standing(now())
            ready = standing is not None and tap.delivered_pps(standing[0]) is not None
            if ready and not measured:
                tap.alarm.set()
            measured = ready
            await asyncio.sleep(WATCH_EVERY_S)

    async def _watch_silence(self, tap: RtcpTap, session: PeerSession) -> None:
        """A viewer that stops sending RTCP (browsers report every second) is gone: a closed
        tab, a vanished laptop. End its session now rather than after ICE consent expires
        (~30 s): until then the relay would keep sending its rendition into a link that,
        after a page reload on LTE, is the same link the viewer's new session needs."""
        while True:
            await asyncio.sleep(1.0)
            last = tap.last_rtcp
            if last is not None and now() - last > VIEWER_SILENT_S:
                await session.close(f"viewer silent: no RTCP for {VIEWER_SILENT_S:.0f} s")
                return

    async def _send_times_and_telemetry(self, entry: Entry, track: PacketTrack, session: PeerSession) -> None:
        """Five times a second: which arrival and capture time belongs to which RTP timestamp
        of the frames this viewer was sent (the browser matches them with what it presents),
        and the telemetry samples since the last message, each tagged with its capture time
        (encoded once per sample, the same bytes for every viewer). With nothing new, once a
        second: how old the newest telemetry is, so a silent source shows stale."""
        tele = entry.telemetry
        sent_seq = 0
        quiet_since = 0.0
        while True:
            await asyncio.sleep(FRAME_TIMES_PERIOD_S)
            ch = self.channels.get(session.id)
            if ch is None or ch.readyState != "open":
                continue
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
                                   "age": None if age is None else round(age, 2)},
                                  separators=(",", ":"))
                ch.send(f'{head[:-1]},"s":[{",".join(samples)}]}}')

    def _serve_channel(self, entry: Entry, info: ViewerInfo, track: PacketTrack, ch: Any) -> None:
        self.channels[info.session] = ch
        thresholds = {
            "green_ms": self.config.latency.green_ms,
            "yellow_ms": self.config.latency.yellow_ms,
            "creep_ms": self.config.latency.creep_ms,
        }

        @ch.on("open")  # type: ignore[untyped-decorator]
        def on_open() -> None:
            ch.send(json.dumps({"type": "hello", "stream": entry.name, "viewer": info.public_id,
                                "rendition": info.rendition, "auto": info.auto,
                                "reason": info.rendition_reason, "thresholds": thresholds}))

        if ch.readyState == "open":
            on_open()

        @ch.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: Any) -> None:
            t1 = time.time() * 1000.0
            if not isinstance(message, str) or len(message) > MAX_REPORT_BYTES:
                return
            try:
                msg = json.loads(message)
                kind = msg.get("type")
            except (ValueError, AttributeError):
                log.info("bad data channel message", extra={"viewer": info.public_id})
                return
            if kind == "ping":
                ch.send(json.dumps({"type": "pong", "id": msg.get("id"), "t0": msg.get("t0"),
                                    "t1": t1, "t2": time.time() * 1000.0}))
            elif kind == "report":
                try:
                    info.report = clean_report(msg.get("report"))
                except ValueError:
                    return
                info.report_time = time.time()
                self._guard_creep(entry, info, track)

    def _guard_creep(self, entry: Entry, info: ViewerInfo, track: PacketTrack) -> None:
        """Bring a viewer whose latency keeps growing back to the live edge."""
        latency = info.report.get("latency_ms")
        if latency is None or latency <= self.config.latency.creep_ms or track.reader is None:
            return
        if time.time() - info.last_creep < 5.0:
            return  # give the last reset time to show in the next reports
        info.last_creep = time.time()
        dropped = track.reader.skip_to_live(f"latency creep {latency:.0f} ms")
        info.creep_resets += 1
        self.creep_resets += 1
        log.warning("latency creep: viewer moved to live edge",
                    extra={"stream": entry.name, "viewer": info.public_id,
                           "latency_ms": round(latency), "dropped": dropped})

    async def _poll_rtt(self, info: ViewerInfo, sender: Any, tap: RtcpTap) -> None:
        """The viewer's round trip (from its receiver reports), every 2 s; a packet is not
        resent twice within most of it (the first copy is still on its way)."""
        while True:
            await asyncio.sleep(2.0)
            try:
                stats = await sender.getStats()
            except Exception:
                continue
            for s in stats.values():
                rtt = getattr(s, "roundTripTime", None)
                if s.type == "remote-inbound-rtp" and rtt is not None:
                    info.rtt_ms = round(rtt * 1000.0, 2)
                    tap.resend_gap_s = min(0.2, max(0.02, 0.8 * rtt))

    async def _closed(self, session: PeerSession) -> None:
        self.sessions.pop(session.id, None)
        self.channels.pop(session.id, None)
        self.echoes.pop(session.id, None)
        track = self.tracks.pop(session.id, None)
        if track is not None:
            track.stop()
        entry = self.registry.get(session.stream)
        if entry is not None:
            entry.viewers.pop(session.id, None)

    def reader_stats(self, session_id: str) -> dict[str, int]:
        track = self.tracks.get(session_id)
        if track is None or track.reader is None:
            return {"delivered": 0, "dropped": 0, "overflows": 0, "queued": 0,
                    "keyframe_requests": 0, "keyframe_requests_refused": 0}
        r = track.reader
        return {"delivered": r.delivered, "dropped": r.dropped,
                "overflows": r.overflows, "queued": len(r),
                "keyframe_requests": r.keyframe_requests,
                "keyframe_requests_refused": r.keyframe_requests_refused}

    async def stop(self, stream: str, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.stream != stream:
            raise RelayError(404, f"no WHEP session {session_id[:40]!r} on stream {stream!r}")
        await session.close("viewer sent DELETE")

    async def end_where(self, cond: Callable[[PeerSession], bool], reason: str) -> int:
        """End every session for which ``cond`` holds (e.g. a revoked share link's)."""
        doomed = [s for s in self.sessions.values() if cond(s)]
        for s in doomed:
            ch = self.channels.get(s.id)
            if ch is not None and ch.readyState == "open":
                # Tell the page why, so it says so and does not retry (its token is dead).
                ch.send(json.dumps({"type": "end", "reason": reason}))
                await asyncio.sleep(0)  # let the channel's transport take the message
            await s.close(reason)
        return len(doomed)

    async def close_all(self) -> None:
        for s in tuple(self.sessions.values()):
            await s.close("relay shutting down")
