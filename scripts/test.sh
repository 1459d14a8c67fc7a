#!/usr/bin/env bash
# Set up and run every test: lint, then pytest (local org, real Redis, headless Chromium).
# Installs Debian's chromium, redis-server and npm when missing and allowed (root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v redis-server >/dev/null || need+=(redis-server)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
scripts/setup.sh requirements-dev.txt
# axe-core for the browser tests' accessibility check (package-lock.json): `npm ci` only when
# node_modules is missing or the lock file changed (npm ci empties node_modules, stamp included).
stamp=node_modules/.sfconnect-lock-$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund
  touch "$stamp"
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
