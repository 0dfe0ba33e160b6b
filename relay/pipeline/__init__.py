"""Decode once, process once per frame (OpenCV), encode once per rendition."""

from .encoder import RenditionEncoder, output_size
from .transcode import Pipeline

__all__ = ["Pipeline", "RenditionEncoder", "output_size"]
