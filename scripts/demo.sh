#!/usr/bin/env bash
# Set up, then run the relay and a simulated drone; prints the pages to open. Ctrl-C stops both.
#
# Ports: HTTP 8080, RTMP 1935 (DJI apps), SRT 8890, MAVLink 14550/udp (the drone's telemetry).
# PORT_BASE=9000 moves them all (HTTP 9000, RTMP 9001, SRT 9002, MAVLink 9003); PORT,
# RTMP_PORT, SRT_PORT and MAVLINK_PORT set one each. A port in use is named before anything starts.
# The record goes to recordings/ (RECORD_DIR=<dir> for another: two demos at once need two).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -n "${PORT_BASE:-}" ]; then
  PORT="${PORT:-$PORT_BASE}"; RTMP_PORT="${RTMP_PORT:-$((PORT_BASE + 1))}"
  SRT_PORT="${SRT_PORT:-$((PORT_BASE + 2))}"; MAVLINK_PORT="${MAVLINK_PORT:-$((PORT_BASE + 3))}"
fi
PORT="${PORT:-8080}"; RTMP_PORT="${RTMP_PORT:-1935}"; SRT_PORT="${SRT_PORT:-8890}"
MAVLINK_PORT="${MAVLINK_PORT:-14550}"; STREAM="${STREAM:-drone1}"; RECORD_DIR="${RECORD_DIR:-recordings}"
RELAY=""; DRONE=""
WORK="$(mktemp -d -t relay-demo-XXXXXX)"
stop() {
  [ -n "$DRONE" ] && kill "$DRONE" 2>/dev/null || true
  [ -n "$RELAY" ] && kill "$RELAY" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT
trap 'echo; echo "stopped"; exit 0' INT TERM

# Every port the demo needs, free, or which one is taken and how to choose another.
.venv/bin/python - "$PORT" "$RTMP_PORT" "$SRT_PORT" "$MAVLINK_PORT" <<'PY'
import socket, sys
names = [("HTTP", "PORT", socket.SOCK_STREAM), ("RTMP", "RTMP_PORT", socket.SOCK_STREAM),
         ("SRT", "SRT_PORT", socket.SOCK_DGRAM), ("MAVLink", "MAVLINK_PORT", socket.SOCK_DGRAM)]
taken = []
for (what, var, kind), port in zip(names, map(int, sys.argv[1:])):
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:  # (as the relay binds: a port in TIME_WAIT is free to it)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0" if what in ("HTTP", "RTMP", "SRT") else "127.0.0.1", port))
        except OSError as e:
            taken.append(f"  {what} port {port}/{'tcp' if kind == socket.SOCK_STREAM else 'udp'} is in use "
                         f"({e.strerror}): set {var}=<another port>, or PORT_BASE=<port> to move them all")
if taken:
    print("demo: cannot start, a port it needs is taken:", *taken, sep="\n", file=sys.stderr)
    sys.exit(2)
PY

# The default config, with the demo's ports (the relay listens for MAVLink where the drone sends it).
.venv/bin/python - "$WORK/relay.toml" "$PORT" "$RTMP_PORT" "$SRT_PORT" "$MAVLINK_PORT" "$RECORD_DIR" <<'PY'
import json, re, sys
from pathlib import Path
out, http, rtmp, srt, mav, record = sys.argv[1:]
text, section, lines = Path("configs/default.toml").read_text(), "", []
for line in text.splitlines():
    if line.startswith("["):
        section = line.strip()
    ports = {"[server]": http, "[rtmp]": rtmp, "[srt]": srt}
    if section in ports and re.match(r"port\s*=", line):
        line = re.sub(r"port\s*=\s*\d+", f"port = {ports[section]}", line)
    if section == "[record]" and re.match(r"dir\s*=", line):
        line = re.sub(r'dir\s*=\s*"[^"]*"', f"dir = {json.dumps(record)}", line)
    line = line.replace("mavlink+udp://127.0.0.1:14550", f"mavlink+udp://127.0.0.1:{mav}")
    lines.append(line)
Path(out).write_text("\n".join(lines) + "\n")
PY

.venv/bin/python -m relay --config "$WORK/relay.toml" &
RELAY=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$RELAY" 2>/dev/null || { echo "demo: the relay failed to start (its log is above)" >&2; exit 1; }
  sleep 0.1
done
# The drone's picture over WHIP, its autopilot's MAVLink telemetry to the relay's listener.
.venv/bin/python -m drone_sim --whip "http://127.0.0.1:$PORT/whip/$STREAM" \
  --telemetry "mavlink+udp://127.0.0.1:$MAVLINK_PORT" &
DRONE=$!
cat <<MSG

  Drone feed:           http://127.0.0.1:$PORT/view/$STREAM
  All feeds:            http://127.0.0.1:$PORT/
  Control-centre wall:  http://127.0.0.1:$PORT/wall
  Incident record:      http://127.0.0.1:$PORT/incident
  Share links:          http://127.0.0.1:$PORT/share
  API:                  http://127.0.0.1:$PORT/api/streams
  Push a DJI app here:  rtmp://<this machine>:$RTMP_PORT/live/<stream>

  (Ctrl-C stops the relay and the simulated drone)

MSG
wait "$RELAY"
