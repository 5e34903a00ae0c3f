# Sourced by scripts/app.sh and scripts/test.sh: create .venv and install into it, only when needed.
# setup_env NAME FILE... installs with pip only when the venv is new or FILEs (requirements, pyproject)
# changed since the last successful install, so later runs start with no package index reachable.
PY=${PYTHON:-python3}

venv_ready() {  # venv_ready NAME FILE...: 0 when the stamp matches the files' current hash
  local name=$1; shift
  [ -x .venv/bin/python ] && [ -f ".venv/.kvplan-$name" ] && [ "$(cat ".venv/.kvplan-$name")" = "$(cat "$@" | sha256sum)" ]
}

stamp_venv() {
  local name=$1; shift
  cat "$@" | sha256sum > ".venv/.kvplan-$name"
}

install_torch_cpu() {
  # A torch already in .venv (e.g. a CUDA build on a GPU box) is kept. Otherwise the CPU build: from
  # a local wheelhouse when pip has one (--no-index uses --find-links only), else from PyTorch's CPU
  # index (KVPLAN_TORCH_INDEX to change it). A plain `pip install torch` would pull the CUDA build.
  .venv/bin/python -c "import torch" 2>/dev/null && return 0
  local v=${KVPLAN_TORCH_VERSION:-2.13.0}
  # --no-deps: a wheelhouse may hold torch alone; its dependencies come with the requirements next
  .venv/bin/python -m pip install -q --no-index --no-deps "torch==$v" 2>/dev/null && return 0
  .venv/bin/python -m pip install -q "torch==$v" \
    --index-url "${KVPLAN_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
