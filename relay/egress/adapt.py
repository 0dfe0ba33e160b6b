"""One ``getStats()`` poll per viewer: its round trip for every viewer, and for a viewer on
"auto" the evidence the controller needs → :class:`relay.abr.AbrController` → a
keyframe-aligned switch of rendition on the same track."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..abr import AbrController, LinkEstimate, ReportQueue, Sample, Switch
from ..aio import within
from ..media import now
from ..stream import Reader, Stream
from ..webrtc import can_pad
from .echo import watch_queue
from .padding import pad_probe
from .viewer import Viewer

__all__ = ["ABR_PERIOD_S", "RTT_PERIOD_S", "Adapter", "change_rendition", "poll_rtt"]

log = logging.getLogger("relay.whep")
ABR_PERIOD_S = 0.5
RTT_PERIOD_S = 2.0


def _take_rtt(viewer: Viewer, st: Any) -> None:
    """The viewer's round trip (from its receiver reports): shown, and a packet is not
    resent twice within most of it (the first copy is still on its way)."""
    rtt = getattr(st, "roundTripTime", None)
    if st.type == "remote-inbound-rtp" and rtt is not None:
        viewer.info.rtt_ms = round(rtt * 1000.0, 2)
        viewer.tap.resend_gap_s = min(0.2, max(0.02, 0.8 * rtt))


async def poll_rtt(viewer: Viewer) -> None:
    """A viewer on a fixed rendition: its round trip, every RTT_PERIOD_S."""
    while True:
        await asyncio.sleep(RTT_PERIOD_S)
        try:
            stats = await viewer.sender.getStats()
        except Exception:
            continue
        for st in stats.values():
            _take_rtt(viewer, st)


class Adapter:
    """A viewer on "auto": every ABR_PERIOD_S (or at once when its tap's alarm rings) what
    the link showed → the controller → a switch. The only writer of the viewer's rendition."""

    def __init__(self, viewer: Viewer, ctl: AbrController, queue_watch: bool) -> None:
        self.viewer = viewer
        self.ctl = ctl
        self.queue_watch = queue_watch
        self.link = LinkEstimate()
        self.changed_at = 0.0  # the last change-over (monotonic)
        self.changed_wall = 0.0  # ... and on the wall clock (the viewer's reports use it)
        self.probe: asyncio.Task[None] | None = None
        self.watching = False
        self.plis = self.nacks_new = self.freezes = 0
        self.reports = ReportQueue()  # the queue, for a viewer without the echo channel
        self._rtt_at = 0.0  # the newest receiver report's round trip taken

    async def run(self) -> None:
        tap, ctl = self.viewer.tap, self.ctl
        t = time.monotonic()
        while True:
            # Every ABR_PERIOD_S, or at once when the viewer's estimate collapses (a link
            # that fell: every half second there counts).
            tap.remb_alarm_bps = ctl.remb_collapse * ctl.sent_kbps * 1000
            with contextlib.suppress(TimeoutError):
                await within(max(0.05, t + ABR_PERIOD_S - time.monotonic()), tap.alarm.wait())
            tap.alarm.clear()
            period = max(0.05, time.monotonic() - t)
            t = time.monotonic()
            await self._poll(t, period)
            sample = self._sample(t, period)
            self._note(sample)
            ctl.padding = can_pad(self.viewer.sender)
            ctl.timed = self.viewer.echo is not None
            sw = ctl.feed(sample)
            if self.probe is not None and ctl.probing is None and not self.probe.done():
                self.probe.cancel()
            if sw is None:
                continue
            if sw.probe:
                self.probe = self.viewer.session.spawn(self._probe())
                continue
            self.perform(sw)

    async def _poll(self, t: float, period: float) -> None:
        link = self.link
        link.new_period()
        try:
            for st in (await self.viewer.sender.getStats()).values():
                if st.type == "outbound-rtp":
                    link.outbound(st.packetsSent, st.bytesSent, period)
                if st.type == "remote-inbound-rtp":
                    link.receiver_report(t, st.timestamp, st.packetsLost, st.packetsReceived, self.changed_at)
                _take_rtt(self.viewer, st)
        except Exception:
            pass

    def _sample(self, t: float, period: float) -> Sample:
        viewer, tap, link = self.viewer, self.viewer.tap, self.link
        info = viewer.info
        remb = tap.remb_bps / 1000.0 if tap.remb_bps and t - tap.remb_time < 3.0 else None
        # The viewer's report covers the second before it: only one made entirely on the
        # current rung is evidence about it.
        fresh = time.time() - info.report_time < 2.5 and info.report_time - self.changed_wall > 1.2
        rep = info.report if fresh else {}
        reported = int(info.report.get("freezes", self.freezes))
        new_freezes = max(0, reported - self.freezes) if fresh else 0
        self.freezes = reported
        # Retransmit at most a quarter of what the viewer is sent (see RtcpTap).
        tap.nack_rate = max(10.0, 0.25 * link.sent / period)
        queue_ms, link_kbps = self._queue(t)
        sample = Sample(t=t, remb_kbps=remb, loss=link.loss(t), nacks=tap.nacks_new - self.nacks_new,
                        sent=link.sent, sent_kbps=link.sent_kbps, plis=tap.plis - self.plis,
                        fps=rep.get("fps"), freezes=new_freezes, queue_ms=queue_ms, link_kbps=link_kbps)
        self.plis, self.nacks_new = tap.plis, tap.nacks_new
        return sample

    def _queue(self, t: float) -> tuple[float | None, float | None]:
        """A queue standing on the link (depth in ms) and, once receiver reports cover it,
        the rate the full link delivered. From the echo channel's round trips where the
        viewer has one (the view page: ten a second), else from its receiver reports'."""
        if not self.queue_watch:
            return None, None
        echo = self.viewer.echo
        if echo is None:
            return self._report_queue(t)
        if not self.watching:
            self.watching = True
            self.viewer.session.spawn(watch_queue(echo, self.viewer.tap))
        standing = echo.watch.standing(now())
        if standing is None:
            return None, None
        # (Receiver reports from before the last switch describe the old rung.)
        pps = self.viewer.tap.delivered_pps(max(standing[0], self.changed_at))
        return standing[1] * 1000, None if pps is None else self.link.media_kbps(pps)

    def _report_queue(self, t: float) -> tuple[float | None, float | None]:
        tap = self.viewer.tap
        for at, rtt in tap.report_rtts:
            if at > self._rtt_at:
                self.reports.report(at, rtt)
                self._rtt_at = at
        standing = self.reports.standing(now())
        if standing is None:
            return None, None
        pps = tap.delivered_pps(max(standing[0], self.changed_at))
        return standing[1] * 1000, None if pps is None else self.link.media_kbps(pps)

    def _note(self, s: Sample) -> None:
        """The sample as the viewer's stats show it."""
        info = self.viewer.info
        tap = self.viewer.tap
        info.samples.append({"t": round(time.time(), 2), "rendition": info.rendition,
                             "remb_kbps": s.remb_kbps,
                             "loss": None if s.loss is None else round(s.loss, 3), "nacks_new": s.nacks,
                             "sent": s.sent, "sent_kbps": None if s.sent_kbps is None else round(s.sent_kbps),
                             "nacks_refused": tap.nacks_refused, "nacks_stale": tap.nacks_stale,
                             "plis": s.plis, "fps": s.fps, "freezes": s.freezes,
                             "queue_ms": None if s.queue_ms is None else round(s.queue_ms),
                             "link_kbps": None if s.link_kbps is None else round(s.link_kbps)})
        del info.samples[:-240]
        info.estimate_kbps = round(self.ctl.estimate_kbps, 1) if self.ctl.estimate_kbps else None

    async def _probe(self) -> None:
        verdict = await pad_probe(self.viewer, self.ctl)
        if verdict is None:
            return
        res, sw = verdict
        log.info("padding probe", extra={"stream": self.viewer.entry.name, "to": res.to, "ok": res.ok,
                                         "viewer": self.viewer.info.public_id, "detail": res.detail})
        if sw is not None:
            self.perform(sw)
        else:
            self._forget()

    def _forget(self) -> None:
        """A failed padding probe: the receiver reports and viewer reports that cover it
        describe its overload, not the rung."""
        self.changed_at, self.changed_wall = time.monotonic(), time.time()
        self.link.forget()

    def perform(self, sw: Switch) -> None:
        def switched() -> None:
            self.changed_at, self.changed_wall = time.monotonic(), time.time()
            self.link.forget()
        change_rendition(self.viewer, sw.to, sw.reason, switched)

    def cap(self, name: str | None) -> None:
        """The relay short of CPU closed the rungs above ``name`` (None: open again)."""
        sw = self.ctl.cap(name, time.monotonic())
        if sw is not None:
            self.perform(sw)


def change_rendition(viewer: Viewer, to: str, reason: str,
                     switched: Callable[[], None] | None = None) -> bool:
    """Move ``viewer`` to rendition ``to`` on the same track, from that rung's next keyframe:
    its info, its switch history and the page told (whoever decided: its ABR, or the relay
    short of CPU). False where the rung does not exist."""
    target = viewer.entry.rendition_stream(to)
    if target is None:
        return False
    frm = viewer.info.rendition
    log.info("viewer switches rendition", extra={
        "stream": viewer.entry.name, "viewer": viewer.info.public_id, "from": frm, "to": to,
        "reason": reason})

    def done() -> None:
        after_rtp = viewer.tap.change_over()  # before the new rung's first packet is sent
        viewer.changes += 1
        if switched is not None:
            switched()
        info = viewer.info
        info.rendition = to
        info.rendition_reason = reason
        info.switches.append({"t": time.time(), "from": frm, "to": to, "reason": reason})
        del info.switches[:-20]
        # The page labels the picture from the first frame after ``after_rtp`` on.
        viewer.announce(json.dumps({"type": "rendition", "name": to, "auto": info.auto, "reason": reason,
                                    "n": viewer.changes, "after_rtp": after_rtp}))

    def subscribe(target: Stream = target) -> Reader:
        return target.subscribe(label=viewer.session.public, relay=viewer.info.relay,
                                tile=viewer.info.tile)

    viewer.track.switch(subscribe, done)
    return True
