"""The `kvplan` CLI contract: flags and JSON keys that outside scripts rely on, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kvplan.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_size_json_keys_and_types(capsys):
    code, out, err = run(capsys, "size", "meta-llama/Llama-3.1-8B", "--context", "128k", "--json")
    assert code == 0 and not err
    d = json.loads(out)
    assert {"model", "engine", "context_len", "batch", "kv_dtype", "kv_bytes", "k_bytes", "v_bytes",
            "state_bytes", "breakdown"} <= set(d)
    assert d["engine"] == "vllm"  # the documented default
    assert d["kv_bytes"] == 16 * 2**30 and d["context_len"] == 131072
    assert d["k_bytes"] + d["v_bytes"] == d["kv_bytes"]
    assert all(isinstance(d[k], int) for k in ("kv_bytes", "k_bytes", "v_bytes", "state_bytes"))


def test_size_mla_has_null_k_v(capsys):
    code, out, _ = run(capsys, "size", "deepseek-ai/DeepSeek-V3", "--context", "8k", "--json")
    d = json.loads(out)
    assert code == 0 and d["k_bytes"] is None and d["v_bytes"] is None and d["kv_bytes"] > 0


def test_size_llamacpp_flags(capsys):
    code, out, _ = run(capsys, "size", "openai/gpt-oss-20b", "--context", "131072", "--engine", "llama.cpp",
                       "--parallel", "4", "--ubatch", "512", "--set", "kv_unified=true", "--json")
    d = json.loads(out)
    assert code == 0 and d["kv_bytes"] == (3072 + 24) * 2**20  # the gpt-oss-20b llama-server log
    code, out, _ = run(capsys, "size", "openai/gpt-oss-20b", "--context", "32k", "--engine", "llama.cpp",
                       "--swa-full", "--json")
    rows = {r["kind"]: r for r in json.loads(out)["breakdown"]}
    assert rows["sliding"]["tokens_per_seq"] == rows["full"]["tokens_per_seq"] == 32768


def test_plan_kv_memory_json(capsys):
    code, out, _ = run(capsys, "plan", "meta-llama/Llama-3.1-8B", "--engine", "vllm", "--kv-memory", "51.38GiB",
                       "--max-model-len", "131072", "--json")
    d = json.loads(out)
    assert code == 0
    assert (d["num_blocks"], d["kv_tokens"], round(d["max_concurrency"], 2)) == (26306, 420896, 3.21)


def test_models_and_gpus_json(capsys):
    code, out, _ = run(capsys, "models", "--json")
    models = json.loads(out)["models"]
    assert code == 0 and len(models) >= 60
    assert all({"id", "attention"} <= set(m) for m in models)
    code, out, _ = run(capsys, "gpus", "--json")
    assert code == 0 and any(g["name"] == "H100-SXM" for g in json.loads(out)["gpus"])


def test_config_path_as_model(capsys, tmp_path):
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 256}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    code, out, _ = run(capsys, "size", str(tmp_path), "--context", "1k", "--engine", "naive", "--json")
    assert code == 0 and json.loads(out)["kv_bytes"] == 2 * 2 * 256 * 2 * 1024  # fp32 config → bf16 KV


BAD = [
    (["size", "no-such-model", "--context", "8k"], "unknown model"),
    (["size", "meta-llama/Llama-3.1-8b", "--context", "8k"], "Did you mean: meta-llama/Llama-3.1-8B"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "-1"], "context"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "lots"], "context"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--kv-dtype", "fp7"], "fp7"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--kv-dtype", "q8_0"], "vllm does not support"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--engine", "vllmm"], "did you mean vllm"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--tp", "3"], "tp"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--tp", "0"], "tp"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--pp", "33"], "pp"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--batch", "0"], "batch"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "99999999999999"], "absurdly large"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--engine", "vllm", "--parallel", "2"], "parallel"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--set", "nonsense"], "KEY=VALUE"),
    (["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--set", "bogus=1"], "bogus"),
    (["plan", "meta-llama/Llama-3.1-8B", "--kv-memory=-3GB", "--max-model-len", "8k"], "kv_memory"),
    (["size"], "arguments"),
    (["frobnicate"], "arguments"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(b[0])[:60] for b in BAD])
def test_errors_are_one_line_nonzero(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kvplan: error:")
    assert needle in err
    assert "Traceback" not in err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "kvplan", "size", "google/gemma-2b", "--context", "8k", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "google/gemma-2b"


def test_version_and_bare_command_prints_help(capsys):
    import kvplan

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"kvplan {kvplan.__version__}"
    code, out, err = run(capsys)
    assert code == 0 and out.startswith("usage: kvplan") and "recommend" not in err and err == ""


def test_gpus_text_shows_each_source(capsys):
    from kvplan.gpus import list_gpus

    code, out, _ = run(capsys, "gpus")
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(list_gpus())
    assert all(f"source: {g.source}" in line for g, line in zip(list_gpus(), lines))


def test_kv_dtype_help_lists_every_dtype(capsys):
    from kvplan.dtypes import KV_DTYPE_NAMES

    with pytest.raises(SystemExit):
        main(["size", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in KV_DTYPE_NAMES) and "iq4_nl" in text


@pytest.mark.parametrize("path", ["missing/model.gguf", "./nowhere/config.json", "/no/such/dir"])
def test_missing_file_says_so_without_unrelated_suggestions(capsys, path):
    code, _, err = run(capsys, "size", path, "--context", "8k")
    assert code == 2 and err.count("\n") == 1
    assert "no such file" in err and "Did you mean" not in err


def test_revision_on_a_bundled_id_points_at_the_bundled_copy(capsys):
    # The Hub is a closed port here (conftest): fetching the revision fails, and the message says the
    # id is bundled instead of suggesting that very id.
    code, _, err = run(capsys, "plan", "meta-llama/Llama-3.1-8B-Instruct", "--revision", "main",
                       "--kv-memory", "20GiB", "--max-model-len", "8k")
    assert code == 2 and err.count("\n") == 1
    assert "drop --revision" in err and "Did you mean" not in err


def test_hub_submodule_is_reachable_after_import_kvplan():
    res = subprocess.run([sys.executable, "-c", "import kvplan; print(kvplan.hub.load_hub_model.__name__)"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "load_hub_model", res.stderr
