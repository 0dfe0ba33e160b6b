"""DJI drones through the DJI Cloud API (MQTT): telemetry, lenses, live control (opt-in, ``[dji]``)."""

from .platform import Aircraft, DjiError, DjiPlatform, error_words, publish_url_for

__all__ = ["Aircraft", "DjiError", "DjiPlatform", "error_words", "publish_url_for"]
