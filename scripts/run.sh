#!/usr/bin/env bash
# Set up and run sfconnect on http://localhost:5000. With no SF_CLIENT_ID (environment or .env),
# it starts the local org on 127.0.0.1:5001 and uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
exec .venv/bin/python app.py "$@"
