#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
#   - a virtualenv in .venv with the app, validate (torch CPU, transformers) and test requirements
#   - Debian's chromium for the real-browser test (installed with apt-get when missing)
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q)
# torch first and pinned: an unpinned torch would pull the newest CUDA build (several GB); the
# validate mode's CPU tests need only the CPU build.
"${PIP[@]}" "torch==${KVPLAN_TORCH_VERSION:-2.13.0}"
"${PIP[@]}" -r requirements-dev.txt -e .
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
