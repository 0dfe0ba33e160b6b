"""The relay's configuration: frozen dataclasses, each key declared once (:mod:`.schema`),
read generically from one TOML file (:mod:`.fields`, :mod:`.load`).

Every problem is reported as a :class:`ConfigError` naming the TOML key, and the relay
refuses to start on one.
"""

from .checks import PASSTHROUGH, ROLES
from .fields import STREAM_NAME, ConfigError
from .load import load, parse, redact_url
from .overload import OverloadConfig
from .schema import (
    AbrConfig,
    AuthConfig,
    ClusterConfig,
    Config,
    IceServer,
    LatencyConfig,
    LimitsConfig,
    MarkersConfig,
    MediaConfig,
    RecordConfig,
    Rendition,
    RtmpConfig,
    SrtConfig,
    StreamConfig,
    TelemetryConfig,
    TokenConfig,
    VehicleConfig,
    WebRTCConfig,
)

__all__ = [
    "PASSTHROUGH",
    "ROLES",
    "STREAM_NAME",
    "AbrConfig",
    "AuthConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "IceServer",
    "LatencyConfig",
    "LimitsConfig",
    "MarkersConfig",
    "MediaConfig",
    "OverloadConfig",
    "RecordConfig",
    "Rendition",
    "RtmpConfig",
    "SrtConfig",
    "StreamConfig",
    "TelemetryConfig",
    "TokenConfig",
    "VehicleConfig",
    "WebRTCConfig",
    "load",
    "parse",
    "redact_url",
]
