"""The padding probe's driver: pads a viewer's link, times it, and feeds
:class:`relay.abr.PadProbe`, which decides."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..abr import AbrController, PadProbe, ProbeResult, Switch
from ..media import now
from ..webrtc import send_padding, sent_packet_count
from .viewer import Viewer

__all__ = ["PadOutcome", "pad_probe"]

PROBE_PAD_S = 1.2  # a padding probe pads this long (ramping up over PROBE_RAMP_S),
PROBE_RAMP_S = 0.6
ECHO_BASE_S = 0.2  # round trips timed before the padding starts: the baseline
ECHO_EVERY_S = 0.04
ECHO_QUEUE_S = 0.025  # two round trips this much over the baseline (and its spread): a queue
PROBE_TAIL_S = 0.4  # then waits this long for the NACKs of what the link's queue dropped


@dataclass
class PadOutcome:
    """What one padding probe did, for the controller and the viewer's stats."""

    probe: PadProbe
    nacks: int = 0
    sent: int = 0
    padded: int = 0  # bytes
    remb0: float | None = None
    t0: float = 0.0


async def pad_probe(viewer: Viewer, ctl: AbrController) -> tuple[ProbeResult, Switch | None] | None:
    """Pad the viewer's link with copies of packets already sent (on the retransmission
    stream: the browser drops the duplicates) up to each probed rung's rate in turn, and
    judge from what the link shows meanwhile (:class:`PadProbe` decides): a link that
    cannot carry a rung pays a few hundred ms of queue, and the step up goes to the best
    rung it carried. Round trips are timed for ECHO_BASE_S before the padding (the
    baseline); without an echo channel only the first stage is tried (NACKs need time to
    show). Returns the controller's verdict, or None when it moved on meanwhile."""
    to = ctl.probing
    out = _start(viewer, ctl)
    await _pad(viewer, ctl, out)
    if ctl.probing != to:
        return None  # the controller moved on
    probe = out.probe
    res, sw = ctl.probe_result(time.monotonic(), out.nacks, out.sent, remb_fell_to=probe.fell_to,
                               queue_ms=None if probe.queue_s is None else probe.queue_s * 1000,
                               tried=probe.tried)
    _record(viewer, out, res, sw)
    return res, sw


def _start(viewer: Viewer, ctl: AbrController) -> PadOutcome:
    tap, echo = viewer.tap, viewer.echo
    timed = echo is not None and echo.open
    remb0 = tap.remb_bps if tap.remb_bps and now() - tap.remb_time < 3.0 else None
    if remb0 is not None and remb0 > 1300 * ctl.sent_kbps:
        # The estimate is far above what the viewer gets (still falling after a fall of
        # the link, or never tested): its next cut says nothing about this probe.
        remb0 = None
    stages = ctl.probe_stages() if timed else ctl.probe_stages()[:1]
    probe = PadProbe(stages, remb0=remb0, pad_s=PROBE_PAD_S, ramp_s=PROBE_RAMP_S, queue_over_s=ECHO_QUEUE_S)
    return PadOutcome(probe, remb0=remb0, t0=time.monotonic())


async def _pad(viewer: Viewer, ctl: AbrController, out: PadOutcome) -> None:
    tap, echo, sender, probe = viewer.tap, viewer.echo, viewer.sender, out.probe
    lead = ECHO_BASE_S if echo is not None and echo.open else 0.0
    remb_at = tap.remb_time
    due = 0.0  # bytes of padding owed by now
    n0 = p0 = 0
    started = False
    next_echo = last = 0.0
    t0 = out.t0
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
                probe.baseline(echo.since(t0))
        kbps = probe.rate_kbps(pad_el)
        out.nacks, out.sent = tap.nacks_new - n0, sent_packet_count(sender) - p0
        if tap.remb_time != remb_at and tap.remb_bps is not None:
            remb_at = tap.remb_time
            probe.estimate(pad_el, tap.remb_bps)
        if echo is not None:
            probe.round_trips(echo.since(t0 + lead + 0.05))
        if probe.stop(pad_el, ctl.probe_failing(out.nacks, out.sent)):
            break
        if kbps is not None:
            due += kbps * 125 * (pad_el - last)  # kbit/s -> bytes
            if due > out.padded:
                out.padded += await send_padding(sender, int(due) - out.padded)
        last = pad_el
        await asyncio.sleep(0.01)


def _record(viewer: Viewer, out: PadOutcome, res: ProbeResult, sw: Switch | None) -> None:
    probe, echo, info = out.probe, viewer.echo, viewer.info
    info.probes.append({"t": time.time(), "to": res.to, "ok": res.ok, "detail": res.detail,
                        "stages": [n for n, _ in probe.stages[:probe.k + 1]],
                        "switch_to": sw.to if sw is not None else None,
                        "padding_kbps": round(probe.padding_kbps), "padded_kB": round(out.padded / 1000, 1),
                        "remb_before": out.remb0 and round(out.remb0 / 1000),
                        "remb_min": probe.remb_min and round(probe.remb_min / 1000),
                        "base_rtt_ms": probe.base_rtt and round(probe.base_rtt * 1000, 1),
                        "rtts_ms": [round(r * 1000) for r in (echo.since(out.t0) if echo else ())],
                        "for_s": round(time.monotonic() - out.t0, 2)})
    del info.probes[:-20]
