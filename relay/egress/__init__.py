"""Egress protocols: readers of rendition streams out to viewers."""

from .whep import WhepEgress

__all__ = ["WhepEgress"]
