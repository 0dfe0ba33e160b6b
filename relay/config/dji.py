"""``[dji]``: the relay as a DJI Cloud API platform (opt-in; without a broker nothing changes).

DJI Pilot 2 (on the remote controller) and the Docks speak MQTT to a broker the brigade runs
(Mosquitto); the relay is one more client of it. Credentials come only from the environment."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .checks import stream_name
from .fields import ConfigError, Ctx, choice, env_secret, number, pairs, path_or_none, strings, text

__all__ = ["SERIAL", "DjiConfig"]

SERIAL = re.compile(r"^[A-Za-z0-9]{4,40}$")  # a DJI serial number (the topics' {sn})
LENS_KEY = re.compile(r"^\d{1,4}-\d{1,4}/(wide|zoom|ir)$")


def _broker(key: str, url: str) -> str:
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname or u.path.strip("/") or u.username or u.password:
        raise ConfigError(key, "must be mqtt://host:1883 or mqtts://host:8883 (credentials come from the "
                               "environment, never in the URL)")
    return url


def _aircraft(key: str, sn: str, stream: Any) -> tuple[str, str]:
    if not SERIAL.match(sn):
        raise ConfigError(f"{key}.{sn}", "is not a DJI serial number (4-40 letters and digits)")
    if not isinstance(stream, str):
        raise ConfigError(f"{key}.{sn}", "must be a stream name")
    stream_name(f"{key}.{sn}", stream)
    return sn, stream


def _fov(key: str, lens: str, hfov: Any) -> tuple[str, float]:
    if not LENS_KEY.match(lens):
        raise ConfigError(f"{key}.{lens}", 'must be "<type>-<subtype>/<wide|zoom|ir>" (a payload index\'s '
                                           'first two numbers, e.g. "53-0/ir")')
    if isinstance(hfov, bool) or not isinstance(hfov, int | float) or not math.isfinite(hfov) \
            or not 1.0 <= hfov <= 170.0:
        raise ConfigError(f"{key}.{lens}", "must be the lens's horizontal field of view, 1-170 degrees")
    return lens, float(hfov)


def _stream_item(key: str, value: str) -> None:
    stream_name(key, value)


@dataclass(frozen=True)
class DjiConfig:
    broker: str = text("", check=lambda k, v: _broker(k, v) if v else v)  # empty: off
    username: str = text("relay")                   # the relay's own MQTT account
    password: str | None = env_secret(min_len=8)    # password_env = "DJI_MQTT_PASSWORD"
    ca: str | None = path_or_none()                 # mqtts: the broker's CA (else the system's)
    # Aircraft serial -> stream (``[dji.aircraft]``); others take the next free name of
    # ``streams`` in the order they come online; with neither, an unknown serial is ignored.
    aircraft: tuple[tuple[str, str], ...] = pairs(_aircraft, "must be a table of serial = stream")
    streams: tuple[str, ...] = strings(item=_stream_item)
    # How a drone told to start pushes to this relay: WHIP (url_type 4) or RTMP (url_type 1).
    push: str = choice("rtmp", ("rtmp", "whip"))
    push_host: str = text("")  # this relay's address as the aircraft reaches it (default: the broker's host)
    # A lens the relay's table lacks, or a brigade's own figure: "<type>-<subtype>/<lens>" = HFOV.
    fov: tuple[tuple[str, float], ...] = pairs(_fov, "must be a table of lens = horizontal field of view")
    stale_after_s: float = number(6.0, 1.0, 120.0)  # OSD comes every 2 s: silent this long is stale
    reply_timeout_s: float = number(20.0, 1.0, 120.0)  # a service's reply (DJI's own platform: 20 s)
    # For DJI Pilot 2's H5 page (/dji): the app from the brigade's DJI developer account, and
    # the broker account the remote controller joins with — all from the environment.
    app_id: str | None = env_secret(min_len=1)
    app_key: str | None = env_secret(min_len=8)
    app_license: str | None = env_secret(min_len=8)
    pilot_username: str = text("pilot")
    pilot_password: str | None = env_secret(min_len=8)
    ntp_host: str = text("pool.ntp.org")  # told to a Dock (it needs time for its tasks; offline: your own)
    pilot_broker: str = text("", check=lambda k, v: _broker(k, v) if v else v)  # as the RC reaches it

    @property
    def enabled(self) -> bool:
        return bool(self.broker)

    def check(self, path: str, ctx: Ctx) -> None:
        if self.enabled and self.password is None:
            raise ConfigError(f"{path}password_env", "the relay's broker account needs a password "
                                                     "(from the environment)")
        named = [s for _, s in self.aircraft]
        if len(set(named)) != len(named):
            raise ConfigError(f"{path}aircraft", "two aircraft on one stream")
