from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configs_load() -> None:
    cfg = load(ROOT / "configs/default.toml")
    assert cfg.host == "127.0.0.1" and not cfg.auth.enabled
    assert [r.name for r in cfg.renditions] == ["high", "low"]
    env = {"RELAY_PUBLISH_TOKEN": "p" * 16, "RELAY_VIEW_TOKEN": "v" * 16,
           "DRONE1_PUBLISH_TOKEN": "d" * 16}
    dep = load(ROOT / "configs/deployment.example.toml", env=env)
    assert dep.host == "0.0.0.0" and dep.auth.enabled
    assert dep.stream("drone1").publish_token == "d" * 16
    assert dep.auth.view_token == "v" * 16


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
