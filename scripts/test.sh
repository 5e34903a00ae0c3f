#!/usr/bin/env bash
# Set up everything the test suite needs, then run it. First run (or when requirements change):
#   - a virtualenv in .venv with the app, validate (torch CPU, transformers) and test requirements
#   - Debian's chromium for the real-browser tests (apt-get, when missing and available)
# Later runs install nothing and need no package index.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
DEPS=(requirements.txt requirements-validate.txt requirements-dev.txt pyproject.toml setup.py)
if ! venv_ready test "${DEPS[@]}"; then
  install_torch_cpu  # first, so requirements-validate.txt's torch>=2.5 is already satisfied
  .venv/bin/python -m pip install -q -r requirements-dev.txt -e .
  stamp_venv test "${DEPS[@]}"
fi
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; } ||
      echo "scripts/test.sh: could not install chromium; the browser tests will skip (in CI they fail)" >&2
  else
    echo "scripts/test.sh: no /usr/bin/chromium and no apt-get; the browser tests will skip (in CI they fail)" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
