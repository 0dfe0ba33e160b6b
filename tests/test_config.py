from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, load, parse
from tests.helpers import p256_cert

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configs_load(tmp_path: Path) -> None:
    cfg = load(ROOT / "configs/default.toml")
    assert cfg.host == "127.0.0.1" and not cfg.auth.enabled
    assert [r.name for r in cfg.renditions] == ["high", "mid", "low", "floor"]
    assert cfg.renditions[-1].max_fps == 10 and cfg.abr.enabled
    # Every secret the example names is in deploy/drone-relay.env.example.
    names = [ln.split("=")[0] for ln in (ROOT / "deploy/drone-relay.env.example").read_text().splitlines()
             if ln and not ln.startswith("#")]
    env = {n: n.lower() * 2 for n in names}
    env["RELAY_JWT_SECRET"] = "j" * 40
    # The example's certificate paths, pointed at files that exist here.
    text = (ROOT / "configs/deployment.example.toml").read_text()
    for name in ("fullchain.pem", "privkey.pem"):
        (tmp_path / name).write_text("PEM")
    copy = tmp_path / "deployment.toml"
    copy.write_text(text.replace("/etc/drone-relay/tls/", f"{tmp_path}/"))
    dep = load(copy, env=env)
    assert dep.host == "0.0.0.0" and dep.auth.enabled and dep.scheme == "https"
    assert dep.stream("drone1").publish_token == env["DRONE1_PUBLISH_TOKEN"]
    assert {t.role for t in dep.auth.tokens} == {"control", "admin", "viewer"}
    assert [t.name for t in dep.auth.tokens if t.playback] == ["einsatzleitung"]
    assert dep.record.enabled and dep.records("drone1") and dep.record.fragment_s == 1.0
    assert dep.record.dir.startswith("/var/lib/drone-relay")
    assert dep.webrtc.announce_addresses == ("203.0.113.10",) and dep.webrtc.port_min == 40000
    assert dep.webrtc.ice_servers[0].secret == env["RELAY_TURN_SECRET"]
    assert dep.stream("px4").allow_senders == ("198.51.100.0/24",)
    # Without the certificate files the relay refuses to start, naming the key.
    with pytest.raises(ConfigError, match=r"server\.tls_cert"):
        load(ROOT / "configs/deployment.example.toml", env=env)


@pytest.mark.parametrize(("doc", "key"), [
    ({"server": {"port": 70000}}, "server.port"),
    ({"server": {"host": "not-an-ip"}}, "server.host"),
    ({"server": {"colour": 1}}, "server.colour"),
    ({"server": {"name": "vehicle one"}}, "server.name"),
    ({"streams": {"d": {"forward": ["https://c.example/whip/d"]}}}, "streams.d.forward_token"),
    ({"streams": {"d": {"forward": ["ftp://c.example/whip/d"], "forward_token": "t" * 10}}}, "streams.d.forward[0]"),
    ({"streams": {"d": {"forward": "https://c.example/", "forward_token": "t" * 10}}}, "streams.d.forward[0]"),
    ({"streams": {"d": {"forward": ["https://c/whip/d"], "forward_token": "t" * 10, "forward_rendition": "x"}}},
     "streams.d.forward_rendition"),
    ({"streams": {"d": {"forward": ["https://c/whip/d"], "forward_token": "t" * 10,
                        "forward_rendition": "source", "mode": "transcode"}}}, "streams.d.forward_rendition"),
    ({"streams": {"d": {"peer_pin": "12:34"}}}, "streams.d.peer_pin"),
    ({"streams": {"d": {"peer_ca": "/nonexistent/ca.pem"}}}, "streams.d.peer_ca"),
    ({"renditions": [{"name": "a", "height": 721}]}, "renditions[0].height"),
    ({"renditions": [{"name": "a", "codec": "av1"}]}, "renditions[0].codec"),
    ({"renditions": [{"name": "a"}, {"name": "a"}]}, "renditions[1].name"),
    ({"renditions": []}, "renditions"),
    ({"media": {"viewer_queue_packets": 0}}, "media.viewer_queue_packets"),
    ({"latency": {"green_ms": 500, "yellow_ms": 100}}, "latency.yellow_ms"),
    ({"auth": {"enabled": "yes"}}, "auth.enabled"),
    ({"auth": {"publish_token_env": "MISSING_VAR"}}, "auth.publish_token_env"),
    ({"auth": {"enabled": True}, "streams": {"d1": {}}}, "streams.d1.publish_token"),
    ({"streams": {"d1": {"publish_token": "short"}}}, "streams.d1.publish_token"),
    ({"webrtc": {"ice_addresses": ["256.1.1.1"]}}, "webrtc.ice_addresses[0]"),
    ({"webrtc": {"ice_addresses": ["eth0; rm -rf"]}}, "webrtc.ice_addresses[0]"),
    ({"webrtc": {"announce_addresses": ["relay.example.org"]}}, "webrtc.announce_addresses[0]"),
    ({"webrtc": {"port_min": 40000, "port_max": 30000}}, "webrtc.port_max"),
    ({"webrtc": {"ice_servers": [{"urls": ["turn:t:3478"]}]}}, "webrtc.ice_servers[0].secret"),
    ({"webrtc": {"ice_servers": [{"urls": ["http://t"]}]}}, "webrtc.ice_servers[0].urls"),
    ({"server": {"tls_cert": "/nonexistent.pem", "tls_key": "/nonexistent.key"}}, "server.tls_cert"),
    ({"auth": {"jwt_secret": "too-short-for-hs256"}}, "auth.jwt_secret"),
    ({"auth": {"tokens": [{"token": "abcdefghij", "role": "root"}]}}, "auth.tokens[0].role"),
    ({"auth": {"tokens": [{"role": "viewer"}]}}, "auth.tokens[0].token"),
    ({"limits": {"viewers_total": 0}}, "limits.viewers_total"),
    ({"streams": {"x": {"allow_senders": ["10.0.0.0/33"]}}}, "streams.x.allow_senders[0]"),
    ({"streams": {"x": {"source": "rtsp://0.0.0.0:8554/x", "rtsp_listen": True, "rtsp_transport": "udp",
                        "allow_senders": ["10.0.0.0/8"]}}}, "streams.x.allow_senders"),
])
def test_errors_name_the_key(doc: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(doc, env={})
    assert err.value.key == key
    assert str(err.value).startswith(key + ":")


def test_bad_toml_file(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_text("[server\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")


def test_cli_refuses_bad_config(tmp_path: Path) -> None:
    import subprocess
    import sys

    p = tmp_path / "bad.toml"
    p.write_text("[server]\nport = 0\n")
    out = subprocess.run([sys.executable, "-m", "relay", "--config", str(p)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "server.port" in out.stderr
    ok = subprocess.run([sys.executable, "-m", "relay", "--check"], capture_output=True,
                        text=True, timeout=60, cwd=ROOT)
    assert ok.returncode == 0 and "config ok" in ok.stdout


# Every key of every table, each set to a value that is not its default.
FULL = {
    "server": {"host": "0.0.0.0", "port": 9443, "log_level": "debug", "log_format": "json", "name": "centre-1"},
    "renditions": [{"name": "top", "height": 1080, "bitrate_kbps": 6000, "codec": "vp8", "max_fps": 25.0}],
    "media": {"viewer_queue_packets": 99, "source_queue_frames": 7, "source_max_age_ms": 150, "max_age_ms": 400, "keyframe_interval_s": 1.5,
              "keyframe_min_interval_s": 0.5, "viewer_keyframe_interval_s": 4.0, "signal_lost_after_s": 2.5,
              "slate_fps": 2.0, "overlay": False, "relay_stamp": True, "stream_expire_s": 77.0,
              "default_mode": "passthrough", "gop_cache": False},
    "latency": {"green_ms": 111, "yellow_ms": 222, "creep_ms": 3333},
    "auth": {"enabled": True, "publish_token": "pub-token-1", "view_token": "view-token-1",
             "tokens": [{"token": "admin-token-1", "role": "admin", "streams": ["d1"], "name": "boss",
                         "playback": True, "mark": True}],
             "jwt_secret": "s" * 40, "jwt_max_ttl_s": 3600.0, "shares_file": "/tmp/shares.json",
             "public_url": "https://relay.example"},
    "webrtc": {"ice_addresses": ["10.0.0.1", "eth0"], "stun_servers": ["stun:stun.example:3478"],
               "announce_addresses": ["203.0.113.1"], "port_min": 40000, "port_max": 40100,
               "ice_servers": [{"urls": ["turn:t.example:3478"], "username": "u", "credential": "c" * 10,
                                "secret": "t" * 10, "ttl_s": 600.0}]},
    "rtmp": {"enabled": True, "host": "10.0.0.2", "port": 1936, "app": "drones"},
    "streams": {"d1": {"publish_token": "pub-d1-token", "view_token": "view-d1-token", "title": "Roof",
                       "source": "rtsp://10.0.0.9:8554/cam", "rtsp_transport": "tcp", "rtsp_listen": True,
                       "rtp_codec": "h265",
                       "mode": "both", "allow_senders": ["10.0.0.0/8"], "record": True,
                       "telemetry": "mavlink+udp://0.0.0.0:14550",
                       "forward": ["https://centre.example/whip/d1"], "forward_token": "fwd-d1-token",
                       "forward_rendition": "source", "peer_pin": "ab" * 32,
                       "forward_backfill_kbps": 700, "source_token": "src-d1-token"}},
    "limits": {"viewers_per_stream": 5, "viewers_total": 6, "sessions_per_client": 7,
               "offers_per_client_per_min": 8, "unconfigured_streams": 9, "waiting_expire_s": 10.5,
               "rtmp_connections": 11, "rtmp_publish_within_s": 12.5, "rtmp_preauth_bytes": 1300,
               "rtmp_read_timeout_s": 14.5},
    "abr": {"enabled": False, "start_kbps": 700, "hold_s": 3.0, "max_hold_s": 30.0, "queue_watch": False},
    "record": {"enabled": True, "dir": "/tmp/rec", "segment_s": 30.0, "fragment_s": 0.5, "max_age_days": 2.0,
               "max_stream_mb": 100.0, "max_total_mb": 200.0, "min_free_mb": 50.0, "signing_key": "/tmp/k.pem",
               "generate_key": False, "replay_minutes": 5.0, "queue_frames": 50},
    "telemetry": {"stale_after_s": 1.5, "track_minutes": 2.0, "tile_url": "https://t.example/{z}/{x}/{y}.png",
                  "tile_attribution": "© tiles", "overlay": True},
    "markers": {"enabled": False, "roles": ["viewer"], "rate_per_min": 5, "max": 50, "lang": "de",
                "names": {"hotspot": "Brandherd", "water": "Hydrant"}},
    "cluster": {"redis": "rediss://:pw@redis.example:6380/1", "node": "node-2",
                "url": "https://node-2.example:8443", "viewers": "redirect", "refresh_s": 0.5, "ttl_s": 2.0, "linger_s": 30.0,
                "peers": ["https://node-1.example:8443"]},
    "srt": {"enabled": True, "host": "10.0.0.3", "port": 9000, "latency_ms": 400},
    "overload": {"enabled": False, "shed": ["overlay", "fps_half"]},
}


def test_the_vehicle_and_centre_examples_load(tmp_path: Path) -> None:
    """configs/vehicle.example.toml and configs/centre.example.toml, with their files put
    where they say: the vehicle forwards drone1 with a token, the centre knows the vehicle."""
    env = {"RELAY_PUBLISH_TOKEN": "p" * 12, "RELAY_VIEW_TOKEN": "v" * 12, "RELAY_CONTROL_TOKEN": "c" * 12,
           "RELAY_JWT_SECRET": "j" * 40, "VEHICLE_FORWARD_TOKEN": "f" * 12, "VEHICLE1_TOKEN": "f" * 12}
    for name in ("fullchain.pem", "privkey.pem", "brigade-ca.pem"):
        (tmp_path / name).write_text("PEM")
    key = public_key(tmp_path)
    loaded = {}
    for which in ("vehicle", "centre"):
        text = (ROOT / f"configs/{which}.example.toml").read_text()
        text = text.replace("/etc/drone-relay/tls/", f"{tmp_path}/").replace(
            "/etc/drone-relay/vehicles/vehicle-1.pub.pem", key)
        (tmp_path / f"{which}.toml").write_text(text)
        loaded[which] = load(tmp_path / f"{which}.toml", env=env)
    vehicle, centre = loaded["vehicle"], loaded["centre"]
    sc = vehicle.stream("drone1")
    assert vehicle.name == "vehicle-1" and sc.forward == ("https://centre.example.org:8443/whip/drone1",)
    assert sc.forward_token == env["VEHICLE_FORWARD_TOKEN"] and sc.peer_ca and vehicle.records("drone1")
    assert centre.vehicles[0].name == "vehicle-1" and centre.vehicles[0].token == sc.forward_token
    assert not centre.records("drone1") and centre.record.enabled
    # Every secret the two name is in deploy/drone-relay.env.example.
    names = {ln.split("=")[0] for ln in (ROOT / "deploy/drone-relay.env.example").read_text().splitlines()
             if ln and not ln.startswith("#")}
    assert set(env) <= names


def public_key(tmp: Path, private: bool = False) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    path = tmp / ("vehicle.pem" if private else "vehicle.pub.pem")
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) if private else
                     key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(path)


def test_vehicles_are_checked(tmp_path: Path) -> None:
    """A centre's [[vehicles]]: the key must be a public Ed25519 key (a private one given by
    mistake is named), names are unique, auth must be on (a vehicle is its token), the streams
    it forwards are named (no implicit "any") and a stream is named for one vehicle only."""
    auth = {"enabled": True, "view_token": "view-token-1"}
    good = {"name": "v1", "token": "vehicle-token-1", "public_key": public_key(tmp_path), "streams": ["d1"]}
    other = {**good, "name": "v2", "token": "vehicle-token-2"}
    cases = [
        ({"auth": auth, "vehicles": [{**good, "public_key": public_key(tmp_path, private=True)}]},
         "vehicles[0].public_key", "private key"),
        ({"auth": auth, "vehicles": [{**good, "public_key": str(tmp_path / "none.pem")}]},
         "vehicles[0].public_key", "cannot read"),
        ({"auth": auth, "vehicles": [{**good, "public_key": ""}]}, "vehicles[0].public_key", "required"),
        ({"auth": auth, "vehicles": [good, {**good, "token": "vehicle-token-2"}]}, "vehicles[1].name", "duplicate"),
        ({"auth": auth, "vehicles": [good, {**good, "name": "v2"}]}, "vehicles[1].token", "same token"),
        ({"vehicles": [good]}, "vehicles", "auth"),
        ({"auth": auth, "vehicles": [{k: v for k, v in good.items() if k != "token"}]}, "vehicles[0].token",
         "required"),
        ({"auth": auth, "vehicles": [{k: v for k, v in good.items() if k != "streams"}]}, "vehicles[0].streams",
         "required"),
        ({"auth": auth, "vehicles": [{**good, "streams": []}]}, "vehicles[0].streams", "required"),
        ({"auth": auth, "vehicles": [good, {**other, "streams": ["d2", "d1"]}]}, "vehicles[1].streams",
         "'d1' is named for vehicle 'v1' too"),
    ]
    for doc, key, words in cases:
        with pytest.raises(ConfigError) as err:
            parse(doc, env={})
        assert err.value.key == key and words in str(err.value), (key, str(err.value))
    assert parse({"auth": auth, "vehicles": [good]}, env={}).vehicles[0].name == "v1"
    both = parse({"auth": auth, "vehicles": [good, {**other, "streams": ["*"]}]}, env={})
    assert [v.streams for v in both.vehicles] == [("d1",), ("*",)]  # "*" written out is allowed


def test_every_key_comes_back_out(tmp_path: Path) -> None:
    """A guard for the schema: each key of each table, set to a non-default value, comes
    back out of parse() as given (a key accepted and silently dropped fails here), and the
    document above names every field the dataclasses declare (a new key must be added)."""
    import dataclasses

    from relay.config import Config

    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("PEM")
    doc = {**FULL, "server": {**FULL["server"], "tls_cert": str(tmp_path / "cert.pem"),
                              "tls_key": str(tmp_path / "key.pem")},
           "streams": {"d1": {**FULL["streams"]["d1"], "peer_ca": str(tmp_path / "cert.pem")}},
           "cluster": {**FULL["cluster"], "redis_ca": str(tmp_path / "cert.pem"),
                       "peer_ca": str(tmp_path / "cert.pem")},
           "vehicles": [{"name": "vehicle-1", "token": "vehicle-token-1", "streams": ["d1"],
                         "public_key": public_key(tmp_path)}],
           "dji": {"broker": "mqtts://broker.example:8883", "username": "relay-1", "password_env": "E1",
                   "ca": str(tmp_path / "cert.pem"), "aircraft": {"1581F5BKD00000AC": "d1"},
                   "streams": ["dji1"], "push": "whip", "push_host": "10.0.0.9",
                   "fov": {"177-0/ir": 40.0}, "stale_after_s": 9.0, "reply_timeout_s": 15.0,
                   "app_id_env": "E2", "app_key_env": "E3", "app_license_env": "E4",
                   "pilot_username": "rc-1", "pilot_password_env": "E5",
                   "pilot_broker": "mqtt://10.0.0.8:1883", "ntp_host": "10.0.0.7"}}
    doc["dji"]["push"] = "rtmp"  # (auth is on: WHIP cannot carry a token from a DJI device)
    env = {f"E{i}": f"env-secret-{i}" for i in range(1, 6)}
    from_env = {"dji.password": "E1", "dji.app_id": "E2", "dji.app_key": "E3", "dji.app_license": "E4",
                "dji.pilot_password": "E5"}
    cfg = parse(doc, env=env)
    default = Config()
    checked = 0

    def compare(obj: object, table: dict, fresh: object, path: str) -> None:
        nonlocal checked
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            if f.name == "name" and path.startswith("streams["):
                continue  # the table's key
            if f"{path}{f.name}" == "streams[0].rtsp_transport":
                continue  # "udp" cannot go with rtsp_listen and allow_senders: checked below
            if f"{path}{f.name}" == "dji.push":
                continue  # "whip" cannot go with auth on: checked below
            if f"{path}{f.name}" in from_env:  # (credentials only from the environment)
                assert getattr(obj, f.name) == env[from_env[f"{path}{f.name}"]], f"{path}{f.name}"
                checked += 1
                continue
            if f"{path}{f.name}" in ("streams[0].srt", "streams[0].srt_passphrase"):
                continue  # SRT cannot go with a pulled source: checked below
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                compare(value, table[f.name], getattr(fresh, f.name), f"{path}{f.name}.")
                continue
            given = table.get(f.name) if f.name in table else doc["server"].get(f.name)
            assert f.name in table or (path == "" and f.name in doc["server"]), f"{path}{f.name} not in FULL"
            if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
                items = given.values() if isinstance(given, dict) else given
                for i, (item, raw) in enumerate(zip(value, items, strict=True)):
                    compare(item, raw, type(item)(**({"name": "x"} if f.name in ("renditions", "vehicles") else {})),
                            f"{path}{f.name}[{i}].")
                continue
            want = tuple(given) if isinstance(given, list) else tuple(given.items()) if isinstance(given, dict) else given
            assert value == want, f"{path}{f.name}: {value!r} != {want!r}"
            assert value != getattr(fresh, f.name), f"{path}{f.name} is its default in FULL"
            checked += 1

    compare(cfg, {**doc, "streams": doc["streams"]}, default, "")
    assert parse({"dji": {**doc["dji"], "push": "whip"}}, env=env).dji.push == "whip"
    assert checked > 90
    assert cfg.media.relay_stamp is True  # was dropped before the schema was declared once
    assert cfg.stream("d1") is not None and cfg.stream("d1").title == "Roof"
    udp = parse({"streams": {"d2": {"rtsp_transport": "UDP"}}}, env={})
    assert udp.streams[0].rtsp_transport == "udp"
    srt = parse({"streams": {"d2": {"srt": True, "srt_passphrase": "p" * 12}}}, env={})
    assert srt.streams[0].srt is True and srt.streams[0].srt_passphrase == "p" * 12
    for bad, why in (({"srt": True, "source": "udp://127.0.0.1:5000"}, "either published over SRT"),
                     ({"srt": True, "srt_passphrase": "short"}, "at least 10"),
                     ({"srt": True, "srt_passphrase": "p" * 80}, "10 to 79"),
                     ({"srt_passphrase": "p" * 12}, "srt = true")):
        with pytest.raises(ConfigError, match=why):
            parse({"streams": {"d2": bad}}, env={})


def test_defaults_follow_other_keys() -> None:
    cfg = parse({"server": {"host": "0.0.0.0"}, "media": {"default_mode": "passthrough"},
                 "streams": {"d1": {}}, "webrtc": {"port_min": 40000},
                 "auth": {"tokens": [{"token": "abcdefghij", "role": "viewer"}]}}, env={})
    assert cfg.rtmp.host == "0.0.0.0"  # [rtmp] host follows [server] host
    assert cfg.stream("d1").mode == "passthrough"  # a stream's mode follows [media] default_mode
    assert cfg.webrtc.port_max == 40000
    assert cfg.auth.tokens[0].name == "viewer-0"
    assert cfg.renditions[0].name == "high" and cfg.renditions[0].height == 720


def test_the_cluster_node_example_loads(tmp_path: Path) -> None:
    """configs/cluster-node.example.toml with its files where it says and its secrets in the
    environment: a node of a cluster on Redis over TLS."""
    env = {"RELAY_PUBLISH_TOKEN": "p" * 12, "RELAY_VIEW_TOKEN": "v" * 12, "RELAY_CONTROL_TOKEN": "c" * 12,
           "RELAY_JWT_SECRET": "j" * 40, "RELAY_REDIS_URL": "rediss://:pw-0123456789@redis.example:6380/0"}
    for name in ("fullchain.pem", "privkey.pem", "brigade-ca.pem"):
        (tmp_path / name).write_text("PEM")
    text = (ROOT / "configs/cluster-node.example.toml").read_text().replace("/etc/drone-relay/tls/", f"{tmp_path}/")
    (tmp_path / "node.toml").write_text(text)
    config = load(tmp_path / "node.toml", env=env)
    assert config.cluster.enabled and config.cluster.redis == env["RELAY_REDIS_URL"]
    assert config.cluster.url == "https://relay-2.brigade.example:8443" and config.name == "relay-2"
    names = {ln.split("=")[0] for ln in (ROOT / "deploy/drone-relay.env.example").read_text().splitlines()
             if ln and not ln.startswith("#")}
    assert set(env) <= names


def test_one_token_in_two_places_is_refused_without_showing_it() -> None:
    """Two streams with the same publish token: the second's drone would publish the first
    stream (the first holder found wins). Refused at load (and at --check), naming both keys."""
    shared = "the-same-publish-token"
    doc = {"auth": {"enabled": True, "view_token": "view-token-123"},
           "streams": {"d1": {"publish_token": shared}, "d2": {"publish_token": shared}}}
    with pytest.raises(ConfigError) as err:
        parse(doc, env={})
    msg = str(err.value)
    assert "streams.d2.publish_token" in msg and "streams.d1.publish_token" in msg and shared not in msg
    doc["streams"]["d2"]["publish_token"] = "view-token-123"  # nor a view token as a publish token
    with pytest.raises(ConfigError, match=r"auth\.view_token"):
        parse(doc, env={})
    doc["streams"]["d2"]["publish_token"] = "another-publish-token"
    assert parse(doc, env={}).stream("d2") is not None


def header_list(text: str, label: str) -> list[str]:
    """The words after ``# <label>:`` in a config's header, with its continuation lines."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"# {label}:"))
    words = lines[start].split(":", 1)[1].split()
    for ln in lines[start + 1:]:
        if not ln.startswith("#   ") or ln.startswith("#   python"):
            break
        words += ln[1:].split()
    return words


@pytest.mark.parametrize("which", ["deployment", "vehicle", "centre", "cluster-node"])
def test_each_example_names_every_secret_and_file_its_check_needs(tmp_path: Path, which: str) -> None:
    """An example's header says how to --check it and lists the secrets and files it reads:
    exactly the ones its keys name (a newcomer who sets them passes --check), each of them
    needed (without any one --check fails naming its key), each secret in the env example."""
    import re
    import subprocess
    import sys

    from relay.__main__ import tls_files

    text = (ROOT / f"configs/{which}.example.toml").read_text()
    secrets, files = header_list(text, "Secrets it reads"), header_list(text, "Files it reads")
    assert f"python -m relay --config configs/{which}.example.toml --check" in text
    assert set(secrets) == set(re.findall(r'_env = "([A-Z0-9_]+)"', text)), secrets
    assert set(files) == set(re.findall(r'"(/etc/drone-relay/[^"]+)"', text)), files
    listed = {ln.split("=")[0] for ln in (ROOT / "deploy/drone-relay.env.example").read_text().splitlines()
              if ln and not ln.startswith("#")}
    assert set(secrets) <= listed
    env = {s: ("rediss://:pw-0123456789@redis.example:6380/0" if s.endswith("_URL") else f"{s.lower()}-{'x' * 32}")
           for s in secrets}
    here = {f: tmp_path / f.replace("/", "_") for f in files}
    cert, key = p256_cert(tmp_path)  # real PEM: --check loads the chain and every CA file
    real = {"fullchain.pem": cert, "privkey.pem": key, "brigade-ca.pem": cert}
    for f, p in here.items():
        p.write_bytes(Path(public_key(tmp_path) if f.endswith(".pub.pem") else real[Path(f).name]).read_bytes())
    copy = tmp_path / f"{which}.toml"
    for f, p in here.items():
        text = text.replace(f'"{f}"', f'"{p}"')
    copy.write_text(text)
    load(copy, env=env)
    out = subprocess.run([sys.executable, "-m", "relay", "--config", str(copy), "--check"], cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for p in here.values():  # a file that is there but not what its key says fails --check
        saved = p.read_bytes()
        p.write_text("not a certificate")
        with pytest.raises(ConfigError):
            tls_files(load(copy, env=env))
        p.write_bytes(saved)
    for s in secrets:
        with pytest.raises(ConfigError):
            load(copy, env={k: v for k, v in env.items() if k != s})
    for p in here.values():
        saved = p.read_bytes()
        p.unlink()
        with pytest.raises(ConfigError):
            load(copy, env=env)
        p.write_bytes(saved)


@pytest.mark.parametrize(("names", "problem"), [
    ({"fire": "Feuer"}, "markers.names.fire: is not a marker kind"),
    ({"hotspot": ""}, "markers.names.hotspot: must be 1-40 printable characters"),
    ({"hotspot": "x" * 41}, "markers.names.hotspot: must be 1-40 printable characters"),
    ({"hotspot": "Glut\nnest"}, "markers.names.hotspot: must be 1-40 printable characters"),
    ({"hotspot": 3}, "markers.names.hotspot: must be 1-40 printable characters"),
    ("Glutnest", "markers.names: must be a table of kind = name"),
])
def test_marker_kind_names_are_checked(names: object, problem: str) -> None:
    """A brigade's own words for the kinds: each a kind the relay knows, short printable text."""
    with pytest.raises(ConfigError, match=problem.replace(".", "\\.")):
        parse({"markers": {"names": names}}, env={})
    assert dict(parse({"markers": {"names": {"hotspot": " Glutnest "}}}, env={}).markers.names) == {"hotspot": "Glutnest"}
