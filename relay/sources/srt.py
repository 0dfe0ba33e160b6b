"""SRT ingest: one listener port for every stream, the stream chosen by the caller's SRT
stream id, MPEG-TS inside (H.264 or H.265, KLV) read as the MPEG-TS/UDP input reads it.

Built on libsrt, the C library Debian ships (the one GStreamer's srtsink and FFmpeg use),
through ctypes: no maintained Python binding exists (PyPI's ``srt``/``pysrt`` are subtitle
parsers), PyAV's FFmpeg has no SRT, and FFmpeg's or ``srt-live-transmit``'s listener takes
one caller per port with no look at the stream id. libsrt's listen callback sees the stream
id before the handshake completes: an unknown stream, another mode than publish, a wrong
token or a stream that already has an SRT publisher is rejected there with the SRT access
control code, and a stream's passphrase (AES) is set on that caller's socket only.

Stream ids: ``#!::r=drone1,m=publish,s=TOKEN`` (the SRT access-control convention MediaMTX
and SRS use; ``s`` carries the publish token) or ``publish:drone1:TOKEN``. Each accepted
caller's datagrams (7 TS packets each) go into the stream's :class:`~relay.sources.feed.Feed`,
which an :class:`~relay.sources.avpull.AvPullSource` reads like any MPEG-TS input (claim,
liveness, decodability, passthrough, KLV), publisher by publisher: a new caller's stream is
read afresh from its first byte (another encoder's stream ids are shown at once).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..auth import authenticate
from ..config import Config
from ..logs import Throttled
from ..osthread import name_os_thread
from .feed import Feed

__all__ = ["SrtCaller", "SrtIngest", "load_libsrt", "parse_stream_id"]

log = logging.getLogger("relay.srt")
# libsrt's socket options (srt.h)
SRTO_RCVSYN, SRTO_RCVTIMEO, SRTO_LATENCY, SRTO_PASSPHRASE = 2, 14, 23, 26
SRTO_CONNTIMEO, SRTO_STREAMID = 36, 46
REJ_BAD_REQUEST, REJ_UNAUTHORIZED, REJ_NOTFOUND, REJ_BAD_MODE, REJ_CONFLICT = 1400, 1401, 1404, 1405, 1409
MAX_PAYLOAD = 1500
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                             ctypes.c_char_p)


class _SockaddrIn(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort), ("addr", ctypes.c_uint32),
                ("zero", ctypes.c_char * 8)]


_LOG_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_char_p)
# "@<socket>:newConnection: connection rejected due to: ... ERROR:BADSECRET": the caller's
# passphrase is not the stream's (libsrt decides it after the listen callback accepted).
_BAD_SECRET = re.compile(rb"@(\d+):newConnection: connection rejected due to: .*BADSECRET")
_listeners: list[Callable[[int], None]] = []  # told the socket of each caller with a wrong passphrase
_lib: Any = None


def _libsrt_said(_opaque: Any, level: int, _file: Any, _line: int, _area: Any, message: bytes | None) -> None:
    """libsrt's own log lines (its threads): a wrong passphrase is told to the listeners; the
    rest goes to our log at DEBUG (libsrt wrote to stderr, unstructured, before)."""
    try:
        text = message or b""
        m = _BAD_SECRET.search(text)
        if m is not None:
            for listener in tuple(_listeners):
                listener(int(m.group(1)))
        elif level <= 3:
            log.debug("libsrt", extra={"said": text.decode("utf-8", "replace").strip()[-300:]})
    except Exception:  # never raise into libsrt
        pass


_log_handler = _LOG_HANDLER(_libsrt_said)  # kept referenced while libsrt holds it


def load_libsrt() -> Any:
    """libsrt, loaded once, its log routed to ours (warnings and up)."""
    global _lib
    if _lib is not None:
        return _lib
    names = ["libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", ctypes.util.find_library("srt")]
    for name in names:
        if name:
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            lib.srt_getlasterror_str.restype = ctypes.c_char_p
            lib.srt_startup()
            lib.srt_setloghandler(None, _log_handler)
            lib.srt_setlogflags(0)
            lib.srt_setloglevel(4)  # LOG_WARNING: a refused passphrase is a warning in libsrt
            _lib = lib
            return lib
    raise RuntimeError("libsrt is missing: install libsrt1.5-gnutls (scripts/setup.sh does)")


def parse_stream_id(sid: str) -> tuple[str, str, str | None]:
    """(stream, mode, token) from ``#!::r=...,m=...,s=...`` or ``publish:stream[:token]``."""
    if sid.startswith("#!::"):
        kv = dict(item.split("=", 1) for item in sid[4:].split(",") if "=" in item)
        return kv.get("r", ""), kv.get("m", "request"), kv.get("s")
    parts = sid.split(":", 2)
    if len(parts) >= 2 and parts[0] in ("publish", "read"):
        return parts[1], parts[0], parts[2] if len(parts) > 2 else None
    return sid, "publish", None


def _sockaddr(host: str, port: int) -> _SockaddrIn:
    return _SockaddrIn(socket.AF_INET, socket.htons(port), int.from_bytes(socket.inet_aton(host), "little"))


def _set(lib: Any, sock: int, opt: int, value: int | bytes) -> None:
    if isinstance(value, int):
        v = ctypes.c_int(value)
        ok = lib.srt_setsockflag(sock, opt, ctypes.byref(v), ctypes.sizeof(v))
    else:
        ok = lib.srt_setsockflag(sock, opt, value, len(value))
    if ok != 0:
        raise RuntimeError(f"SRT option {opt}: {lib.srt_getlasterror_str().decode()}")


def shown_id(sid: str) -> str:
    """A stream id as the log may show it: its stream and mode, and of a token only a
    fingerprint (a valid publish token in a log is a key left in a door)."""
    stream, mode, token = parse_stream_id(sid)
    fp = f",s=sha256:{hashlib.sha256(token.encode()).hexdigest()[:8]}" if token else ""
    return f"r={stream[:64]!r},m={mode[:16]!r}{fp}"


def pump(lib: Any, ns: int, feed: Feed, stop: threading.Event,
         on_data: Callable[[], None] = lambda: None) -> None:
    """An SRT connection's datagrams (7 TS packets each) into ``feed`` as a new publisher's,
    until the connection breaks, goes quiet for 10 s, or ``stop`` is set."""
    _set(lib, ns, SRTO_RCVTIMEO, 500)
    buf = ctypes.create_string_buffer(MAX_PAYLOAD)
    quiet = 0
    feed.new_publisher()
    while not stop.is_set():
        n = lib.srt_recvmsg(ns, buf, MAX_PAYLOAD)
        if n > 0:
            quiet = 0
            on_data()
            feed.push(buf.raw[:n])
            continue
        quiet += 1  # a timeout (500 ms) or the connection's end
        if lib.srt_getsockstate(ns) >= 6 or quiet > 20:  # SRTS_BROKEN and after
            return


class SrtIngest:
    def __init__(self, config: Config, targets: dict[str, Feed]) -> None:
        self.config = config
        self.targets = targets  # stream -> its feed (an AvPullSource reads it)
        self.lib = load_libsrt()
        self.listener = -1
        self.active: dict[str, int] = {}  # stream -> the accepted SRT socket pumping it
        self.last_data: dict[str, float] = {}  # stream -> when its publisher last sent (monotonic)
        self.pump_errors = 0
        self.rejected: dict[str, int] = {}  # why -> count (/metrics, tests)
        self._said = Throttled(log)  # one WARNING line per reason per 10 s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._callback = _CALLBACK(self._on_caller)  # kept referenced while libsrt holds it
        # Callers handed a passphrase, until accepted: libsrt says later if theirs was wrong.
        self._keyed: dict[int, tuple[str, str]] = {}
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ libsrt calls

    def _set(self, sock: int, opt: int, value: int | bytes) -> None:
        _set(self.lib, sock, opt, value)

    def start(self) -> None:
        sc = self.config.srt
        lib = self.lib
        s = lib.srt_create_socket()
        self._set(s, SRTO_RCVSYN, 1)
        self._set(s, SRTO_LATENCY, sc.latency_ms)
        addr = _sockaddr(sc.host, sc.port)
        if lib.srt_bind(s, ctypes.byref(addr), ctypes.sizeof(addr)) != 0 or lib.srt_listen(s, 16) != 0:
            err = lib.srt_getlasterror_str().decode()
            lib.srt_close(s)
            raise RuntimeError(f"SRT listener on {sc.host}:{sc.port}: {err}")
        lib.srt_listen_callback(s, self._callback, None)
        _listeners.append(self._bad_secret)
        self.listener = s
        self._thread = threading.Thread(target=self._accept, name="srt-accept", daemon=True)
        self._thread.start()
        log.info("SRT listening", extra={"host": sc.host, "port": sc.port, "streams": ",".join(self.targets)})

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(ValueError):
            _listeners.remove(self._bad_secret)
        if self.listener >= 0:
            self.lib.srt_close(self.listener)  # srt_accept returns
        with self._lock:
            for sock in self.active.values():
                self.lib.srt_close(sock)
            self.active.clear()
        if self._thread is not None:
            self._thread.join(3)

    # ------------------------------------------------------------------ callers

    def _reject(self, ns: int, code: int, why: str, sid: str) -> int:
        self.lib.srt_setrejectreason(ns, code)
        self.rejected[why] = self.rejected.get(why, 0) + 1
        self._said.warn(why, "SRT caller rejected", reason=why, streamid=shown_id(sid))
        return -1

    def _on_caller(self, _opaque: Any, ns: int, _hsversion: int, _peer: Any, streamid: bytes | None) -> int:
        """libsrt's thread, before the handshake completes: accept (0) or reject (-1)."""
        try:
            sid = (streamid or b"").decode("utf-8", "replace")
            stream, mode, token = parse_stream_id(sid)
            if mode != "publish":
                return self._reject(ns, REJ_BAD_MODE, "mode is not publish", sid)
            if stream not in self.targets:
                return self._reject(ns, REJ_NOTFOUND, "no SRT stream of that name", sid)
            if self.config.auth.enabled and not authenticate(self.config, "publish", stream, token).allowed:
                return self._reject(ns, REJ_UNAUTHORIZED, "publish token missing or wrong", sid)
            with self._lock:
                if stream in self.active and not self._silent(stream):
                    return self._reject(ns, REJ_CONFLICT, "the stream has an SRT publisher", sid)
                old = self.active.pop(stream, None)
            if old is not None:  # a publisher gone quiet (a dead link): the new one takes over
                log.info("SRT publisher replaced: the old one sent nothing", extra={"stream": stream})
                self.lib.srt_close(old)
            sc = self.config.stream(stream)
            if sc is not None and sc.srt_passphrase:
                self._set(ns, SRTO_PASSPHRASE, sc.srt_passphrase.encode())
                with self._lock:
                    if len(self._keyed) >= 256:  # callers that vanished mid-handshake
                        self._keyed.pop(next(iter(self._keyed)))
                    self._keyed[ns] = (stream, sid)
            return 0
        except Exception:  # never raise into libsrt
            log.exception("SRT listen callback failed")
            return -1

    def _bad_secret(self, ns: int) -> None:
        """libsrt refused a caller we had handed the stream's passphrase: its own was wrong."""
        with self._lock:
            caller = self._keyed.pop(ns, None)
        if caller is not None:
            stream, sid = caller
            why = "wrong passphrase"
            self.rejected[why] = self.rejected.get(why, 0) + 1
            self._said.warn(why, "SRT caller rejected", reason=why, stream=stream, streamid=shown_id(sid))

    def _silent(self, stream: str) -> bool:
        """The stream's publisher sent nothing for signal_lost_after_s (RTMP's rule too)."""
        quiet = time.monotonic() - self.last_data.get(stream, 0.0)
        return quiet > self.config.media.signal_lost_after_s

    def _accept(self) -> None:
        buf = ctypes.create_string_buffer(512)
        size = ctypes.c_int(512)
        while not self._stop.is_set():
            ns = self.lib.srt_accept(self.listener, None, None)
            if ns < 0:
                if not self._stop.is_set():
                    err = self.lib.srt_getlasterror_str().decode()
                    log.warning("SRT accept failed", extra={"error": err})
                return
            with self._lock:
                self._keyed.pop(ns, None)
            size.value = 512
            self.lib.srt_getsockflag(ns, SRTO_STREAMID, buf, ctypes.byref(size))
            stream = parse_stream_id(buf.raw[:size.value].decode("utf-8", "replace"))[0]
            with self._lock:
                if stream in self.active or stream not in self.targets:
                    self.lib.srt_close(ns)
                    continue
                self.active[stream] = ns
            threading.Thread(target=self._pump, args=(ns, stream), name=f"srt-{stream}", daemon=True).start()

    def _pump(self, ns: int, stream: str) -> None:
        name_os_thread()
        log.info("SRT publisher connected", extra={"stream": stream})
        self.last_data[stream] = time.monotonic()

        def data() -> None:
            self.last_data[stream] = time.monotonic()
        try:
            pump(self.lib, ns, self.targets[stream], self._stop, data)
        except Exception as exc:  # a caller gone mid-handshake ("Connection was broken"): its end
            self.pump_errors += 1
            self._said.warn(f"pump {type(exc).__name__}", "SRT publisher's connection failed",
                            stream=stream, error=str(exc)[:200])
        finally:  # whatever happened, the stream is free for the next publisher
            with self._lock:
                if self.active.get(stream) == ns:
                    del self.active[stream]
            self.lib.srt_close(ns)
        log.info("SRT publisher left", extra={"stream": stream})


class SrtCaller:
    """``source = "srt://encoder:9000?streamid=...&passphrase=...&latency=120"``: the relay
    calls an encoder (or another server) in SRT listener mode, and calls again after a drop
    (1 s, growing to 5 s; a refusal said once per reason)."""

    def __init__(self, url: str, feed: Feed) -> None:
        parts = urlsplit(url)
        q = parse_qs(parts.query)
        self.host = socket.gethostbyname(parts.hostname or "127.0.0.1")
        self.port = parts.port or 0
        self.stream_id = (q.get("streamid") or [""])[0]
        self.passphrase = (q.get("passphrase") or [""])[0]
        self.latency_ms = int((q.get("latency") or ["120"])[0])
        self.target = feed  # the stream's feed (an AvPullSource reads it)
        self.shown = f"srt://{parts.hostname}:{parts.port}"
        self.lib = load_libsrt()
        self.sock = -1
        self.connects = 0
        self._stop = threading.Event()
        self._said = Throttled(log, 60.0)
        self._thread = threading.Thread(target=self._run, name=f"srt-call-{self.shown}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.sock >= 0:
            self.lib.srt_close(self.sock)
        self._thread.join(3)

    def _run(self) -> None:
        name_os_thread()
        lib, backoff = self.lib, 1.0
        while not self._stop.is_set():
            s = self.sock = lib.srt_create_socket()
            try:
                _set(lib, s, SRTO_RCVSYN, 1)
                _set(lib, s, SRTO_LATENCY, self.latency_ms)
                _set(lib, s, SRTO_CONNTIMEO, 3000)
                if self.stream_id:
                    _set(lib, s, SRTO_STREAMID, self.stream_id.encode())
                if self.passphrase:
                    _set(lib, s, SRTO_PASSPHRASE, self.passphrase.encode())
                addr = _sockaddr(self.host, self.port)
                if lib.srt_connect(s, ctypes.byref(addr), ctypes.sizeof(addr)) < 0:
                    why = lib.srt_getlasterror_str().decode()
                    self._said.warn(why, "SRT source refused or unreachable", source=self.shown, error=why)
                else:
                    self.connects += 1
                    backoff = 1.0
                    log.info("SRT source connected", extra={"source": self.shown})
                    pump(lib, s, self.target, self._stop)
                    log.info("SRT source dropped", extra={"source": self.shown})
            except RuntimeError as exc:
                self._said.warn(str(exc), "SRT source: option refused", source=self.shown, error=str(exc))
            finally:
                lib.srt_close(s)
                self.sock = -1
            self._stop.wait(backoff)
            backoff = min(5.0, backoff * 2)
