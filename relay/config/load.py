"""Reading the configuration: a TOML file (or a decoded document) into a :class:`Config`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .fields import ConfigError, Ctx, parse_table
from .schema import Config

__all__ = ["load", "parse", "redact_url"]


def parse(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a decoded TOML document into a :class:`Config` (errors name the key)."""
    config: Config = parse_table(Config, data, "", Ctx(os.environ if env is None else env))
    return config


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
