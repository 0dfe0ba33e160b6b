"""Which rendition a viewer on "auto" should get: pure parts, the time always passed in.

- :mod:`.types`: rungs, samples, switches;
- :mod:`.estimate`: what the link showed, smoothed (the sender's counters, receiver reports);
- :mod:`.queue`: a queue standing on the link, from echo round trips;
- :mod:`.probe`: a padding probe's course and verdict;
- :mod:`.controller`: the rules (down fast, up carefully, back-off).
"""

from .controller import AbrController
from .estimate import LinkEstimate, loss_over
from .probe import PadProbe
from .queue import QueueWatch
from .types import ProbeResult, Rung, Sample, Switch

__all__ = ["AbrController", "LinkEstimate", "PadProbe", "ProbeResult", "QueueWatch", "Rung", "Sample",
           "Switch", "loss_over"]
