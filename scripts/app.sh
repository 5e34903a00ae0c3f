#!/usr/bin/env bash
# Set up (first run only) and start the kvplan web app. Works offline on the bundled models.
# Usage: scripts/app.sh [streamlit options, e.g. --server.port 8502]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -r requirements.txt -e .
exec .venv/bin/streamlit run app.py --browser.gatherUsageStats false "$@"
