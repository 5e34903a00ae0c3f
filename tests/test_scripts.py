"""The README's two set-up commands start again with no package index reachable once .venv is set up.

Runs where scripts/test.sh set up this checkout's .venv (as CI does); pip is pointed at nothing
(no config files, no index, no find-links), so any install attempt would fail the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import free_port, health

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / ".venv" / ".kvplan-test").exists():
    pytest.skip("this checkout's .venv was not set up by scripts/test.sh", allow_module_level=True)

OFFLINE = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/nonexistent",
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "KVPLAN_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
OFFLINE.pop("PYTHONPATH", None)


def test_test_sh_reruns_offline():
    res = subprocess.run(["bash", "scripts/test.sh", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/test_gpus.py"], cwd=ROOT, env=OFFLINE, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "test_gpus.py" in res.stdout  # the collection listing (its form depends on -q levels)


def test_app_sh_restarts_offline():
    port = free_port()
    proc = subprocess.Popen(["bash", "scripts/app.sh", "--server.headless", "true", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=OFFLINE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        body = health(port, proc)
        assert body == "ok", f"the app did not start offline (exit code {proc.poll()})"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
