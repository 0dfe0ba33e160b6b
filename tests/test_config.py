from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, load, parse

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
