#!/usr/bin/env bash
# Set up, then run the relay and a simulated drone; prints the viewer's URL. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PORT="${PORT:-8080}"
STREAM="${STREAM:-drone1}"
.venv/bin/python -m relay --config configs/default.toml --port "$PORT" &
RELAY=$!
trap 'kill $RELAY $DRONE 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 $RELAY 2>/dev/null || { echo "relay failed to start" >&2; exit 1; }
  sleep 0.1
done
# The drone's picture over WHIP, its autopilot's MAVLink telemetry to the port in configs/default.toml.
.venv/bin/python -m drone_sim --whip "http://127.0.0.1:$PORT/whip/$STREAM" \
  --telemetry "mavlink+udp://127.0.0.1:${MAVLINK_PORT:-14550}" &
DRONE=$!
cat <<MSG

  Drone feed:           http://127.0.0.1:$PORT/view/$STREAM
  All feeds:            http://127.0.0.1:$PORT/
  Control-centre wall:  http://127.0.0.1:$PORT/wall
  API:                  http://127.0.0.1:$PORT/api/streams

  (Ctrl-C stops the relay and the simulated drone)

MSG
wait $RELAY
