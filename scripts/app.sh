#!/usr/bin/env bash
# Set up (first run, or when requirements change) and start the kvplan web app. Works offline on the
# bundled models; after the first run it needs no package index.
# Usage: scripts/app.sh [streamlit options, e.g. --server.port 8502]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
DEPS=(requirements.txt pyproject.toml setup.py)
# A venv that scripts/test.sh set up holds everything the app needs too.
if ! venv_ready app "${DEPS[@]}" &&
   ! venv_ready test requirements.txt requirements-validate.txt requirements-dev.txt pyproject.toml setup.py; then
  .venv/bin/python -m pip install -q -r requirements.txt -e .
  stamp_venv app "${DEPS[@]}"
fi
exec .venv/bin/kvplan app "$@"
