"""Ingest protocols: each turns a protocol into decoded frames published to a stream."""

from .avpull import AvPullSource
from .mavlink import MavlinkSource
from .rtmp import RtmpIngest
from .whip import WhipIngest

__all__ = ["AvPullSource", "MavlinkSource", "RtmpIngest", "WhipIngest"]
