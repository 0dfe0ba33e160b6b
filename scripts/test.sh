#!/usr/bin/env bash
# Set up everything (venv, pip, Debian's chromium/ffmpeg) and run all checks and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
echo "== ruff";         .venv/bin/ruff check .
echo "== mypy (strict, relay/)"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports --no-cache
echo "== pytest"
# Tests speak real WebRTC. Where we may, run them in a network namespace of their own with
# only loopback, so no test packet can reach anything but 127.0.0.1.
if [[ $(id -u) == 0 ]] && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"' _ "$@"
else
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
