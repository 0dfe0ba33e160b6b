"""Ingest protocols: each turns a protocol into decoded frames published to a stream."""

from .avpull import AvPullSource
from .rtmp import RtmpIngest
from .whip import WhipIngest

__all__ = ["AvPullSource", "RtmpIngest", "WhipIngest"]
