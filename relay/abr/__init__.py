"""Which rendition a viewer on "auto" should get: pure parts, the time always passed in.

- :mod:`.types`: rungs, samples, switches;
- :mod:`.estimate`: what the link showed, smoothed (the sender's counters, receiver reports);
- :mod:`.queue`: a queue standing on the link, from echo round trips;
- :mod:`.probe`: a padding probe's course and verdict;
- :mod:`.tuning`: every threshold, frozen;
- :mod:`.evidence`: what says the link is failing now;
- :mod:`.backoff`: which rungs are held off after a failure;
- :mod:`.controller`: the rules (down fast, up carefully).

No network, no clock of its own (``feed`` takes the time), so it is unit-tested on
synthetic traces; the glue that samples aiortc and performs the keyframe-aligned switch
lives in ``egress/adapt.py`` and ``webrtc/``.

How it decides (after mediasoup's and OvenMediaEngine's controllers):

- **down fast**: the link is failing when the receiver's estimate (REMB) stays under 0.8x
  what the current rung sends and has just fallen or the link shows it too (at once when it
  fell under 0.6x within 2 s: ``remb_collapse``), when a queue stands on the link
  (:class:`QueueWatch`: round trips on the echo channel late for 0.3 s; for a viewer
  without it, :class:`ReportQueue`: two receiver reports' round trips running late) while the viewer
  receives under ``queue_down`` of what it is sent (then what it received is the link's
  rate: the surest and soonest sign, ~0.5 s after the fall), when loss over
  the last second exceeds ``loss_down``, when the viewer
  NACKs more than ``nack_down`` of the packets it was sent (sooner than receiver reports),
  or when it reports decoding well under the rung's frame rate or two freezes in 20 s. Then
  the viewer moves to the highest rung that fits the estimate or the measured rate (at
  most half the rate in one step unless loss, NACKs, the queue or a collapse of the
  estimate say the same; one rung down
  without an estimate) within one sample period (0.5 s) of the evidence, once the last
  switch has settled (``settle_s``; after a collapse the estimate's further fall is
  followed at once for 2 s: it lags the link by a second).
- **up carefully**: one rung at a time (several in one padding probe), after two clean
  seconds and a hold since the last switch: ``hold_s`` after a step down, ``up_hold_s``
  after a step up that held. Where the sender can pad (``padding``: RTX negotiated), the
  step up is first a **padding probe**: ``feed`` returns ``Switch(probe=True)``, the
  egress pads the link to the next rung's rate, then on to each rung above it that is not
  held off (``probe_stages``), and reports what the link showed to ``probe_result`` (round
  trips growing, the estimate falling, NACKs above the usual share), which returns the
  step up to the best rung the link carried, if any; a failed padding probe costs little,
  so the rung is tried again after ``pad_hold_s`` (+2 s each time, up to
  ``pad_max_hold_s``). Without padding the step up is the probe (REMB is capped near 1.5x
  what the viewer receives, so no estimate can show room for a rung twice as big), vetoed
  unless the estimate has covered ``probe_headroom`` times what the viewer is sent for a
  second. (Measured: a higher bar, 1.3x, does not tell a saturated link from a free one —
  Chromium's estimate on mid over a 1.5 Mbit/s link reaches 1.4-1.5x at times — while
  after a long limit it climbs only ~12 kbit/s a second, so it delayed the climb back by
  10-20 s. The default keeps 1.0.) A step up is judged after ``probe_settle_s`` (the rung
  below was clean, so trouble now is the new rung's); one that fails within ``probe_s`` is
  a failed probe: the viewer goes back to the rung it came from and stays there
  ``recover_s`` whatever the overload left behind, and that rung is not probed again for a
  hold-off that doubles (up to ``max_hold_s``; at least ``probe_fail_hold_s`` on a link
  that loses ``lossy_link`` or more anyway, where a probe of a rung that failed also waits
  ``lossy_hold_s``), so a link that cannot carry it is not probed every few seconds.
  (Measured at 1.5 Mbit/s, 5 %: each failed probe of "high" cost a freeze 1-3 s later.)
- **a changed link resets the back-off**: when the loss seen on a clean rung falls well below
  what it was when the last probe failed, or the estimate rises well above it, the link is
  not the one that failed and the hold returns to ``hold_s`` (a vehicle that drives out of
  a bad cell climbs back in seconds, not a minute).
"""

from .controller import AbrController
from .estimate import LinkEstimate, Trend, loss_over
from .probe import PadProbe
from .queue import QueueWatch, ReportQueue
from .tuning import Tuning
from .types import ProbeResult, Rung, Sample, Switch

__all__ = ["AbrController", "LinkEstimate", "PadProbe", "ProbeResult", "QueueWatch", "ReportQueue", "Rung",
           "Sample", "Switch", "Trend", "Tuning", "loss_over"]
