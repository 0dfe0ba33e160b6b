"""The checks every reader of outside input is made of: numbers, text, origins, times."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Refused", "clean_text", "finite", "json_doc", "origin", "safe_text", "wall_ms"]

# Characters XML 1.0 cannot hold (and that have no business in a label): C0 controls but
# tab/newline/CR, surrogates (lone ones cannot even be encoded), U+FFFE and U+FFFF.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:]{2,39}")
DAY_MS = 86_400_000


class Refused(ValueError):
    """Input that is not what its reader accepts; the message says what is wrong (one line)."""


def _constant(name: str) -> Any:
    raise Refused(f"{name} is not a JSON number")


def json_doc(raw: str | bytes | bytearray, what: str) -> Any:
    """Text from outside as JSON, the one way every reader parses it: ``NaN``/``Infinity``
    (not JSON; Python's parser takes them) refused, and so is nesting deeper than the
    parser's stack (``[[[[…`` in a 4 KB message raises RecursionError, which no ``except
    ValueError`` catches: it escaped a data channel's handler). Refused is a ValueError."""
    try:
        return json.loads(raw, parse_constant=_constant)
    except RecursionError:
        raise Refused(f"{what}: nested too deep") from None
    except ValueError:  # (UnicodeDecodeError, and Refused from _constant, are ValueErrors)
        raise Refused(f"{what}: not JSON") from None


def finite(value: Any, lo: float, hi: float, what: str) -> float:
    """A JSON number (not a bool), finite, within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(f"{what}: not a number")
    try:
        v = float(value)
    except OverflowError:  # an integer past any float
        raise Refused(f"{what}: out of range") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise Refused(f"{what}: out of range")
    return v


def safe_text(value: Any, limit: int, what: str) -> str:
    """A string of at most ``limit`` characters that XML and HTML text can hold as it is."""
    if not isinstance(value, str):
        raise Refused(f"{what}: not text")
    if len(value) > limit:
        raise Refused(f"{what}: longer than {limit}")
    if _UNSAFE.search(value):
        raise Refused(f"{what}: control or non-character code points")
    return value


def clean_text(value: str, limit: int) -> str:
    """Our own text made what :func:`safe_text` accepts (a configured title may hold anything
    TOML allows): unsafe characters dropped, cut to ``limit``."""
    return _UNSAFE.sub("", value)[:limit]


def wall_ms(value: Any, what: str, now_ms: float | None = None, slack_ms: float = DAY_MS) -> int:
    """A wall-clock time in ms since the epoch, within ``slack_ms`` of now (a capture time
    from another relay: a day either way covers any clock that is set at all)."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    return int(finite(value, now_ms - slack_ms, now_ms + slack_ms, what))


def origin(url: Any) -> str | None:
    """``scheme://host[:port]`` rebuilt from an http(s) URL, or None: nothing of a URL from
    outside but a plain origin gets into a request, a redirect or a page's policy."""
    if not isinstance(url, str) or len(url) > 300:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
