"""The operating system's name for a thread: ``top -H``, ``ps -L`` and /proc show which of the
relay's threads spends the CPU ("pipe-drone1", "rtmp-drone2") instead of "python" for all.
Python 3.11 names only its own thread objects; the kernel's name (15 bytes) is set here."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

__all__ = ["name_os_thread", "named_initializer"]

_PR_SET_NAME = 15
try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:  # not Linux/glibc: the names stay Python's only
    _libc = None


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread its Python name (or ``name``) in the kernel, cut to 15 bytes."""
    if _libc is None:
        return
    raw = (name or threading.current_thread().name).encode("ascii", "replace")[:15]
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0)


def named_initializer() -> None:
    """For ``ThreadPoolExecutor(initializer=...)``: each worker named as Python names it."""
    name_os_thread()
