"""Ingest protocols: each turns a protocol into decoded frames published to a stream."""

from .avpull import AvPullSource
from .inbound import InboundVideo, publish_frame
from .mavlink import MavlinkSource
from .rtmp import RtmpIngest
from .srt import SrtCaller, SrtIngest
from .upstream import Upstream, echo_back
from .whip import WhipIngest

__all__ = ["AvPullSource", "InboundVideo", "MavlinkSource", "RtmpIngest", "SrtCaller", "SrtIngest",
           "Upstream", "WhipIngest", "echo_back", "publish_frame"]
