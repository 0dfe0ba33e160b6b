"""The relay's settings: one frozen dataclass per TOML table, each key declared once (its
type, default and bounds in its ``field()``); :mod:`.fields` reads them generically."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .access import AuthConfig, MarkersConfig, TokenConfig, VehicleConfig, check_tokens_unique
from .checks import (
    PASSTHROUGH,
    TURN_URLS,
    even,
    forward_url,
    ice_url,
    ip,
    ip_or_iface,
    lower,
    mavlink,
    network,
    node_name,
    rendition_name,
    sha256_pin,
    source,
    stream_name,
    stun_url,
    tile_url,
)
from .cluster import ClusterConfig
from .dji import DjiConfig
from .fields import (
    ConfigError,
    Ctx,
    check_host,
    choice,
    flag,
    host,
    in_table,
    integer,
    named_tables,
    number,
    path_or_none,
    required,
    secret,
    section,
    strings,
    tables,
    text,
)
from .overload import OverloadConfig

__all__ = ["CODECS", "DEFAULT_LADDER", "MODES", "AbrConfig", "AuthConfig", "ClusterConfig", "Config",
           "IceServer",
           "LatencyConfig", "LimitsConfig", "MarkersConfig", "MediaConfig", "RecordConfig", "Rendition",
           "RtmpConfig", "SrtConfig", "StreamConfig", "TelemetryConfig", "TokenConfig", "VehicleConfig",
           "WebRTCConfig"]

CODECS = ("h264", "vp8")
MODES = ("transcode", "passthrough", "both")
WEEK_S = 86400.0 * 7


# --------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class Rendition:
    """One encoded output: every viewer of it receives the same packets."""

    name: str = required(rendition_name)
    height: int = integer(720, 90, 2160, check=even)  # width follows the source's aspect ratio
    bitrate_kbps: int = integer(2500, 50, 50000)
    codec: str = choice("h264", CODECS)
    max_fps: float = number(30.0, 1.0, 120.0)


@dataclass(frozen=True)
class StreamConfig:
    """A stream known in advance: tokens, a pulled or listened source, telemetry."""

    name: str = ""  # the table's key ([streams.<name>])
    publish_token: str | None = secret()
    view_token: str | None = secret()
    title: str = text("")
    source: str | None = text(None, check=source)  # pulled/listened: rtsp://, udp://, rtp://
    rtsp_transport: str = text("tcp", check=lower(("tcp", "udp"), "tcp or udp"))
    # rtp:// carries no description of itself: the codec its payload type 96 holds (RFC 6184
    # H.264, as QGroundControl sends; RFC 7798 H.265, as GStreamer's rtph265pay sends).
    rtp_codec: str = choice("h264", ("h264", "h265"))
    # Published over SRT to the relay's [srt] port, the stream id naming this stream; the
    # passphrase (10-79 characters) makes SRT encrypt it (AES) and refuses callers without it.
    srt: bool = flag(False)
    srt_passphrase: str | None = secret(min_len=10)
    rtsp_listen: bool = flag(False)  # accept an RTSP push (ANNOUNCE/RECORD) instead of pulling
    mode: str = choice("transcode", MODES, default_from="media.default_mode")
    # UDP/RTP/RTSP-listen: networks whose packets are accepted (empty = any sender).
    allow_senders: tuple[str, ...] = strings(item=network,
                                             what="must be an array of addresses or networks")
    record: bool | None = flag(None)  # None: as [record] enabled
    # Telemetry in: "mavlink+udp://0.0.0.0:14550" (allow_senders applies, one sender at a time).
    # KLV in an MPEG-TS/RTSP source and the HTTP endpoint need no setting.
    telemetry: str | None = text(None, check=mavlink)
    # source = "whep+https://vehicle:8443/whep/drone1": pulled from a WHEP server (another
    # relay, MediaMTX, ...) with this token.
    source_token: str | None = secret()
    # Forwarded to other relays (the control centre's) over WHIP, dialled from here:
    # forward = ["https://centre:8443/whip/drone1"], a publish token there, the rung the
    # uplink starts on ("auto": chosen from the link as for a viewer; "source": the drone's
    # own H.264). peer_ca / peer_pin: how to trust the other side's certificate, for a
    # forward and a whep+https source (a CA file, or a pinned SHA-256; default: the system's).
    forward: tuple[str, ...] = strings(item=forward_url, one_or_many=True,
                                       what="must be an array of WHIP URLs")
    forward_token: str | None = secret()
    forward_rendition: str = text("auto")
    peer_ca: str | None = path_or_none()
    peer_pin: str | None = text(None, check=sha256_pin)
    # The record follows over the same uplink, in the room live leaves, at most this fast.
    forward_backfill_kbps: int = integer(2000, 50, 1_000_000)

    def check(self, path: str, ctx: Ctx) -> None:
        if self.srt_passphrase is not None and (len(self.srt_passphrase) > 79 or not self.srt):
            raise ConfigError(f"{path}srt_passphrase", "is 10 to 79 characters, for a stream with srt = true")
        if self.srt and self.source:
            raise ConfigError(f"{path}srt", "a stream is either published over SRT or pulled from source")
        if self.forward and self.forward_token is None:
            raise ConfigError(f"{path}forward_token", "a forward needs a publish token for the other relay "
                                                      "(forward_token or forward_token_env)")
        if self.allow_senders and self.rtsp_listen and self.rtsp_transport != "tcp":
            raise ConfigError(f"{path}allow_senders", "with rtsp_listen needs rtsp_transport = \"tcp\" "
                                                      "(RTP over UDP would bypass the gate)")


@dataclass(frozen=True)
class IceServer:
    """A STUN/TURN server handed to clients (and used by the relay's own peers)."""

    urls: tuple[str, ...] = strings(item=ice_url, one_or_many=True, what=TURN_URLS)
    username: str | None = text(None)
    credential: str | None = secret()
    secret: str | None = secret()  # coturn use-auth-secret: time-limited credentials
    ttl_s: float = number(86400.0, 60, 30 * 86400)

    def check(self, path: str, ctx: Ctx) -> None:
        if not self.urls:
            raise ConfigError(f"{path}urls", TURN_URLS)
        is_turn = any(u.startswith("turn") for u in self.urls)
        if is_turn and self.secret is None and (self.username is None or self.credential is None):
            raise ConfigError(f"{path}secret", "a TURN server needs username + credential, or secret")


@dataclass(frozen=True)
class WebRTCConfig:
    # Host candidate addresses (or interface names) offered to peers; empty = every
    # non-loopback interface.
    ice_addresses: tuple[str, ...] = strings(
        ("127.0.0.1",), item=ip_or_iface, what="must be an array of IP addresses or interface names")
    stun_servers: tuple[str, ...] = strings(item=stun_url, what="must be an array of 'stun:host:port' URLs")
    # Public addresses announced for a relay behind 1:1 NAT (same ports as the host ones).
    announce_addresses: tuple[str, ...] = strings(item=ip, what="must be an array of IP addresses")
    port_min: int = integer(0, 0, 65535)  # 0 = ephemeral ports; else ICE binds within [min, max]
    port_max: int = integer(0, 0, 65535, default_from="port_min")
    ice_servers: tuple[IceServer, ...] = tables(
        IceServer, "must be an array of tables ([[webrtc.ice_servers]])")

    def check(self, path: str, ctx: Ctx) -> None:
        lo, hi = self.port_min, self.port_max
        if (lo == 0) != (hi == 0) or hi < lo:
            raise ConfigError(f"{path}port_max", f"must be >= webrtc.port_min ({lo}), both set or both 0")


@dataclass(frozen=True)
class LimitsConfig:
    viewers_per_stream: int = integer(50, 1, 1 << 30)
    viewers_total: int = integer(200, 1, 1 << 30)
    sessions_per_client: int = integer(20, 1, 1 << 30)  # WHIP + WHEP sessions from one address
    offers_per_client_per_min: int = integer(60, 1, 1 << 30)
    unconfigured_streams: int = integer(16, 1, 1 << 30)  # streams that may appear without a config entry
    waiting_expire_s: float = number(60.0, 0.1, WEEK_S)  # an unconfigured never-live stream is forgotten
    rtmp_connections: int = integer(32, 1, 1 << 30)
    rtmp_publish_within_s: float = number(10.0, 0.1, WEEK_S)  # not published by then: closed
    rtmp_preauth_bytes: int = integer(65536, 1, 1 << 30)  # what a client may send before it is authorised
    rtmp_read_timeout_s: float = number(10.0, 0.1, WEEK_S)  # a publisher silent this long is closed


@dataclass(frozen=True)
class MediaConfig:
    viewer_queue_packets: int = integer(120, 2, 10000)  # per-viewer bound, in encoded frames
    source_queue_frames: int = integer(4, 1, 300)  # decoded frames waiting for the pipeline
    # Bounded age, not only count: a decoded frame older than this (since it arrived) is not
    # processed while a newer one waits; the pipeline takes the newest instead.
    source_max_age_ms: int = integer(100, 10, 60000)
    # A viewer's (or a forward's) packet older than this since it arrived is not sent: the
    # viewer jumps to the newest keyframe queued, or waits for the next (asking for one).
    max_age_ms: int = integer(250, 20, 60000)
    keyframe_interval_s: float = number(2.0, 0.2, 60)
    keyframe_min_interval_s: float = number(0.3, 0.0, 10)  # requested keyframes, per rendition
    # Per viewer: at most one keyframe request (PLI/FIR, overflow) this often; more wait for
    # the regular keyframe, so a lossy viewer cannot raise everyone's keyframe rate.
    viewer_keyframe_interval_s: float = number(10.0, 0.0, 600)
    signal_lost_after_s: float = number(1.0, 0.1, 60)
    slate_fps: float = number(5.0, 0.5, 30)
    overlay: bool = flag(True)
    # Paint the relay's own stamp (bottom-right) into every transcoded picture. Off: latency
    # is measured from RTP timestamps (docs/stamp.md); on only for browsers without them.
    relay_stamp: bool = flag(False)
    stream_expire_s: float = number(600.0, 1, WEEK_S)  # an unconfigured lost unwatched stream is forgotten
    default_mode: str = choice("both", MODES)  # for streams not in [streams]
    gop_cache: bool = flag(True)  # passthrough: a joining viewer starts at the cached keyframe


@dataclass(frozen=True)
class RtmpConfig:
    enabled: bool = flag(False)
    host: str = text("127.0.0.1", check=check_host, default_from="host")
    port: int = integer(1935, 1, 65535)
    app: str = text("live")


@dataclass(frozen=True)
class SrtConfig:
    """SRT ingest: one listener for every stream with srt = true (libsrt)."""

    enabled: bool = flag(False)
    host: str = text("127.0.0.1", check=check_host, default_from="host")
    port: int = integer(8890, 1, 65535)
    latency_ms: int = integer(120, 20, 10000)  # the receiver's buffer against loss (SRT's own ARQ)


@dataclass(frozen=True)
class AbrConfig:
    """Automatic rendition choice for viewers that ask for none (or for "auto")."""

    enabled: bool = flag(True)
    start_kbps: int = integer(1200, 50, 100000)  # a new viewer starts at the best rung at or under this
    hold_s: float = number(6.0, 1, 600)  # clean time after a switch before a step up
    max_hold_s: float = number(60.0, 1, 3600)  # the hold doubles after each failed step up, to this
    # Watch each auto viewer's link for a standing queue (an echo every 0.1 s, ~7 kbit/s):
    # the soonest sign that it fell. Off: steps down on the browser's estimate, loss, freezes.
    queue_watch: bool = flag(True)


@dataclass(frozen=True)
class RecordConfig:
    """The incident record: fMP4 segments, a signed hash chain per stream, retention."""

    enabled: bool = flag(False)
    dir: str = text("recordings", check=lambda k, v: v or "recordings")
    segment_s: float = number(60.0, 2, 3600)  # a new file this often (at the next keyframe)
    fragment_s: float = number(1.0, 0.2, 10)  # a crash loses at most about this (plus the open GOP)
    max_age_days: float = number(30.0, 0.001, 36500)
    max_stream_mb: float = number(0, 0, 1e9)  # per stream; 0 = no budget
    max_total_mb: float = number(0, 0, 1e9)  # all streams; 0 = no budget
    min_free_mb: float = number(500, 0, 1e9)  # below this free space recording stops (live goes on)
    signing_key: str = text("")  # PEM Ed25519 private key (PKCS8); empty = <dir>/signing-key.pem
    generate_key: bool = flag(True)  # create the key file if it does not exist
    replay_minutes: float = number(10.0, 1, 1440)  # the viewer's replay timeline
    queue_frames: int = integer(300, 10, 100000)  # frames waiting for the writer; more are dropped


@dataclass(frozen=True)
class TelemetryConfig:
    """Where the drone is: staleness, the track, the map's tiles, the burned-in overlay."""

    stale_after_s: float = number(3.0, 0.5, 600)  # no update this long: stale, never "current"
    track_minutes: float = number(10.0, 0.1, 240)  # the track on the map
    # Map tiles ({z}/{x}/{y}); empty: no tiles, a plain grid with a scale (no outside requests).
    tile_url: str = text("", check=tile_url)
    tile_attribution: str = text("")
    overlay: bool = flag(False)  # draw heading, altitude, coordinates, battery into transcoded video


@dataclass(frozen=True)
class LatencyConfig:
    green_ms: int = integer(250, 1, 60000)
    yellow_ms: int = integer(600, 1, 60000)
    creep_ms: int = integer(1500, 50, 600000)  # a viewer over this is moved to the live edge

    def check(self, path: str, ctx: Ctx) -> None:
        if self.yellow_ms < self.green_ms:
            raise ConfigError(f"{path}yellow_ms", "must not be below latency.green_ms")


DEFAULT_LADDER = (Rendition("high", 720, 2500), Rendition("low", 360, 600))


@dataclass(frozen=True)
class Config:
    host: str = in_table("server", host("127.0.0.1"))
    port: int = in_table("server", integer(8080, 1, 65535))
    # This relay's name where others show it: the path of a forwarded stream ("vehicle-1").
    name: str = in_table("server", text("relay", check=node_name))
    tls_cert: str | None = in_table("server", path_or_none())  # PEM chain: HTTPS for everything
    tls_key: str | None = in_table("server", path_or_none())
    log_level: str = in_table("server", choice("info", ("debug", "info", "warning", "error"),
                                               sep="|", lead=""))
    log_format: str = in_table("server", choice("text", ("text", "json"), sep="|", lead=""))
    renditions: tuple[Rendition, ...] = tables(
        Rendition, "must be a non-empty array of tables ([[renditions]])", DEFAULT_LADDER, required=True)
    media: MediaConfig = section(MediaConfig)
    latency: LatencyConfig = section(LatencyConfig)
    auth: AuthConfig = section(AuthConfig)
    webrtc: WebRTCConfig = section(WebRTCConfig)
    rtmp: RtmpConfig = section(RtmpConfig)
    srt: SrtConfig = section(SrtConfig)
    streams: tuple[StreamConfig, ...] = named_tables(StreamConfig, stream_name)
    limits: LimitsConfig = section(LimitsConfig)
    abr: AbrConfig = section(AbrConfig)
    record: RecordConfig = section(RecordConfig)
    telemetry: TelemetryConfig = section(TelemetryConfig)
    markers: MarkersConfig = section(MarkersConfig)
    cluster: ClusterConfig = section(ClusterConfig)
    overload: OverloadConfig = section(OverloadConfig)
    dji: DjiConfig = section(DjiConfig)
    vehicles: tuple[VehicleConfig, ...] = tables(VehicleConfig, "must be an array of tables ([[vehicles]])")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def stream(self, name: str) -> StreamConfig | None:
        return next((s for s in self.streams if s.name == name), None)

    def mode(self, stream: str) -> str:
        sc = self.stream(stream)
        return sc.mode if sc is not None else self.media.default_mode

    def records(self, stream: str) -> bool:
        sc = self.stream(stream)
        if sc is not None and sc.record is not None:
            return sc.record
        return self.record.enabled

    def rendition(self, name: str) -> Rendition | None:
        return next((r for r in self.renditions if r.name == name), None)

    def check(self, path: str, ctx: Ctx) -> None:
        seen: set[str] = set()
        for i, r in enumerate(self.renditions):
            if r.name in seen:
                raise ConfigError(f"renditions[{i}].name", f"duplicate rendition name {r.name!r}")
            seen.add(r.name)
        if self.auth.enabled:
            self._check_auth()
            if self.dji.enabled and self.dji.push == "whip":
                raise ConfigError("dji.push", "a DJI aircraft cannot send a WHIP bearer token: with auth on, "
                                              'push = "rtmp" (its token rides in the URL)')
        if self.dji.enabled and not self.rtmp.enabled and self.dji.push == "rtmp":
            raise ConfigError("dji.push", 'the aircraft push RTMP: [rtmp] enabled = true (or push = "whip")')
        names = [v.name for v in self.vehicles]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"vehicles[{len(names) - 1 - names[::-1].index(dup)}].name",
                              f"duplicate vehicle name {dup!r}")
        if self.cluster.enabled and self.auth.enabled and not self.auth.jwt_secret:
            raise ConfigError("auth.jwt_secret", "a cluster with auth needs it (the same on every node): "
                                                 "nodes sign their pulls from each other with it")
        named: dict[str, str] = {}
        for i, v in enumerate(self.vehicles):
            for n in v.streams:
                if n != "*" and named.setdefault(n, v.name) != v.name:
                    raise ConfigError(f"vehicles[{i}].streams",
                                      f"{n!r} is named for vehicle {named[n]!r} too: "
                                      "a stream's record comes from the one vehicle that forwards it")
        if self.vehicles and not self.auth.enabled:
            raise ConfigError("vehicles", "needs [auth] enabled: a vehicle is known by its token")
        for s in self.streams:
            wanted = s.forward_rendition
            if s.forward and wanted not in ("auto", PASSTHROUGH) and self.rendition(wanted) is None:
                raise ConfigError(f"streams.{s.name}.forward_rendition",
                                  f"must be auto, {PASSTHROUGH} or a rendition name, got {wanted!r}")
            if s.forward and wanted == PASSTHROUGH and s.mode == "transcode":
                raise ConfigError(f"streams.{s.name}.forward_rendition",
                                  f"{PASSTHROUGH!r} needs mode = \"passthrough\" or \"both\"")

    def _check_auth(self) -> None:
        """With auth on, every stream can be published and watched by someone."""
        auth = self.auth
        publishers = (auth.publish_token is not None or auth.jwt_secret
                      or any(t.role in ("publisher", "admin") for t in auth.tokens))
        for s in self.streams:
            by_vehicle = any(s.name in v.streams or "*" in v.streams for v in self.vehicles)
            if s.publish_token is None and not publishers and not by_vehicle:
                raise ConfigError(f"streams.{s.name}.publish_token",
                                  "auth is enabled but neither this nor auth.publish_token is set")
        viewers = (auth.view_token is not None or auth.jwt_secret
                   or any(t.role in ("viewer", "control", "admin") for t in auth.tokens))
        missing = next((s.name for s in self.streams if s.view_token is None), None)
        if not viewers and missing is not None:
            raise ConfigError(f"streams.{missing}.view_token",
                              "auth is enabled but neither this nor auth.view_token is set")
        check_tokens_unique(self.auth, self.vehicles, self.streams)

    def with_overrides(self, *, host: str | None = None, port: int | None = None) -> Config:
        from .fields import as_int
        cfg = self
        if host is not None:
            cfg = replace(cfg, host=check_host("server.host", host))
        if port is not None:
            cfg = replace(cfg, port=as_int("server.port", port, 1, 65535))
        return cfg
