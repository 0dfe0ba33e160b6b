"""Ingest protocols: each turns a protocol into decoded frames published to a stream."""

from .whip import WhipIngest

__all__ = ["WhipIngest"]
