"""How a setting is declared once: its type, default and bounds in one ``field()``.

Every configuration dataclass declares its keys with the factories below; :func:`parse_table`
walks the dataclass and reads each key with the parser its field carries. Unknown keys are
refused generically, each error names the key (``renditions[1].height: must be even``), and
the rules that span fields are each class's ``check()`` in :mod:`.schema`. (MediaMTX's
``internal/conf`` works the same way: each value type parses itself; ``Validate()`` keeps
only what spans fields.)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "STREAM_NAME", "ConfigError", "Ctx", "Parse", "allowed_keys", "as_bool", "as_float", "as_int", "as_str",
    "check_host", "choice", "env_secret", "flag", "host", "in_table", "integer", "is_ip", "named_tables",
    "number", "pairs", "parse_table", "path_or_none", "required", "secret", "section", "strings", "tables",
    "text",
]

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(ValueError):
    """A configuration problem; the message starts with the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class Ctx:
    """What a parser may need besides its value: the environment (secrets given as ``*_env``)
    and values decided earlier in the document (a stream's mode defaults to media's)."""

    def __init__(self, env: Mapping[str, str], **given: Any) -> None:
        self.env = env
        self.given = given


# A field's parser: (its full key, the table holding it, the context) -> its value.
Parse = Callable[[str, Mapping[str, Any], Ctx], Any]
_ABSENT = object()


# --------------------------------------------------------------------------- scalar checks

def as_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def as_int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(key, f"must be between {lo} and {hi}, got {value}")
    return value


def as_float(key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, got {value!r}")
    if not lo <= float(value) <= hi:
        raise ConfigError(key, f"must be between {lo} and {hi}, got {value}")
    return float(value)


def as_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {value!r}")
    return value


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- field factories

def _spec(default: Any, parse: Parse) -> Any:
    return field(default=default, metadata={"parse": parse, "keys": ()})


DefaultFrom = str | Callable[[Ctx], Any] | None


def _plain(default: Any, convert: Callable[[str, Any], Any], default_from: DefaultFrom = None) -> Any:
    """A key read by ``convert(key, value)``; absent: ``default``, or the value of the
    earlier field ``default_from`` names (``"media.default_mode"``, ``"host"``), or what
    ``default_from(ctx)`` makes of the values before it."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> Any:
        name = key.rsplit(".", 1)[-1]
        if name in table:
            return convert(key, table[name])
        if default_from is None:
            return default
        if callable(default_from):
            return default_from(ctx)
        value: Any = ctx.given
        for part in default_from.split("."):
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        return value
    return _spec(default, parse)


def flag(default: bool | None) -> Any:
    return _plain(default, as_bool)


def integer(default: int, lo: int, hi: int, check: Callable[[str, int], int] | None = None,
            default_from: DefaultFrom = None) -> Any:
    def convert(key: str, value: Any) -> int:
        n = as_int(key, value, lo, hi)
        return check(key, n) if check is not None else n
    return _plain(default, convert, default_from)


def number(default: float, lo: float, hi: float) -> Any:
    return _plain(default, lambda k, v: as_float(k, v, lo, hi))


def text(default: str | None = "", check: Callable[[str, str], str] | None = None,
         default_from: DefaultFrom = None) -> Any:
    """A string; ``check(key, value)`` may normalise it or raise ConfigError."""
    def convert(key: str, value: Any) -> str:
        s = as_str(key, value)
        return check(key, s) if check is not None else s
    return _plain(default, convert, default_from)


def choice(default: str, options: tuple[str, ...], sep: str = ", ", lead: str = "one of ",
           default_from: DefaultFrom = None) -> Any:
    """One of ``options`` (case-insensitive)."""
    def convert(key: str, value: Any) -> str:
        s = as_str(key, value).lower()
        if s not in options:
            raise ConfigError(key, f"must be {lead}{sep.join(options)}, got {s!r}")
        return s
    return _plain(default, convert, default_from)


def host(default: str, default_from: str | None = None) -> Any:
    return _plain(default, check_host, default_from)


def check_host(key: str, value: Any) -> str:
    s = as_str(key, value)
    if s in ("localhost", ""):
        return s or "0.0.0.0"
    if not is_ip(s):
        raise ConfigError(key, f"must be an IP address or 'localhost', got {s!r}")
    return s


def path_or_none() -> Any:
    """A file that must exist (a certificate, a key)."""
    def convert(key: str, value: Any) -> str:
        p = as_str(key, value)
        if not Path(p).is_file():
            raise ConfigError(key, f"no such file: {p!r}")
        return p
    return _plain(None, convert)


def secret(min_len: int = 8) -> Any:
    """A secret given inline (``name``) or through an environment variable (``name_env``)."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> str | None:
        name = key.rsplit(".", 1)[-1]
        inline, via_env = table.get(name), table.get(f"{name}_env")
        if inline is not None and via_env is not None:
            raise ConfigError(key, f"give either {name} or {name}_env, not both")
        if inline is not None:
            token = as_str(key, inline)
            if len(token) < min_len:
                raise ConfigError(key, f"must be at least {min_len} characters")
            return token
        if via_env is not None:
            var = as_str(f"{key}_env", via_env)
            found = ctx.env.get(var)
            if not found:
                raise ConfigError(f"{key}_env", f"environment variable {var} is not set")
            return found
        return None
    return field(default=None, metadata={"parse": parse, "keys": ("{}", "{}_env")})


def env_secret(min_len: int = 8) -> Any:
    """A secret that only the environment may give (``name_env``): written inline it is refused,
    so a credential never sits in a file that is copied, committed or shown."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> str | None:
        name = key.rsplit(".", 1)[-1]
        if name in table:
            raise ConfigError(key, f"credentials come only from the environment: give {name}_env = "
                                   '"VARIABLE"')
        via_env = table.get(f"{name}_env")
        if via_env is None:
            return None
        var = as_str(f"{key}_env", via_env)
        found = ctx.env.get(var)
        if not found:
            raise ConfigError(f"{key}_env", f"environment variable {var} is not set")
        if len(found) < min_len:
            raise ConfigError(f"{key}_env", f"{var} must be at least {min_len} characters")
        return found
    return field(default=None, metadata={"parse": parse, "keys": ("{}", "{}_env")})


def strings(default: tuple[str, ...] = (), item: Callable[[str, str], None] | None = None,
            what: str = "must be an array of strings", one_or_many: bool = False) -> Any:
    """An array of strings; ``item(key, value)`` checks each (raising ConfigError)."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> tuple[str, ...]:
        name = key.rsplit(".", 1)[-1]
        raw = table.get(name, _ABSENT)
        if raw is _ABSENT:
            return default
        if one_or_many and isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise ConfigError(key, what)
        for i, v in enumerate(raw):
            s = as_str(f"{key}[{i}]", v)
            if item is not None:
                item(f"{key}[{i}]", s)
        return tuple(raw)
    return field(default=default, metadata={"parse": parse, "keys": ()})


def pairs(check: Callable[[str, str, Any], tuple[str, Any]], what: str) -> Any:
    """A table of ``key = value`` read as (key, value) pairs; ``check(key, k, v)`` returns the
    pair it keeps or raises ConfigError."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> tuple[tuple[str, Any], ...]:
        raw = table.get(key.rsplit(".", 1)[-1], _ABSENT)
        if raw is _ABSENT:
            return ()
        if not isinstance(raw, dict):
            raise ConfigError(key, what)
        return tuple(check(key, k, v) for k, v in raw.items())
    return field(default=(), metadata={"parse": parse, "keys": ()})


def tables(cls: type, what: str, default: tuple[Any, ...] = (), required: bool = False) -> Any:
    """An array of tables (``[[renditions]]``), each parsed as ``cls``."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> tuple[Any, ...]:
        name = key.rsplit(".", 1)[-1]
        raw = table.get(name, _ABSENT)
        if raw is _ABSENT:
            return default
        if not isinstance(raw, list) or (required and not raw):
            raise ConfigError(key, what)
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise ConfigError(f"{key}[{i}]", "must be a table")
            out.append(parse_table(cls, item, f"{key}[{i}].", ctx, index=i))
        return tuple(out)
    return field(default=default, metadata={"parse": parse, "keys": ()})


def required(convert: Callable[[str, Any], Any]) -> Any:
    """A key without a default (a rendition's name)."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> Any:
        name = key.rsplit(".", 1)[-1]
        if name not in table:
            raise ConfigError(key, "is required")
        return convert(key, table[name])
    return field(metadata={"parse": parse, "keys": ()})


def section(cls: type) -> Any:
    """A sub-table (``[media]``), parsed as ``cls``; absent = every default."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> Any:
        value = table.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a table")
        return parse_table(cls, value, f"{key}.", ctx)
    return field(default_factory=cls, metadata={"parse": parse, "keys": ()})


def named_tables(cls: type, name_rule: Callable[[str, str], None]) -> Any:
    """A table of tables keyed by name (``[streams.drone1]``); the name goes to ``name``."""
    def parse(key: str, table: Mapping[str, Any], ctx: Ctx) -> tuple[Any, ...]:
        raw = table.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(raw, dict):
            raise ConfigError(key, "must be a table")
        out = []
        for name, item in raw.items():
            name_rule(f"{key}.{name}", name)
            if not isinstance(item, dict):
                raise ConfigError(f"{key}.{name}", "must be a table")
            out.append(parse_table(cls, item, f"{key}.{name}.", ctx, name=name))
        return tuple(out)
    return field(default=(), metadata={"parse": parse, "keys": ()})


# --------------------------------------------------------------------------- the walk

def allowed_keys(cls: type) -> set[str]:
    """The TOML keys a dataclass accepts (a secret also as ``<name>_env``)."""
    out: set[str] = set()
    for f in fields(cls):
        if "parse" not in f.metadata:
            continue
        if "table" in f.metadata:
            out.add(f.metadata["table"])
            continue
        keys = f.metadata.get("keys") or ("{}",)
        out.update(k.format(f.name) for k in keys)
    return out


def check_keys(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for k in data:
        if k not in allowed:
            raise ConfigError(f"{path}{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def parse_table(cls: type, data: Mapping[str, Any], path: str, ctx: Ctx, **given: Any) -> Any:
    """``cls`` from a TOML table: every declared field read by its own parser, in declaration
    order (a later field's parser sees the earlier values in ``ctx.given``), unknown keys
    refused; ``given`` fills fields that do not come from the table (a stream's name). A
    field declared with ``in_table(...)`` is read from that sub-table (``[server] port``).
    A class may define ``check(self, path, ctx)`` for the rules that span its own fields."""
    assert is_dataclass(cls)
    check_keys(data, allowed_keys(cls), path)
    sub = Ctx(ctx.env, **{**ctx.given, **given})
    grouped: dict[str, set[str]] = {}
    for f in fields(cls):
        if "table" in f.metadata:
            grouped.setdefault(f.metadata["table"], set()).update(
                k.format(f.name) for k in (f.metadata.get("keys") or ("{}",)))
    for name, keys in grouped.items():
        inner = data.get(name, {})
        if not isinstance(inner, dict):
            raise ConfigError(f"{path}{name}", "must be a table")
        check_keys(inner, keys, f"{path}{name}.")
    values: dict[str, Any] = {}
    for f in fields(cls):
        parse: Parse | None = f.metadata.get("parse")
        if parse is None:
            if f.name in given:
                values[f.name] = given[f.name]
            continue
        if "table" in f.metadata:
            values[f.name] = parse(f"{path}{f.metadata['table']}.{f.name}",
                                   data.get(f.metadata["table"], {}), sub)
        else:
            values[f.name] = parse(f"{path}{f.name}", data, sub)
        sub.given[f.name] = values[f.name]
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(path, sub)
    return obj


def in_table(table: str, spec: Any) -> Any:
    """A field that TOML keeps in a sub-table of its own (``[server] host``)."""
    spec.metadata = MappingProxyType({**spec.metadata, "table": table})
    return spec
