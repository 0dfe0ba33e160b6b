"""Egress: readers of rendition streams out to viewers (WHEP).

- :mod:`.egress`: admit, play, stop (one dict of viewers);
- :mod:`.viewer`: one object per viewing session, owning all of its state;
- :mod:`.channel`: the view page's data-channel protocol and report schema;
- :mod:`.echo`: the echo channel's round trips and the queue watch;
- :mod:`.adapt`: one getStats poll per viewer → ABR → a switch;
- :mod:`.padding`: the padding probe's driver.
"""

from .adapt import Adapter, poll_rtt
from .channel import route_message, send_times_and_telemetry, serve
from .echo import Echoes
from .egress import AUTO, WhepEgress
from .viewer import Viewer, ViewerInfo

__all__ = ["AUTO", "Adapter", "Echoes", "Viewer", "ViewerInfo", "WhepEgress", "poll_rtt",
           "route_message", "send_times_and_telemetry", "serve"]
