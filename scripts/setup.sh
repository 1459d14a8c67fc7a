#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the given requirements file (idempotent, quick when
# nothing changed). Usage: scripts/setup.sh requirements.txt|requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."
reqs=${1:-requirements.txt}
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "sfconnect needs Python 3.11 (python3.11 or python3 on PATH, or PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "Python's venv module is missing: apt-get install python3-venv" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
# Reinstall only when the requirement files change.
stamp=.venv/.requirements-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$reqs")
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$reqs"
  touch "$stamp"
fi
