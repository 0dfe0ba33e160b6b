"""Structured, quiet logs: one line per event, extras as key=value (or JSON)."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["Throttled", "quiet_malformed_requests", "setup_logging"]

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        extra = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f" {extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v if isinstance(v, int | float | str | bool) or v is None else str(v)
                    for k, v in _extras(record).items()})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries stay quiet
    logging.getLogger("relay").setLevel(level.upper())
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pyrtmp warns about every RTMP command it has no parser for (releaseStream, FCPublish):
    # normal for OBS/ffmpeg/DJI, not news.
    logging.getLogger("pyrtmp").setLevel(logging.ERROR)


MALFORMED_LOG_EVERY_S = 10.0


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a scanner, a wrong protocol on the port) as
    an ERROR with a traceback. That is the client's fault: one WARNING line instead, at
    most one every MALFORMED_LOG_EVERY_S (the others counted and said with the next)."""

    def __init__(self) -> None:
        super().__init__()
        self._last = -1e9
        self._quiet = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not type(exc).__module__.startswith("aiohttp.http_exceptions"):
            return True
        t = time.monotonic()
        if t - self._last < MALFORMED_LOG_EVERY_S:
            self._quiet += 1
            return False
        text = str(getattr(exc, "message", "") or exc)
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        record.msg, record.args = "malformed HTTP request refused (400): %s", (first[:120],)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        if self._quiet:
            record.not_logged_since = self._quiet
        self._last, self._quiet = t, 0
        return True


def quiet_malformed_requests() -> None:
    """Install the filter on aiohttp's server logger (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server.filters):
        server.addFilter(_MalformedRequests())


class Throttled:
    """A client's fault (garbage on a port, a refused publish): one WARNING line per kind at
    most every ``every_s``; the rest are counted and said with the next line, so a scanner or
    a loop of wrong tokens cannot flood the log."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._seen: dict[str, tuple[float, int]] = {}  # kind -> (last logged, not logged since)

    def warn(self, kind: str, msg: str, **extra: object) -> None:
        t = time.monotonic()
        last, quiet = self._seen.get(kind, (-1e9, 0))
        if t - last < self.every_s:
            self._seen[kind] = (last, quiet + 1)
            return
        self._seen[kind] = (t, 0)
        self.logger.warning(msg, extra={**extra, "not_logged_since": quiet} if quiet else extra)
