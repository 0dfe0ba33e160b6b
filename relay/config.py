"""The relay's configuration: frozen dataclasses, loaded from one TOML file.

Every problem is reported as a :class:`ConfigError` naming the TOML key, and the relay
refuses to start on one.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ROLES",
    "AbrConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "IceServer",
    "LatencyConfig",
    "LimitsConfig",
    "MediaConfig",
    "RecordConfig",
    "Rendition",
    "RtmpConfig",
    "StreamConfig",
    "TelemetryConfig",
    "TokenConfig",
    "WebRTCConfig",
    "load",
    "parse",
    "redact_url",
]

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CODECS = ("h264", "vp8")
MODES = ("transcode", "passthrough", "both")
PASSTHROUGH = "source"  # the rendition name of forwarded source packets
SOURCE_SCHEMES = ("rtsp://", "rtsps://", "udp://", "rtp://")
ROLES = ("publisher", "viewer", "control", "admin")
ICE_URL = re.compile(r"^(stun|stuns|turn|turns):[^\s?]+(\?transport=(udp|tcp))?$")
IFACE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,14}$")


class ConfigError(ValueError):
    """A configuration problem; the message starts with the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Rendition:
    """One encoded output: every viewer of it receives the same packets."""

    name: str
    height: int  # output height; width follows the source's aspect ratio
    bitrate_kbps: int
    codec: str = "h264"
    max_fps: float = 30.0


@dataclass(frozen=True)
class StreamConfig:
    """A stream known in advance: tokens and (later) a pulled source."""

    name: str
    publish_token: str | None = None
    view_token: str | None = None
    title: str = ""
    source: str | None = None  # pulled/listened source: rtsp://, udp://, rtp://
    rtsp_transport: str = "tcp"
    rtsp_listen: bool = False  # accept an RTSP push (ANNOUNCE/RECORD) instead of pulling
    mode: str = "transcode"  # transcode | passthrough | both
    # UDP/RTP/RTSP-listen: networks whose packets are accepted (empty = any sender).
    allow_senders: tuple[str, ...] = ()
    record: bool | None = None  # None: as [record] enabled
    # Telemetry in: "mavlink+udp://0.0.0.0:14550" (allow_senders applies, one sender at a time).
    # KLV in an MPEG-TS/RTSP source and the HTTP endpoint need no setting.
    telemetry: str | None = None


@dataclass(frozen=True)
class TokenConfig:
    """A static token with a role: publisher/viewer for some streams, control, admin."""

    token: str
    role: str
    streams: tuple[str, ...] = ("*",)
    name: str = ""
    playback: bool = False  # may list, replay and download the record (control/admin always may)


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = False
    publish_token: str | None = None  # accepted for any stream
    view_token: str | None = None  # accepted for any stream
    tokens: tuple[TokenConfig, ...] = ()
    jwt_secret: str | None = None  # HS256 secret for signed short-lived tokens
    jwt_max_ttl_s: float = 7 * 86400.0
    # Share links: the book of live links (a JSON file); empty keeps it in memory, and a
    # restart then ends every share link (fail closed).
    shares_file: str = ""
    public_url: str = ""  # the relay as phones reach it (share links, QR codes); default: the request's


@dataclass(frozen=True)
class IceServer:
    """A STUN/TURN server handed to clients (and used by the relay's own peers)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None
    secret: str | None = None  # coturn use-auth-secret: time-limited credentials
    ttl_s: float = 86400.0


@dataclass(frozen=True)
class WebRTCConfig:
    # Host candidate addresses (or interface names) offered to peers; empty = every
    # non-loopback interface.
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    stun_servers: tuple[str, ...] = ()
    # Public addresses announced for a relay behind 1:1 NAT (same ports as the host ones).
    announce_addresses: tuple[str, ...] = ()
    port_min: int = 0  # 0 = ephemeral ports; else ICE binds within [port_min, port_max]
    port_max: int = 0
    ice_servers: tuple[IceServer, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    viewers_per_stream: int = 50
    viewers_total: int = 200
    sessions_per_client: int = 20  # WHIP + WHEP sessions from one address
    offers_per_client_per_min: int = 60
    unconfigured_streams: int = 16  # streams that may come into being without a config entry
    waiting_expire_s: float = 60.0  # an unconfigured stream that never went live is forgotten
    rtmp_connections: int = 32
    rtmp_publish_within_s: float = 10.0  # a connection that has not published by then is closed
    rtmp_preauth_bytes: int = 65536  # what a client may send before it is authorised
    rtmp_read_timeout_s: float = 10.0  # a publisher that sends nothing for this long is closed


@dataclass(frozen=True)
class MediaConfig:
    viewer_queue_packets: int = 120  # per-viewer bound, in encoded frames
    source_queue_frames: int = 4  # decoded frames waiting for the pipeline
    keyframe_interval_s: float = 2.0
    keyframe_min_interval_s: float = 0.3  # rate limit for requested keyframes, per rendition
    # Per viewer: at most one keyframe request (PLI/FIR, overflow) this often; more wait for
    # the regular keyframe, so a lossy viewer cannot raise everyone's keyframe rate.
    viewer_keyframe_interval_s: float = 10.0
    signal_lost_after_s: float = 1.0
    slate_fps: float = 5.0
    overlay: bool = True
    # Paint the relay's own stamp (bottom-right) into every transcoded picture. Off: latency
    # is measured from RTP timestamps (docs/stamp.md); on only for browsers without them.
    relay_stamp: bool = False
    stream_expire_s: float = 600.0  # an unconfigured lost stream with no viewers is forgotten
    default_mode: str = "both"  # for streams not in [streams]: transcode | passthrough | both
    gop_cache: bool = True  # passthrough: a joining viewer starts at the cached keyframe


@dataclass(frozen=True)
class RtmpConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1935
    app: str = "live"


@dataclass(frozen=True)
class AbrConfig:
    """Automatic rendition choice for viewers that ask for none (or for "auto")."""

    enabled: bool = True
    start_kbps: int = 1200  # a new viewer starts at the best rung at or under this
    hold_s: float = 6.0  # clean time after a switch before a step up
    max_hold_s: float = 60.0  # the hold doubles after each failed step up, to this
    # Watch each auto viewer's link for a standing queue (an echo every 0.1 s, ~7 kbit/s):
    # the soonest sign that it fell. Off: steps down on the browser's estimate, loss, freezes.
    queue_watch: bool = True


@dataclass(frozen=True)
class RecordConfig:
    """The incident record: fMP4 segments, a signed hash chain per stream, retention."""

    enabled: bool = False
    dir: str = "recordings"
    segment_s: float = 60.0  # a new file this often (at the next keyframe)
    fragment_s: float = 1.0  # a crash loses at most about this much (plus the open GOP)
    max_age_days: float = 30.0
    max_stream_mb: float = 0  # per stream; 0 = no budget
    max_total_mb: float = 0  # all streams; 0 = no budget
    min_free_mb: float = 500  # below this free space the relay stops recording (live goes on)
    signing_key: str = ""  # PEM Ed25519 private key (PKCS8); empty = <dir>/signing-key.pem
    generate_key: bool = True  # create the key file if it does not exist
    replay_minutes: float = 10.0  # the viewer's replay timeline
    queue_frames: int = 300  # frames waiting for the writer thread; more are dropped (counted)


@dataclass(frozen=True)
class TelemetryConfig:
    """Where the drone is: staleness, the track, the map's tiles, the burned-in overlay."""

    stale_after_s: float = 3.0  # no update for this long: shown stale, never as "current"
    track_minutes: float = 10.0  # the track on the map
    # Map tiles ({z}/{x}/{y}); empty: no tiles, a plain grid with a scale (no outside requests).
    tile_url: str = ""
    tile_attribution: str = ""
    overlay: bool = False  # draw heading, altitude, coordinates, battery into transcoded video


@dataclass(frozen=True)
class LatencyConfig:
    green_ms: int = 250
    yellow_ms: int = 600
    creep_ms: int = 1500  # a viewer whose latency exceeds this is moved to the live edge


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str | None = None  # PEM certificate chain: HTTPS for pages, API, WHIP and WHEP
    tls_key: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    renditions: tuple[Rendition, ...] = (
        Rendition("high", 720, 2500),
        Rendition("low", 360, 600),
    )
    media: MediaConfig = field(default_factory=MediaConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    webrtc: WebRTCConfig = field(default_factory=WebRTCConfig)
    rtmp: RtmpConfig = field(default_factory=RtmpConfig)
    streams: tuple[StreamConfig, ...] = ()
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    abr: AbrConfig = field(default_factory=AbrConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def stream(self, name: str) -> StreamConfig | None:
        for s in self.streams:
            if s.name == name:
                return s
        return None

    def mode(self, stream: str) -> str:
        sc = self.stream(stream)
        return sc.mode if sc is not None else self.media.default_mode

    def records(self, stream: str) -> bool:
        sc = self.stream(stream)
        if sc is not None and sc.record is not None:
            return sc.record
        return self.record.enabled

    def rendition(self, name: str) -> Rendition | None:
        for r in self.renditions:
            if r.name == name:
                return r
        return None

    def with_overrides(self, *, host: str | None = None, port: int | None = None) -> Config:
        cfg = self
        if host is not None:
            cfg = replace(cfg, host=_host("server.host", host))
        if port is not None:
            cfg = replace(cfg, port=_port("server.port", port))
        return cfg


def redact_url(url: str) -> str:
    """A source URL without its credentials (``rtsp://user:***@cam/live``), for the API and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


# --------------------------------------------------------------------------- helpers


def _table(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}{key}", "must be a table")
    return value


def _check_keys(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for k in data:
        if k not in allowed:
            raise ConfigError(f"{path}{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(key, f"must be between {lo} and {hi}, got {value}")
    return value


def _float(key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, got {value!r}")
    if not lo <= float(value) <= hi:
        raise ConfigError(key, f"must be between {lo} and {hi}, got {value}")
    return float(value)


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {value!r}")
    return value


def _host(key: str, value: Any) -> str:
    text = _str(key, value)
    if text in ("localhost", ""):
        return text or "0.0.0.0"
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(key, f"must be an IP address or 'localhost', got {text!r}") from None
    return text


def _mode(key: str, value: Any) -> str:
    mode = _str(key, value).lower()
    if mode not in MODES:
        raise ConfigError(key, f"must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _port(key: str, value: Any) -> int:
    return _int(key, value, 1, 65535)


def _token(data: Mapping[str, Any], name: str, path: str, env: Mapping[str, str]) -> str | None:
    """A token given inline (``name``) or through an environment variable (``name_env``)."""
    inline = data.get(name)
    via_env = data.get(f"{name}_env")
    if inline is not None and via_env is not None:
        raise ConfigError(f"{path}{name}", f"give either {name} or {name}_env, not both")
    if inline is not None:
        token = _str(f"{path}{name}", inline)
        if len(token) < 8:
            raise ConfigError(f"{path}{name}", "must be at least 8 characters")
        return token
    if via_env is not None:
        var = _str(f"{path}{name}_env", via_env)
        from_env = env.get(var)
        if not from_env:
            raise ConfigError(f"{path}{name}_env", f"environment variable {var} is not set")
        return from_env
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _file(key: str, value: Any) -> str | None:
    if value is None:
        return None
    path = _str(key, value)
    if not Path(path).is_file():
        raise ConfigError(key, f"no such file: {path!r}")
    return path


def _tokens(raw: Any, env: Mapping[str, str]) -> tuple[TokenConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("auth.tokens", "must be an array of tables ([[auth.tokens]])")
    out = []
    for i, item in enumerate(raw):
        p = f"auth.tokens[{i}]."
        if not isinstance(item, dict):
            raise ConfigError(f"auth.tokens[{i}]", "must be a table")
        _check_keys(item, {"token", "token_env", "role", "streams", "name", "playback"}, p)
        token = _token(item, "token", p, env)
        if token is None:
            raise ConfigError(f"{p}token", "is required (token or token_env)")
        role = _str(f"{p}role", item.get("role", ""))
        if role not in ROLES:
            raise ConfigError(f"{p}role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        streams = item.get("streams", ["*"])
        if not isinstance(streams, list) or not all(
            isinstance(s, str) and (s == "*" or STREAM_NAME.match(s)) for s in streams
        ):
            raise ConfigError(f"{p}streams", "must be an array of stream names (or \"*\" for all)")
        out.append(TokenConfig(token=token, role=role, streams=tuple(streams),
                               name=_str(f"{p}name", item.get("name", f"{role}-{i}")),
                               playback=_bool(f"{p}playback", item.get("playback", False))))
    return tuple(out)


def _ice_servers(raw: Any, env: Mapping[str, str]) -> tuple[IceServer, ...]:
    if not isinstance(raw, list):
        raise ConfigError("webrtc.ice_servers", "must be an array of tables ([[webrtc.ice_servers]])")
    out = []
    for i, item in enumerate(raw):
        p = f"webrtc.ice_servers[{i}]."
        if not isinstance(item, dict):
            raise ConfigError(f"webrtc.ice_servers[{i}]", "must be a table")
        _check_keys(item, {"urls", "username", "credential", "credential_env", "secret", "secret_env",
                           "ttl_s"}, p)
        urls = item.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(
            isinstance(u, str) and ICE_URL.match(u) for u in urls
        ):
            raise ConfigError(f"{p}urls", "must be stun:/turn:/turns: URLs (turn:host:3478?transport=tcp)")
        secret = _token(item, "secret", p, env)
        credential = _token(item, "credential", p, env)
        username = item.get("username")
        is_turn = any(u.startswith("turn") for u in urls)
        if is_turn and secret is None and (username is None or credential is None):
            raise ConfigError(f"{p}secret", "a TURN server needs username + credential, or secret")
        out.append(IceServer(
            urls=tuple(urls),
            username=None if username is None else _str(f"{p}username", username),
            credential=credential,
            secret=secret,
            ttl_s=_float(f"{p}ttl_s", item.get("ttl_s", 86400.0), 60, 30 * 86400),
        ))
    return tuple(out)


# --------------------------------------------------------------------------- parse


def parse(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a decoded TOML document into a :class:`Config`."""
    env = os.environ if env is None else env
    _check_keys(
        data,
        {"server", "renditions", "media", "latency", "auth", "webrtc", "rtmp", "streams", "limits", "abr",
         "record", "telemetry"},
        "",
    )
    defaults = Config()

    server = _table(data, "server", "")
    _check_keys(server, {"host", "port", "log_level", "log_format", "tls_cert", "tls_key"}, "server.")
    host = _host("server.host", server.get("host", defaults.host))
    tls_cert = _file("server.tls_cert", server.get("tls_cert"))
    tls_key = _file("server.tls_key", server.get("tls_key"))
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("server.tls_key" if tls_cert else "server.tls_cert",
                          "give both tls_cert and tls_key (PEM files), or neither")
    port = _port("server.port", server.get("port", defaults.port))
    log_level = _str("server.log_level", server.get("log_level", defaults.log_level)).lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level", f"must be debug|info|warning|error, got {log_level!r}")
    log_format = _str("server.log_format", server.get("log_format", defaults.log_format))
    if log_format not in ("text", "json"):
        raise ConfigError("server.log_format", f"must be text|json, got {log_format!r}")

    renditions = defaults.renditions
    if "renditions" in data:
        raw = data["renditions"]
        if not isinstance(raw, list) or not raw:
            raise ConfigError("renditions", "must be a non-empty array of tables ([[renditions]])")
        items = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            p = f"renditions[{i}]."
            if not isinstance(item, dict):
                raise ConfigError(f"renditions[{i}]", "must be a table")
            _check_keys(item, {"name", "height", "bitrate_kbps", "codec", "max_fps"}, p)
            if "name" not in item:
                raise ConfigError(f"{p}name", "is required")
            name = _str(f"{p}name", item["name"])
            if not STREAM_NAME.match(name):
                raise ConfigError(f"{p}name", f"must match {STREAM_NAME.pattern}, got {name!r}")
            if name in seen:
                raise ConfigError(f"{p}name", f"duplicate rendition name {name!r}")
            if name == PASSTHROUGH:
                raise ConfigError(f"{p}name", f"{PASSTHROUGH!r} is reserved for passthrough")
            seen.add(name)
            height = _int(f"{p}height", item.get("height", 720), 90, 2160)
            if height % 2:
                raise ConfigError(f"{p}height", f"must be even, got {height}")
            codec = _str(f"{p}codec", item.get("codec", "h264")).lower()
            if codec not in CODECS:
                raise ConfigError(f"{p}codec", f"must be one of {', '.join(CODECS)}, got {codec!r}")
            items.append(
                Rendition(
                    name=name,
                    height=height,
                    bitrate_kbps=_int(f"{p}bitrate_kbps", item.get("bitrate_kbps", 2500), 50, 50000),
                    codec=codec,
                    max_fps=_float(f"{p}max_fps", item.get("max_fps", 30.0), 1.0, 120.0),
                )
            )
        renditions = tuple(items)

    m = _table(data, "media", "")
    md = MediaConfig()
    _check_keys(m, set(MediaConfig.__dataclass_fields__), "media.")
    media = MediaConfig(
        viewer_queue_packets=_int(
            "media.viewer_queue_packets", m.get("viewer_queue_packets", md.viewer_queue_packets), 2, 10000
        ),
        source_queue_frames=_int(
            "media.source_queue_frames", m.get("source_queue_frames", md.source_queue_frames), 1, 300
        ),
        keyframe_interval_s=_float(
            "media.keyframe_interval_s", m.get("keyframe_interval_s", md.keyframe_interval_s), 0.2, 60
        ),
        keyframe_min_interval_s=_float(
            "media.keyframe_min_interval_s",
            m.get("keyframe_min_interval_s", md.keyframe_min_interval_s),
            0.0,
            10,
        ),
        viewer_keyframe_interval_s=_float(
            "media.viewer_keyframe_interval_s",
            m.get("viewer_keyframe_interval_s", md.viewer_keyframe_interval_s), 0.0, 600,
        ),
        signal_lost_after_s=_float(
            "media.signal_lost_after_s", m.get("signal_lost_after_s", md.signal_lost_after_s), 0.1, 60
        ),
        slate_fps=_float("media.slate_fps", m.get("slate_fps", md.slate_fps), 0.5, 30),
        overlay=_bool("media.overlay", m.get("overlay", md.overlay)),
        stream_expire_s=_float(
            "media.stream_expire_s", m.get("stream_expire_s", md.stream_expire_s), 1, 86400 * 7
        ),
        default_mode=_mode("media.default_mode", m.get("default_mode", md.default_mode)),
        gop_cache=_bool("media.gop_cache", m.get("gop_cache", md.gop_cache)),
    )

    lt = _table(data, "latency", "")
    ld = LatencyConfig()
    _check_keys(lt, set(LatencyConfig.__dataclass_fields__), "latency.")
    latency = LatencyConfig(
        green_ms=_int("latency.green_ms", lt.get("green_ms", ld.green_ms), 1, 60000),
        yellow_ms=_int("latency.yellow_ms", lt.get("yellow_ms", ld.yellow_ms), 1, 60000),
        creep_ms=_int("latency.creep_ms", lt.get("creep_ms", ld.creep_ms), 50, 600000),
    )
    if latency.yellow_ms < latency.green_ms:
        raise ConfigError("latency.yellow_ms", "must not be below latency.green_ms")

    a = _table(data, "auth", "")
    _check_keys(a, {"enabled", "publish_token", "publish_token_env", "view_token", "view_token_env",
                    "tokens", "jwt_secret", "jwt_secret_env", "jwt_max_ttl_s", "shares_file", "public_url"},
                "auth.")
    jwt_secret = _token(a, "jwt_secret", "auth.", env)
    if jwt_secret is not None and len(jwt_secret) < 32:
        raise ConfigError("auth.jwt_secret", "must be at least 32 characters (HS256 key)")
    auth = AuthConfig(
        enabled=_bool("auth.enabled", a.get("enabled", False)),
        publish_token=_token(a, "publish_token", "auth.", env),
        view_token=_token(a, "view_token", "auth.", env),
        tokens=_tokens(a.get("tokens", []), env),
        jwt_secret=jwt_secret,
        jwt_max_ttl_s=_float("auth.jwt_max_ttl_s", a.get("jwt_max_ttl_s", 7 * 86400.0), 10, 366 * 86400),
        shares_file=_str("auth.shares_file", a.get("shares_file", "")),
        public_url=_str("auth.public_url", a.get("public_url", "")).rstrip("/"),
    )
    if auth.public_url and not auth.public_url.startswith(("https://", "http://")):
        raise ConfigError("auth.public_url", "must start with https:// (or http://)")

    w = _table(data, "webrtc", "")
    _check_keys(w, {"ice_addresses", "stun_servers", "announce_addresses", "port_min", "port_max",
                    "ice_servers"}, "webrtc.")
    addresses = w.get("ice_addresses", list(WebRTCConfig().ice_addresses))
    if not isinstance(addresses, list):
        raise ConfigError("webrtc.ice_addresses", "must be an array of IP addresses or interface names")
    for i, addr in enumerate(addresses):
        text = _str(f"webrtc.ice_addresses[{i}]", addr)
        if not _is_ip(text) and not IFACE.match(text):
            raise ConfigError(f"webrtc.ice_addresses[{i}]",
                              f"not an IP address or interface name: {addr!r}")
    announce = w.get("announce_addresses", [])
    if not isinstance(announce, list):
        raise ConfigError("webrtc.announce_addresses", "must be an array of IP addresses")
    for i, addr in enumerate(announce):
        if not _is_ip(_str(f"webrtc.announce_addresses[{i}]", addr)):
            raise ConfigError(f"webrtc.announce_addresses[{i}]", f"not an IP address: {addr!r}")
    stun = w.get("stun_servers", [])
    if not isinstance(stun, list) or not all(isinstance(s, str) and ICE_URL.match(s) for s in stun):
        raise ConfigError("webrtc.stun_servers", "must be an array of 'stun:host:port' URLs")
    port_min = _int("webrtc.port_min", w.get("port_min", 0), 0, 65535)
    port_max = _int("webrtc.port_max", w.get("port_max", port_min), 0, 65535)
    if (port_min == 0) != (port_max == 0) or port_max < port_min:
        raise ConfigError("webrtc.port_max", f"must be >= webrtc.port_min ({port_min}), both set or both 0")
    webrtc = WebRTCConfig(
        ice_addresses=tuple(addresses),
        stun_servers=tuple(stun),
        announce_addresses=tuple(announce),
        port_min=port_min,
        port_max=port_max,
        ice_servers=_ice_servers(w.get("ice_servers", []), env),
    )

    ab = _table(data, "abr", "")
    adef = AbrConfig()
    _check_keys(ab, set(AbrConfig.__dataclass_fields__), "abr.")
    abr = AbrConfig(
        enabled=_bool("abr.enabled", ab.get("enabled", adef.enabled)),
        start_kbps=_int("abr.start_kbps", ab.get("start_kbps", adef.start_kbps), 50, 100000),
        hold_s=_float("abr.hold_s", ab.get("hold_s", adef.hold_s), 1, 600),
        max_hold_s=_float("abr.max_hold_s", ab.get("max_hold_s", adef.max_hold_s), 1, 3600),
        queue_watch=_bool("abr.queue_watch", ab.get("queue_watch", adef.queue_watch)),
    )

    rc = _table(data, "record", "")
    rdef = RecordConfig()
    _check_keys(rc, set(RecordConfig.__dataclass_fields__), "record.")
    record = RecordConfig(
        enabled=_bool("record.enabled", rc.get("enabled", rdef.enabled)),
        dir=_str("record.dir", rc.get("dir", rdef.dir)) or rdef.dir,
        segment_s=_float("record.segment_s", rc.get("segment_s", rdef.segment_s), 2, 3600),
        fragment_s=_float("record.fragment_s", rc.get("fragment_s", rdef.fragment_s), 0.2, 10),
        max_age_days=_float("record.max_age_days", rc.get("max_age_days", rdef.max_age_days), 0.001, 36500),
        max_stream_mb=_float("record.max_stream_mb", rc.get("max_stream_mb", rdef.max_stream_mb), 0, 1e9),
        max_total_mb=_float("record.max_total_mb", rc.get("max_total_mb", rdef.max_total_mb), 0, 1e9),
        min_free_mb=_float("record.min_free_mb", rc.get("min_free_mb", rdef.min_free_mb), 0, 1e9),
        signing_key=_str("record.signing_key", rc.get("signing_key", rdef.signing_key)),
        generate_key=_bool("record.generate_key", rc.get("generate_key", rdef.generate_key)),
        replay_minutes=_float("record.replay_minutes",
                              rc.get("replay_minutes", rdef.replay_minutes), 1, 1440),
        queue_frames=_int("record.queue_frames", rc.get("queue_frames", rdef.queue_frames), 10, 100000),
    )

    te = _table(data, "telemetry", "")
    tdef = TelemetryConfig()
    _check_keys(te, set(TelemetryConfig.__dataclass_fields__), "telemetry.")
    tile_url = _str("telemetry.tile_url", te.get("tile_url", tdef.tile_url))
    if tile_url and (not tile_url.startswith(("https://", "http://"))
                     or not all(k in tile_url for k in ("{z}", "{x}", "{y}"))):
        raise ConfigError("telemetry.tile_url", "must be an http(s) URL with {z}, {x} and {y}, "
                                                "e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    def tget(key: str) -> Any:
        return te.get(key, getattr(tdef, key))

    telemetry = TelemetryConfig(
        stale_after_s=_float("telemetry.stale_after_s", tget("stale_after_s"), 0.5, 600),
        track_minutes=_float("telemetry.track_minutes", tget("track_minutes"), 0.1, 240),
        tile_url=tile_url,
        tile_attribution=_str("telemetry.tile_attribution", tget("tile_attribution")),
        overlay=_bool("telemetry.overlay", tget("overlay")),
    )

    li = _table(data, "limits", "")
    ldef = LimitsConfig()
    _check_keys(li, set(LimitsConfig.__dataclass_fields__), "limits.")
    limit_values: dict[str, Any] = {}
    for key, default in vars(ldef).items():
        if isinstance(default, float):
            limit_values[key] = _float(f"limits.{key}", li.get(key, default), 0.1, 86400 * 7)
        else:
            limit_values[key] = _int(f"limits.{key}", li.get(key, default), 1, 1 << 30)
    limits = LimitsConfig(**limit_values)

    rt = _table(data, "rtmp", "")
    _check_keys(rt, {"enabled", "host", "port", "app"}, "rtmp.")
    rtmp = RtmpConfig(
        enabled=_bool("rtmp.enabled", rt.get("enabled", False)),
        host=_host("rtmp.host", rt.get("host", host)),
        port=_port("rtmp.port", rt.get("port", 1935)),
        app=_str("rtmp.app", rt.get("app", "live")),
    )

    st = _table(data, "streams", "")
    streams = []
    for name, item in st.items():
        p = f"streams.{name}."
        if not STREAM_NAME.match(name):
            raise ConfigError(f"streams.{name}", f"stream name must match {STREAM_NAME.pattern}")
        if not isinstance(item, dict):
            raise ConfigError(f"streams.{name}", "must be a table")
        _check_keys(
            item,
            {"publish_token", "publish_token_env", "view_token", "view_token_env", "title",
             "source", "rtsp_transport", "rtsp_listen", "mode", "allow_senders", "record", "telemetry"},
            p,
        )
        allow = item.get("allow_senders", [])
        if not isinstance(allow, list):
            raise ConfigError(f"{p}allow_senders", "must be an array of addresses or networks")
        if allow and item.get("rtsp_listen") and item.get("rtsp_transport", "tcp") != "tcp":
            raise ConfigError(f"{p}allow_senders", "with rtsp_listen needs rtsp_transport = \"tcp\" "
                                                   "(RTP over UDP would bypass the gate)")
        for i, net in enumerate(allow):
            try:
                ipaddress.ip_network(_str(f"{p}allow_senders[{i}]", net), strict=False)
            except ValueError:
                raise ConfigError(f"{p}allow_senders[{i}]", f"not an address or network: {net!r}") from None
        source = item.get("source")
        if source is not None:
            source = _str(f"{p}source", source)
            if not source.startswith(SOURCE_SCHEMES):
                raise ConfigError(f"{p}source", f"must start with one of {SOURCE_SCHEMES}, got {source!r}")
            try:
                parsed = urlsplit(source)
                src_port = parsed.port
            except ValueError as exc:
                raise ConfigError(f"{p}source", f"not a valid URL: {exc}") from None
            if not parsed.hostname or (not source.startswith("rtsp") and not src_port):
                raise ConfigError(f"{p}source", "needs a host and a port (e.g. udp://0.0.0.0:5600)")
        tele = item.get("telemetry")
        if tele is not None:
            tele = _str(f"{p}telemetry", tele)
            try:
                tparsed = urlsplit(tele)
                tport = tparsed.port
            except ValueError as exc:
                raise ConfigError(f"{p}telemetry", f"not a valid URL: {exc}") from None
            if tparsed.scheme != "mavlink+udp" or not tparsed.hostname or not tport:
                raise ConfigError(f"{p}telemetry", "must be mavlink+udp://HOST:PORT "
                                                   f"(e.g. mavlink+udp://0.0.0.0:14550), got {tele!r}")
        transport = _str(f"{p}rtsp_transport", item.get("rtsp_transport", "tcp")).lower()
        if transport not in ("tcp", "udp"):
            raise ConfigError(f"{p}rtsp_transport", f"must be tcp or udp, got {transport!r}")
        streams.append(
            StreamConfig(
                name=name,
                publish_token=_token(item, "publish_token", p, env),
                view_token=_token(item, "view_token", p, env),
                title=_str(f"{p}title", item.get("title", "")),
                source=source,
                rtsp_transport=transport,
                rtsp_listen=_bool(f"{p}rtsp_listen", item.get("rtsp_listen", False)),
                mode=_mode(f"{p}mode", item.get("mode", media.default_mode)),
                allow_senders=tuple(allow),
                record=None if "record" not in item else _bool(f"{p}record", item["record"]),
                telemetry=tele,
            )
        )
    if auth.enabled:
        for s in streams:
            if s.publish_token is None and auth.publish_token is None and not any(
                t.role in ("publisher", "admin") for t in auth.tokens
            ) and not auth.jwt_secret:
                raise ConfigError(
                    f"streams.{s.name}.publish_token",
                    "auth is enabled but neither this nor auth.publish_token is set",
                )
        general_view = auth.view_token is not None or any(
            t.role in ("viewer", "control", "admin") for t in auth.tokens) or auth.jwt_secret
        if not general_view and any(s.view_token is None for s in streams):
            missing = next(s.name for s in streams if s.view_token is None)
            raise ConfigError(
                f"streams.{missing}.view_token",
                "auth is enabled but neither this nor auth.view_token is set",
            )

    return Config(
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        limits=limits,
        abr=abr,
        record=record,
        telemetry=telemetry,
        log_level=log_level,
        log_format=log_format,
        renditions=renditions,
        media=media,
        latency=latency,
        auth=auth,
        webrtc=webrtc,
        rtmp=rtmp,
        streams=tuple(streams),
    )


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    return parse(data, env)
