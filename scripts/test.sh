#!/usr/bin/env bash
# Set up everything (venv, pip, Debian's chromium/ffmpeg) and run all checks and tests:
# the static checks, then the fast lane (unit tests and the quick end-to-end ones: a broken
# build fails in seconds), then the slow lane (whole-system runs, three at a time: most of
# their time is waiting on real clocks, not the CPU), then the quiet lane (tests that count
# frames or time a start, alone: on two cores the other lanes' load would skew what they count). Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
echo "== ruff";         .venv/bin/ruff check .
echo "== mypy (strict, relay/)"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports --no-cache
# Tests speak real WebRTC. Where we may, run them in a network namespace of their own with
# only loopback, so no test packet can reach anything but 127.0.0.1.
lanes='
set -e
echo "== pytest: fast lane (unit tests, quick end-to-end)"
.venv/bin/python -m pytest -q -p no:cacheprovider -rs --durations=15 -m "not slow" -n 2 "$@"
echo "== pytest: slow lane (whole-system runs)"
.venv/bin/python -m pytest -q -p no:cacheprovider -rs --durations=15 -m "slow and not quiet" -n 3 --dist loadgroup "$@"
echo "== pytest: quiet lane (frame counts and timings, one at a time)"
.venv/bin/python -m pytest -q -p no:cacheprovider -rs --durations=5 -m quiet "$@"
'
if [[ $(id -u) == 0 ]] && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c "ip link set lo up && $lanes" _ "$@"
else
  exec bash -c "$lanes" _ "$@"
fi
