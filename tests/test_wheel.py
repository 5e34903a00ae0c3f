"""The package as a user installs it: build the wheel, install it into a fresh virtualenv outside the
checkout, and run the installed `kvplan` from another folder (bundled models, size, the web app).

Offline: the wheel is built without build isolation, installed with --no-index, and the fresh venv
borrows this environment's dependencies through a .pth line (a path added that way is not scanned
for .pth files, so the checkout's editable install cannot leak in: the test checks where kvplan and
its configs are loaded from).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from conftest import free_port, health

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p.parent.name.replace("--", "/", 1) for p in (ROOT / "model_specs").glob("*/config.json"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KVPLAN_MODEL_SPECS")}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                    "-w", str(tmp / "dist"), str(ROOT)], check=True, env=env, capture_output=True)
    wheel, = (tmp / "dist").glob("kvplan-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    bin_dir = tmp / "venv" / "bin"
    site = subprocess.run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "kvplan_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, env=env, capture_output=True)
    work = tmp / "elsewhere"  # not the checkout: nothing may be found relative to the cwd
    work.mkdir()
    return bin_dir, work, env, Path(site)


def _run(installed, *args):
    bin_dir, work, env, _ = installed
    return subprocess.run([bin_dir / "kvplan", *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)


def test_installed_package_is_the_wheel_with_its_configs(installed):
    bin_dir, work, env, site = installed
    out = subprocess.run([bin_dir / "python", "-c", "import kvplan, kvplan.registry as r; "
                          "print(kvplan.__file__); print(r.specs_dir())"],
                         cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(site)), out
    assert out[1] == str(site / "kvplan" / "model_specs"), out


def test_accuracy_page_data_travels_with_the_wheel(installed):
    # The Accuracy page reads the golden engine logs and the committed validate reports: an installed
    # package has no tests/ or docs/, so setup.py copies them in and kvplan.paths finds them there.
    bin_dir, work, env, site = installed
    code = ("from kvplan.ui import accuracy; from kvplan.paths import bundled; t = accuracy.golden_log_rows(); "
            "print(accuracy.GOLDEN); print(len(t.rows), len(t.errors)); "
            "print(len(list(bundled('validation', 'docs/validation').glob('*.json'))))")
    out = subprocess.run([bin_dir / "python", "-c", code], cwd=work, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    golden, counts, reports = out.stdout.split("\n")[:3]
    assert golden == str(site / "kvplan" / "golden" / "engine_logs.json")
    rows, errors = map(int, counts.split())
    assert rows > 100 and errors == 0
    assert int(reports) == len(list((ROOT / "docs" / "validation").glob("*.json"))) > 0


def test_version_and_bare_help(installed):
    res = _run(installed, "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"kvplan {_version()}"
    res = _run(installed)
    assert res.returncode == 0 and "usage: kvplan" in res.stdout and res.stderr == ""


def test_models_lists_every_bundled_config(installed):
    res = _run(installed, "models", "--json")
    assert res.returncode == 0, res.stderr
    ids = [m["id"] for m in json.loads(res.stdout)["models"]]
    assert len(BUNDLED) >= 80 and sorted(ids, key=str.lower) == sorted(BUNDLED, key=str.lower)


def test_size_on_a_bundled_id(installed):
    res = _run(installed, "size", "meta-llama/Llama-3.1-8B", "--context", "8192", "--json")
    assert res.returncode == 0, res.stderr
    # 32 layers × 8 KV heads × 128 × 2 (K and V) × 2 bytes = 131,072 B/token; × 8,192 tokens = 1 GiB
    assert json.loads(res.stdout)["kv_bytes"] == 131072 * 8192


def test_app_starts_from_the_installed_package(installed):
    bin_dir, work, env, _ = installed
    port = free_port()
    proc = subprocess.Popen([bin_dir / "kvplan", "app", "--server.headless", "true", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
                            cwd=work, env={**env, "KVPLAN_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        body = health(port, proc)
        assert body == "ok", f"health endpoint did not answer (exit code {proc.poll()})"
        # `kvplan app` became the server (exec): stopping that one process stops the app
        proc.terminate()
        assert proc.wait(timeout=30) is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _version() -> str:
    import kvplan

    return kvplan.__version__
