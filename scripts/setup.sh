#!/usr/bin/env bash
# Idempotent setup: a venv with the relay and its Python dependencies.
#   scripts/setup.sh          runtime only (relay + simulator)
#   scripts/setup.sh --dev    plus test tools and Debian packages (chromium, ffmpeg, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PY="${PYTHON:-python3}"

if [[ $DEV == 1 ]]; then
  # Real peers for the tests: a browser, ffmpeg, GStreamer's RTSP server.
  need=()
  # coturn and nftables: the NAT/TURN field tests (namespaces, masquerade, a real TURN server).
  # gstreamer1.0-tools + -ugly (x264enc): GStreamer as a sender we did not write (rtmp2sink).
  # nodejs + npm: werift (a TypeScript WebRTC stack) as the other relay in the interop test.
  # redis-server: the cluster tests start their own Redis (the cluster's directory).
  # libsrt1.5-gnutls: the relay's SRT listener (ctypes; a deployment with [srt] needs it too).
  # mosquitto: the DJI tests start their own MQTT broker (the DJI Cloud API's transport).
  for pkg in chromium ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp \
             gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
             gstreamer1.0-tools coturn nftables iproute2 libsrt1.5-gnutls redis-server mosquitto; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
  done
  # (by command, not package: a machine may have Node.js from elsewhere, with npm inside)
  command -v npm >/dev/null || need+=(nodejs npm)
  if (( ${#need[@]} )); then
    SUDO=""
    [[ $(id -u) != 0 ]] && SUDO="sudo"
    echo "setup: installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
base=".venv/.installed-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)"
stamp="$base-$DEV"
# (a --dev install holds the runtime's packages too: the demo after the tests installs nothing)
if [[ ! -f $stamp && ! ( $DEV == 0 && -f $base-1 ) ]]; then
  echo "setup: installing Python packages (about a minute the first time)"
  target="."
  [[ $DEV == 1 ]] && target=".[dev]"
  # constraints.txt pins every package to the versions CI tested (regenerate: scripts/lock.sh).
  if ! .venv/bin/pip install --disable-pip-version-check -c constraints.txt -e "$target" >.venv/pip.log 2>&1; then
    tail -20 .venv/pip.log >&2
    echo "setup: pip install failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [[ $DEV == 1 ]]; then
  # From the npm registry, each pinned by its package-lock.json: werift (a TypeScript WebRTC
  # stack: the other relay in the interop test) and the WHIP/WHEP client libraries with
  # esbuild (bundled into a page at test time: tests/e2e/test_web_clients.py).
  for tool in werift-sfu web-clients; do
    lock="tools/$tool/package-lock.json"
    wstamp="tools/$tool/node_modules/.installed-$(sha1sum "$lock" | cut -c1-12)"
    if [[ ! -f $wstamp ]]; then
      echo "setup: installing tools/$tool (npm)"
      (cd "tools/$tool" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
      touch "$wstamp"
    fi
  done
fi
