"""`kvplan validate MODEL --engine ...` with a stand-in engine executable (tests/engine_standin.py) that
replays a real public startup log from tests/golden, prints the engine's ready line and waits, like a
server. The real engines are not installed in CI; on a GPU box the same code starts them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kvplan.errors import InvalidInputError, LogParseError
from kvplan.explain.live import engine_command, validate_engine

ROOT = Path(__file__).resolve().parents[1]
STANDIN = f"{sys.executable} {Path(__file__).parent / 'engine_standin.py'}"


@pytest.fixture
def standin(monkeypatch, tmp_path):
    def use(row: str, mode: str = "serve") -> Path:
        argv = tmp_path / "argv.json"
        monkeypatch.setenv("KVPLAN_STANDIN_ROW", row)
        monkeypatch.setenv("KVPLAN_STANDIN_ARGV", str(argv))
        monkeypatch.setenv("KVPLAN_STANDIN_MODE", mode)
        return argv
    return use


def test_vllm_dummy_weights_started_explained_and_stopped(standin):
    argv = standin("vllm-llama31-8b-instruct-h100-tp1-16k-v0190")
    t0 = time.monotonic()
    data, ex = validate_engine("meta-llama/Llama-3.1-8B-Instruct", "vllm", executable=STANDIN, timeout_s=60)
    assert time.monotonic() - t0 < 30  # it stopped the server instead of waiting out the timeout
    assert data["ready"] is True and data["returncode"] is None
    args = json.loads(argv.read_text())
    assert args[:4] == ["serve", "meta-llama/Llama-3.1-8B-Instruct", "--load-format", "dummy"]
    assert ex.engine == "vllm" and ex.fits is True
    assert data["compared"] >= 7 and data["within_precision"] >= 7
    assert ex.quantity("kv_tokens").within_precision


def test_sglang_and_llamacpp_commands(standin):
    standin("sglang-llama31-8b-instruct-80gb-tp1-docs-2025-01")
    data, ex = validate_engine("meta-llama/Llama-3.1-8B-Instruct", "sglang", executable=STANDIN, timeout_s=60)
    assert data["ready"] and ex.engine == "sglang" and ex.quantity("k_bytes").within_precision
    argv = standin("llamacpp-llama31-405b-rpc-4k")
    data, ex = validate_engine("meta-llama/Llama-3.1-405B", "llama.cpp", gguf="model.gguf", executable=STANDIN,
                               timeout_s=60)
    assert json.loads(argv.read_text())[:2] == ["-m", "model.gguf"]
    assert data["ready"] and ex.quantity("kv_bytes").within_precision
    with pytest.raises(InvalidInputError, match="--gguf"):
        engine_command("llama.cpp", "x")


def test_engine_that_exits_or_is_missing(standin):
    standin("vllm-gpt-oss-120b-h100-tp1-default-fail-23278", mode="exit")
    data, ex = validate_engine("openai/gpt-oss-120b", "vllm", executable=STANDIN, timeout_s=60)
    assert data["ready"] is False and data["returncode"] == 1
    assert ex.fits is False and ex.failure_kind == "kv_too_small"
    with pytest.raises(InvalidInputError, match="not installed"):
        validate_engine("x", "vllm", executable="/nonexistent/vllm-binary", timeout_s=5)


def test_timeout_stops_a_silent_engine(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text("import time\nprint('INFO starting', flush=True)\ntime.sleep(600)\n")
    t0 = time.monotonic()
    with pytest.raises(LogParseError, match="starting"):
        validate_engine("meta-llama/Llama-3.1-8B", "vllm", executable=f"{sys.executable} {script}", timeout_s=2)
    assert time.monotonic() - t0 < 30


def test_cli_validate_engine_json(standin):
    standin("vllm-llama31-8b-instruct-h100-tp1-16k-v0190")
    out = subprocess.run([sys.executable, "-m", "kvplan", "validate", "meta-llama/Llama-3.1-8B-Instruct",
                          "--engine", "vllm", "--engine-exe", STANDIN, "--timeout", "60", "--json"],
                         capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    assert out.returncode in (0, 1), out.stderr
    d = json.loads(out.stdout)
    assert d["ready"] is True and d["explain"]["engine"] == "vllm"
    out = subprocess.run([sys.executable, "-m", "kvplan", "validate", "x"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--context" in out.stderr
