#!/usr/bin/env bash
# Regenerate constraints.txt from a fresh venv with the newest versions pyproject.toml allows.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check -e ".[dev]"
{
  echo "# Versions CI tested; scripts/setup.sh installs with -c constraints.txt. Regenerate: scripts/lock.sh"
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^-e ' | sort -f
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages pinned"
