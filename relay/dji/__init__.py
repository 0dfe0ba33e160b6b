"""DJI drones through the DJI Cloud API (MQTT): telemetry, lenses, live control (opt-in, ``[dji]``)."""

from .aircraft import Aircraft, DjiError, error_words
from .control import publish_url_for
from .platform import DjiPlatform

__all__ = ["Aircraft", "DjiError", "DjiPlatform", "error_words", "publish_url_for"]
