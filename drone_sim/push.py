"""Push the stamped scene with FFmpeg (PyAV) muxers: RTMP (FLV), MPEG-TS over UDP, RTP H.264,
RTSP (ANNOUNCE/RECORD to a listening server),
or raw I420 frames on stdout (to pipe into another encoder, e.g. Debian's ffmpeg CLI)."""

from __future__ import annotations

import contextlib
import fractions
import logging
import sys
import threading
import time
from typing import Any

import av

from .scene import Scene

__all__ = ["FORMATS", "push_av", "write_raw"]

log = logging.getLogger("drone_sim")
FORMATS = {"rtmp": "flv", "udp": "mpegts", "rtp": "rtp", "rtsp": "rtsp"}


def _url(protocol: str, url: str) -> str:
    if protocol == "udp" and "pkt_size" not in url:
        return url + ("&" if "?" in url else "?") + "pkt_size=1316"
    if protocol == "rtp" and "pkt_size" not in url:
        return url + ("&" if "?" in url else "?") + "pkt_size=1200"
    return url


def push_child(protocol: str, url: str, size: tuple[int, int], fps: float, bitrate_kbps: int,
               flight: Any = None, parent: int = 0) -> None:
    """:func:`push_av` in a child process of its own (``python -m drone_sim`` runs it so):
    ended by SIGTERM at once, whatever FFmpeg is blocked in."""
    import ctypes
    import os
    import signal

    # Die with the parent, however it ends (SIGKILL included): an orphaned pusher would
    # push to the relay forever. PR_SET_PDEATHSIG = 1 (Linux).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:
        return  # it died while we started
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    push_av(protocol, url, size, fps, bitrate_kbps, threading.Event(), flight)


def push_av(protocol: str, url: str, size: tuple[int, int], fps: float, bitrate_kbps: int,
            stop: threading.Event, flight: Any = None) -> None:
    """Encode once (libx264, zerolatency, SPS/PPS on every keyframe) and mux to ``url``.

    With a ``flight`` and MPEG-TS (udp), every third frame also carries MISB ST 0601 KLV
    (a data stream) of the drone's state at that frame's capture time."""
    width, height = size
    scene = Scene(width, height)
    options = {"rtsp_transport": "tcp"} if protocol == "rtsp" else {}
    out: Any = av.open(_url(protocol, url), "w", format=FORMATS[protocol], options=options)
    try:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate_kbps * 1000
        gop = max(1, round(fps * 2))
        stream.options = {
            "preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:bframes=0",
        }
        stream.codec_context.time_base = fractions.Fraction(1, round(fps))
        klv = None
        if flight is not None and FORMATS[protocol] == "mpegts":
            from .klv import klv_packet

            klv = out.add_data_stream(codec_name="klv")
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            due = start + n / fps
            delay = due - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            capture_ms = int(time.time() * 1000)
            img = scene.render(n, t=n / fps, capture_ms=capture_ms)
            frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
            frame.pts = n
            for packet in stream.encode(frame):
                out.mux(packet)
            if klv is not None and n % 3 == 0:
                meta = av.Packet(klv_packet(flight.at(capture_ms / 1000), capture_ms / 1000,
                                            flight.home_alt))
                meta.stream = klv
                meta.time_base = fractions.Fraction(1, round(fps))
                meta.pts = meta.dts = n
                out.mux(meta)
            n += 1
    finally:
        out.close()


def write_raw(size: tuple[int, int], fps: float, stop: threading.Event, duration: float | None) -> None:
    """Real-time I420 frames on stdout (``ffmpeg -f rawvideo -pix_fmt yuv420p -s WxH -r FPS -i -``)."""
    width, height = size
    scene = Scene(width, height)
    sink = sys.stdout.buffer
    start = time.monotonic()
    n = 0
    while not stop.is_set() and (duration is None or n / fps < duration):
        delay = start + n / fps - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        try:
            sink.write(scene.render(n, t=n / fps).tobytes())
            sink.flush()
        except BrokenPipeError:
            return
        n += 1
