"""Process plumbing for benchmarks: relay, simulator, load viewers, Janus; CPU sampling."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_until(fn: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out: {what}")


def relay_config(extra: str = "") -> str:
    """A quiet relay on loopback with one 720p rendition; ``{port}`` is filled in by start_relay.
    ``extra`` may not repeat a table given here ([server], [webrtc], [limits])."""
    return ("[server]\nhost = \"127.0.0.1\"\nport = {port}\nlog_level = \"warning\"\n"
            "[webrtc]\nice_addresses = [\"127.0.0.1\"]\n"
            "[[renditions]]\nname = \"high\"\nheight = 720\nbitrate_kbps = 2500\n"
            # The load viewers are many clients behind one address: lift the per-client limits.
            "[limits]\nsessions_per_client = 1000\noffers_per_client_per_min = 10000\n"
            "viewers_per_stream = 1000\nviewers_total = 1000\n" + extra)


def start_relay(config_text: str, on_start: Any = None) -> tuple[subprocess.Popen[bytes], str]:
    """The relay on a free port; ``on_start(pid)`` runs at once (e.g. to put it in a cgroup)."""
    port = free_port()
    cfg = Path(tempfile.mkdtemp(prefix="bench-relay-")) / "relay.toml"
    cfg.write_text(config_text.replace("{port}", str(port)))
    proc = subprocess.Popen([PY, "-m", "relay", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if on_start is not None:
        on_start(proc.pid)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: get_json(base + "/healthz")["ok"], 20, "relay up")
    return proc, base


def start_drone(base: str, stream: str = "drone1", size: str = "1280x720", fps: int = 30
                ) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([PY, "-m", "drone_sim", "--whip", f"{base}/whip/{stream}",
                             "--size", size, "--fps", str(fps)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: any(s["name"] == stream and s["state"] == "live" and s["frames_in"] > 30
                           for s in get_json(base + "/api/streams")["streams"]), 30, "drone live")
    return proc


@dataclass
class LoadGroup:
    """Load-viewer processes; each prints a JSON line a second."""

    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    last: dict[int, dict[str, Any]] = field(default_factory=dict)

    def spawn(self, args: list[str], count: int, per_proc: int = 13) -> None:
        left = count
        while left > 0:
            k = min(per_proc, left)
            left -= k
            p = subprocess.Popen([PY, "-m", "bench.loadviewer", *args, "--count", str(k)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
            os.set_blocking(p.stdout.fileno(), False)  # type: ignore[union-attr]
            self.procs.append(p)

    def poll(self) -> None:
        for p in self.procs:
            assert p.stdout is not None
            while True:
                line = p.stdout.readline()
                if not line:
                    break
                with contextlib.suppress(ValueError):
                    self.last[p.pid] = json.loads(line)

    def counts(self) -> list[int]:
        self.poll()
        out: list[int] = []
        for p in self.procs:
            out += self.last.get(p.pid, {}).get("counts", [])
        return out

    def connected(self) -> int:
        self.poll()
        return sum(self.last.get(p.pid, {}).get("connected", 0) for p in self.procs)

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        stop_processes(self.procs)
        self.procs.clear()
        self.last.clear()


def stop_processes(procs: list[Any]) -> None:
    """SIGTERM to each still running, then up to 5 s each to end before SIGKILL."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 1e6


JANUS_CFG = """general: {{
  configs_folder = "{dir}"
  plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
  transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
  events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
  loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
  debug_level = 2
  admin_secret = "bench"
}}
certificates: {{}}
media: {{}}
nat: {{
  ice_enforce_list = "{iface}"
  ignore_mdns = true
}}
plugins: {{
  disable = "{plugins_off}"
}}
transports: {{
  disable = "{transports_off}"
}}
events: {{}}
loggers: {{
  disable = "libjanus_jsonlog.so"
}}
"""
PLUGINS_OFF = ",".join(f"libjanus_{n}.so" for n in (
    "voicemail", "audiobridge", "sip", "nosip", "recordplay", "textroom", "videocall",
    "videoroom", "echotest", "duktape", "lua"))
TRANSPORTS_OFF = ",".join(f"libjanus_{n}.so" for n in (
    "websockets", "pfunix", "mqtt", "rabbitmq", "nanomsg"))
JANUS_HTTP = """general: {{
  json = "indented"
  base_path = "/janus"
  http = true
  port = {port}
  ip = "127.0.0.1"
  https = false
}}
admin: {{
  admin_http = false
}}
cors: {{}}
"""
JANUS_STREAMING = """general: {{}}
bench: {{
  type = "rtp"
  id = 1
  description = "bench"
  media = (
    {{
      type = "video"
      mid = "v"
      port = {rtp_port}
      pt = 96
      codec = "h264"
      fmtp = "profile-level-id=42e01f;packetization-mode=1"
    }}
  )
}}
"""


def start_janus(iface: str = "v0") -> tuple[subprocess.Popen[bytes], str, int]:
    d = Path(tempfile.mkdtemp(prefix="bench-janus-"))
    http_port, rtp_port = free_port(), free_port(socket.SOCK_DGRAM)
    (d / "janus.jcfg").write_text(JANUS_CFG.format(dir=d, iface=iface, plugins_off=PLUGINS_OFF,
                                                      transports_off=TRANSPORTS_OFF))
    (d / "janus.transport.http.jcfg").write_text(JANUS_HTTP.format(port=http_port))
    (d / "janus.plugin.streaming.jcfg").write_text(JANUS_STREAMING.format(rtp_port=rtp_port))
    with open(d / "janus.log", "wb") as log:
        proc = subprocess.Popen(["janus", "-F", str(d), "-C", str(d / "janus.jcfg")],
                                stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}/janus"
    wait_until(lambda: get_json(base + "/info")["janus"] == "server_info", 20, "janus up")
    return proc, base, rtp_port


def start_ffmpeg_feed(fmt: str, url: str, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """Debian's ffmpeg: H.264 1280x720@30, 2.5 Mbit/s, baseline, GOP 2 s, in real time."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-t", "900", "-re", "-f", "lavfi", "-i",
         "testsrc2=size=1280x720:rate=30", "-c:v", "libx264", "-preset", "ultrafast",
         "-tune", "zerolatency", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
         "-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "1000k", "-g", "60",
         *extra, "-f", fmt, url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_ffmpeg_rtp(port: int, progress: Path | None = None) -> subprocess.Popen[bytes]:
    """The feed as RTP; with ``progress``, FFmpeg writes its frame count there (frames_sent)."""
    extra: tuple[str, ...] = ("-payload_type", "96")
    if progress is not None:
        extra += ("-progress", str(progress), "-stats_period", "0.5")
    return start_ffmpeg_feed("rtp", f"rtp://127.0.0.1:{port}?pkt_size=1200", extra)


def frames_sent(progress: Path) -> int:
    """The frames FFmpeg has sent so far, from its -progress file."""
    try:
        lines = progress.read_text().splitlines()
    except OSError:
        return 0
    return next((int(ln[6:]) for ln in reversed(lines) if ln.startswith("frame=") and ln[6:].isdigit()), 0)
