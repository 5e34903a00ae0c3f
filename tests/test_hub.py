"""kvplan.hub against a local fake Hub (tests/fake_hub.py on 127.0.0.1; HF_ENDPOINT points at it).

No network: every case runs in well under a second except the timeout ones (bounded by `timeout`).
Cases: ok, sharded safetensors, gated (401 / 403), private, missing repo / revision / config.json,
HTTP 500, slow (timeout), unreachable host, malformed JSON, oversized config, offline cache.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_hub import GOOD_TOKEN, FakeHub, FakeRepo, safetensors_bytes  # noqa: E402

import kvplan  # noqa: E402
from kvplan import hub  # noqa: E402
from kvplan.cli import main  # noqa: E402
from kvplan.errors import (GatedModelError, HubError, HubModelNotFoundError, HubUnavailableError,  # noqa: E402
                           InvalidInputError, UnknownModelError, UnsupportedConfigError)

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096, "intermediate_size": 14336,
         "vocab_size": 128256, "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}
SMALL = {**LLAMA, "num_hidden_layers": 2, "num_key_value_heads": 4}
ST_SINGLE = safetensors_bytes({"embed": ("BF16", [1000, 64]), "norm": ("F32", [64]), "q": ("F8_E4M3", [64, 64])})
ST_SHARD1 = safetensors_bytes({"a": ("BF16", [256, 32])})
ST_SHARD2 = safetensors_bytes({"b": ("BF16", [128, 32]), "scale": ("F32", [8])})
INDEX = {"metadata": {"total_size": 256 * 32 * 2 + 128 * 32 * 2 + 32},
         "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
                        "scale": "model-00002-of-00002.safetensors"}}
SLOW_S = 3.0


def _cfg(obj) -> bytes:
    return json.dumps(obj).encode()


REPOS = {
    "acme/llama-8b": FakeRepo({"config.json": _cfg(LLAMA), "model.safetensors": ST_SINGLE}, revisions=("main", "v1")),
    "acme/sharded": FakeRepo({"config.json": _cfg(SMALL), "model.safetensors.index.json": _cfg(INDEX),
                              "model-00001-of-00002.safetensors": ST_SHARD1,
                              "model-00002-of-00002.safetensors": ST_SHARD2}),
    "acme/bin-only": FakeRepo({"config.json": _cfg(SMALL), "pytorch_model.bin": b"\0" * 64}),
    "acme/gated": FakeRepo({"config.json": _cfg(LLAMA), "model.safetensors": ST_SINGLE}, mode="gated"),
    "acme/private": FakeRepo({"config.json": _cfg(LLAMA)}, mode="private"),
    "acme/broken": FakeRepo({"config.json": _cfg(LLAMA)}, mode="error"),
    "acme/slow": FakeRepo({"config.json": _cfg(LLAMA)}, mode="slow", delay=SLOW_S),
    "acme/not-json": FakeRepo({"config.json": b"{'model_type': 'llama',"}),
    "acme/json-list": FakeRepo({"config.json": b"[1, 2, 3]"}),
    "acme/bad-values": FakeRepo({"config.json": _cfg({**LLAMA, "num_hidden_layers": -4})}),
    "acme/huge": FakeRepo({"config.json": b"{" + b" " * (5 << 20) + b"}"}),
    "acme/no-config": FakeRepo({"README.md": b"# weights only"}),
    # hostile servers (issue 10, item 3)
    "acme/endless": FakeRepo({"config.json": b""}, hostile={"config.json": "endless"}),
    "acme/endless-length": FakeRepo({"config.json": b""}, hostile={"config.json": "endless-length"}),
    "acme/gzip-bomb": FakeRepo({"config.json": b""}, hostile={"config.json": "gzip-bomb"}),
    "acme/drip": FakeRepo({"config.json": b""}, hostile={"config.json": "drip"}),
    "acme/info-bomb": FakeRepo({"config.json": _cfg(SMALL)}, hostile={"api": "gzip-bomb"}),
    "acme/st-endless": FakeRepo({"config.json": _cfg(SMALL), "model.safetensors": b""},
                                hostile={"model.safetensors": "endless"}),
    "acme/st-index-bomb": FakeRepo({"config.json": _cfg(SMALL), "model.safetensors.index.json": b""},
                                   hostile={"model.safetensors.index.json": "gzip-bomb"}),
    "acme/st-huge-header": FakeRepo({"config.json": _cfg(SMALL),
                                     "model.safetensors": (1 << 60).to_bytes(8, "little") + b"{}"}),
    "acme/mamba": FakeRepo({"config.json": _cfg({"model_type": "mamba", "num_hidden_layers": 2, "hidden_size": 768,
                                                 "state_size": 16, "conv_kernel": 4, "expand": 2})}),
}


@pytest.fixture(scope="module")
def fake_hub():
    server = FakeHub({k: v for k, v in REPOS.items()}).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def hub_env(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"), raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: keep it in step with the env of each test
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    hub.clear_cache()
    fake_hub.requests.clear()
    yield
    hub.clear_cache()


def _dead_endpoint() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused at once
    return f"http://127.0.0.1:{port}"


# ---- ok -------------------------------------------------------------------------------------------

def test_ok_config_and_arch():
    arch = hub.load_hub_model("acme/llama-8b")
    assert arch.model_id == "acme/llama-8b" and arch.num_layers == 32
    assert arch.layers[0].num_kv_heads == 8 and arch.layers[0].head_dim == 128
    assert hub.fetch_config("acme/llama-8b")["model_type"] == "llama"


def test_ok_through_public_api_and_same_bytes_as_bundled():
    est = kvplan.kv_cache("acme/llama-8b", context_len="128k")
    assert est.kv_bytes == 17_179_869_184  # = bundled meta-llama/Llama-3.1-8B (same config)
    assert est.kv_bytes == kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len="128k").kv_bytes
    cap = kvplan.capacity("acme/llama-8b", kv_memory="20GiB", max_model_len="8k")
    assert cap.max_sequences > 0


def test_revision(fake_hub):
    assert hub.load_hub_model("acme/llama-8b@v1").model_id == "acme/llama-8b@v1"
    assert hub.load_hub_model("acme/llama-8b", revision="v1").num_layers == 32
    assert any(path == "/acme/llama-8b/resolve/v1/config.json" for _, path, _ in fake_hub.requests)
    with pytest.raises(HubModelNotFoundError, match="no revision 'nope'"):
        hub.load_hub_model("acme/llama-8b@nope")
    with pytest.raises(InvalidInputError):
        hub.load_hub_model("acme/llama-8b", revision="../../etc")


def test_weights_single_file_exact_bytes(fake_hub):
    info = hub.fetch_weights_info("acme/llama-8b")
    assert info.params_by_dtype == {"BF16": 64_000, "F32": 64, "F8_E4M3": 4096}
    assert info.total_params == 68_160
    assert info.bytes_by_dtype == {"BF16": 128_000, "F32": 256, "F8_E4M3": 4096}
    assert info.total_bytes == 132_352 and info.num_files == 1 and not info.sharded
    # the header was read with range requests, never the whole file
    gets = [h for m, p, h in fake_hub.requests if m == "GET" and p.endswith("model.safetensors")]
    assert gets and all(h.get("range", h.get("Range", "")).startswith("bytes=") for h in gets)


def test_weights_sharded():
    info = hub.fetch_weights_info("acme/sharded")
    assert info.sharded and info.num_files == 2
    assert info.params_by_dtype == {"BF16": 256 * 32 + 128 * 32, "F32": 8}
    assert info.total_bytes == INDEX["metadata"]["total_size"]


def test_weights_absent_is_none():
    assert hub.fetch_weights_info("acme/bin-only") is None


def test_results_are_cached_in_memory(fake_hub):
    hub.load_hub_model("acme/llama-8b")
    n = len(fake_hub.requests)
    for _ in range(5):
        kvplan.kv_cache("acme/llama-8b", context_len=1024)
    assert len(fake_hub.requests) == n


# ---- gated / private / missing -------------------------------------------------------------------

def test_gated_without_token_401():
    with pytest.raises(GatedModelError) as info:
        hub.load_hub_model("acme/gated")
    msg = str(info.value)
    assert "accept the license on the model page" in msg and "HF_TOKEN" in msg
    assert isinstance(info.value, HubError) and isinstance(info.value, OSError)


def test_gated_wrong_token_403_never_shows_the_token(monkeypatch, capsys):
    secret = "hf_wrong_SECRET_token_value_42"
    monkeypatch.setenv("HF_TOKEN", secret)
    with pytest.raises(GatedModelError) as info:
        hub.load_hub_model("acme/gated")
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert main(["size", "acme/gated", "--context", "8k"]) == 2
    out, err = capsys.readouterr()
    assert secret not in out + err and "accept the license" in err and err.count("\n") == 1


def test_gated_with_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    assert hub.load_hub_model("acme/gated").num_layers == 32
    assert hub.fetch_weights_info("acme/gated").total_params == 68_160
    hub.clear_cache()
    monkeypatch.delenv("HF_TOKEN")
    assert hub.load_hub_model("acme/gated", token=GOOD_TOKEN).num_layers == 32


def test_private_repo_is_not_found_without_token(monkeypatch):
    with pytest.raises(HubModelNotFoundError, match="private: set HF_TOKEN"):
        hub.load_hub_model("acme/private")
    assert hub.load_hub_model("acme/private", token=GOOD_TOKEN).num_layers == 32


def test_missing_repo_with_close_bundled_matches():
    with pytest.raises(HubModelNotFoundError) as info:
        kvplan.kv_cache("meta-llama/Llama-3.1-8B-Instructt", context_len=1024)
    err = info.value
    assert isinstance(err, UnknownModelError) and isinstance(err, KeyError)
    assert "no such model" in str(err) and "meta-llama/Llama-3.1-8B-Instruct" in err.suggestions


def test_missing_config_json():
    with pytest.raises(HubModelNotFoundError, match="no config.json"):
        hub.load_hub_model("acme/no-config")


# ---- server trouble ------------------------------------------------------------------------------

def test_server_error_500_is_quick():
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError, match="HTTP 500"):
        hub.load_hub_model("acme/broken")
    assert time.monotonic() - t0 < 5


def test_slow_server_times_out_within_a_few_seconds():
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError, match="timed out|no answer"):
        hub.load_hub_model("acme/slow", timeout=0.5)
    assert time.monotonic() - t0 < SLOW_S


def test_unreachable_host_is_quick(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _dead_endpoint())
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError, match="cannot connect|timed out|no answer"):
        hub.load_hub_model("acme/llama-8b", timeout=1)
    assert time.monotonic() - t0 < 4


# ---- bad files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("repo, match", [
    ("acme/not-json", "not valid JSON"),
    ("acme/json-list", "expected a JSON object"),
    ("acme/bad-values", "num_hidden_layers"),
])
def test_malformed_config_is_the_parsers_typed_error(repo, match):
    with pytest.raises(UnsupportedConfigError, match=match):
        hub.load_hub_model(repo)


def test_oversized_config_is_refused_before_download(fake_hub, tmp_path):
    with pytest.raises(UnsupportedConfigError, match="too large"):
        hub.load_hub_model("acme/huge")
    # refused from its Content-Length: one GET whose body is never read, and nothing cached
    assert len([p for m, p, _ in fake_hub.requests if p.endswith("acme/huge/resolve/main/config.json")]) == 1
    assert _cache_files(tmp_path) == []


# ---- hostile servers: bounded bytes, the transfer stops, nothing partial cached (item 3) -----------

def _cache_files(tmp_path) -> list[str]:
    root = tmp_path / "hf-cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _stops(fake_hub, path: str) -> bool:
    """The server stopped writing `path` (the client hung up and no thread keeps reading)."""
    time.sleep(0.3)
    before = fake_hub.sent.get(path, 0)
    time.sleep(0.6)
    return fake_hub.sent.get(path, 0) == before


@pytest.mark.parametrize("repo, match", [
    ("acme/endless", "too large"),  # chunked, no length: counted on the bytes received
    ("acme/endless-length", "too large"),  # a declared 10 GB: refused before reading
    ("acme/gzip-bomb", "compressed"),  # never inflated
])
def test_endless_and_compressed_configs_stop_at_the_limit(fake_hub, tmp_path, repo, match):
    t0 = time.monotonic()
    with pytest.raises(UnsupportedConfigError, match=match):
        hub.load_hub_model(repo)
    assert time.monotonic() - t0 < 10
    assert _stops(fake_hub, f"/{repo}/resolve/main/config.json")
    assert fake_hub.sent[f"/{repo}/resolve/main/config.json"] < 64 * 2**20
    assert _cache_files(tmp_path) == []  # nothing partial stays in the cache
    assert not [t for t in __import__("threading").enumerate() if t.name.startswith("kvplan-") and t.is_alive()]


def test_dripping_server_is_cut_at_the_deadline(fake_hub, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(HubUnavailableError, match="timed out|no answer"):
        hub.load_hub_model("acme/drip", timeout=0.5)
    assert time.monotonic() - t0 < 3  # 0.5 s × 2.5, not 0.5 s per byte
    assert _stops(fake_hub, "/acme/drip/resolve/main/config.json")
    assert _cache_files(tmp_path) == []


def test_model_info_is_never_requested(fake_hub):
    """The model-info endpoint (a 1 MiB gzip answer took 2 GB in huggingface_hub) is not used."""
    assert hub.load_hub_model("acme/info-bomb").num_layers == 2
    assert not [p for _, p, _ in fake_hub.requests if p.startswith("/api/models/acme/info-bomb")]


@pytest.mark.parametrize("repo, match", [
    ("acme/st-endless", "too large"),
    ("acme/st-index-bomb", "compressed"),
    ("acme/st-huge-header", "safetensors header of"),
])
def test_hostile_safetensors_answers(fake_hub, tmp_path, repo, match):
    with pytest.raises(HubUnavailableError, match=match):
        hub.fetch_weights_info(repo)
    for path in [p for p in fake_hub.sent if p.startswith(f"/{repo}/")]:
        assert _stops(fake_hub, path)
    assert [f for f in _cache_files(tmp_path) if "kvplan-weights" in f] == []
    # the plan still works: weights then come from the config's parameter count
    assert kvplan.plan(repo, gpu="H100", max_model_len=1024).fits


@pytest.mark.parametrize("repo", ["acme/gzip-bomb", "acme/endless", "acme/st-index-bomb", "acme/info-bomb"])
def test_hostile_hub_memory_in_a_limited_child(fake_hub, tmp_path, repo):
    """The whole public path (kv_cache, then plan with safetensors weights) in a child limited to
    1 GiB of address space and 60 s: a typed error or a result, under 200 MB peak RSS."""
    import hostile_files

    code = ("import json, sys, kvplan\n"
            "try:\n"
            "    kvplan.plan(sys.argv[1], gpu='H100', max_model_len=1024)\n"
            "    out = 'ok'\n"
            "except kvplan.KvplanError as err:\n"
            "    out = 'typed error: ' + str(err)\n"
            "print(json.dumps({'outcome': out}))\n")
    run = hostile_files.run_limited(code, args=(repo,), mem_bytes=1 << 30, timeout=60,
                                    env={"HF_ENDPOINT": fake_hub.url, "HF_HUB_CACHE": str(tmp_path / "hf-cache")})
    assert not run["timed_out"] and run["rc"] == 0, run["stderr"][-800:]
    outcome = json.loads(run["stdout"].strip().splitlines()[-1])["outcome"]
    assert outcome == "ok" or outcome.startswith("typed error"), outcome
    assert run["hwm_bytes"] < 200 * 2**20, run["hwm_bytes"]
    assert _cache_files(tmp_path) == [] or outcome == "ok"


@pytest.mark.parametrize("endpoint", ["htp://x", "http://", "http://127.0.0.1:99999", "not a url", "ftp://h/x",
                                      "http://[::1", "http://h:port"])
def test_malformed_hf_endpoint_is_one_typed_error(monkeypatch, capsys, endpoint):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(InvalidInputError, match="HF_ENDPOINT"):
        hub.load_hub_model("acme/llama-8b")
    assert main(["size", "acme/llama-8b", "--context", "8k"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "HF_ENDPOINT" in err


# ---- cache and offline ---------------------------------------------------------------------------

def test_offline_uses_the_disk_cache(fake_hub, monkeypatch):
    hub.load_hub_model("acme/llama-8b")
    hub.fetch_weights_info("acme/llama-8b")
    hub.clear_cache()
    fake_hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert hub.load_hub_model("acme/llama-8b").num_layers == 32
    assert hub.fetch_weights_info("acme/llama-8b").total_params == 68_160
    assert fake_hub.requests == []
    with pytest.raises(HubUnavailableError, match="offline"):
        hub.load_hub_model("acme/sharded")


def test_network_down_falls_back_to_the_cache(monkeypatch):
    hub.load_hub_model("acme/llama-8b")
    hub.clear_cache()
    monkeypatch.setenv("HF_ENDPOINT", _dead_endpoint())
    assert hub.load_hub_model("acme/llama-8b", timeout=1).num_layers == 32


def test_bundled_models_never_touch_the_network(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _dead_endpoint())
    assert kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len="128k").kv_bytes == 17_179_869_184
    assert fake_hub.requests == []


@pytest.mark.parametrize("model", ["acme", "a/b/c", "acme/na me", "../acme/x", "acme/x.json", "acme/--x",
                                   "acme/x..y", "", "acme/" + "x" * 200])
def test_non_hub_ids_never_reach_the_network(fake_hub, model):
    with pytest.raises((UnknownModelError, InvalidInputError)):
        kvplan.kv_cache(model, context_len=1024)
    assert fake_hub.requests == []


# ---- CLI -----------------------------------------------------------------------------------------

def test_cli_hub_model(capsys):
    assert main(["size", "acme/llama-8b", "--context", "128k", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kv_bytes"] == 17_179_869_184
    assert main(["plan", "acme/llama-8b", "--revision", "v1", "--kv-memory", "20GiB", "--max-model-len", "8k",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "acme/llama-8b@v1"


@pytest.mark.parametrize("model, words", [
    ("acme/gated", "accept the license"),
    ("acme/missing-model", "no such model"),
    ("acme/broken", "HTTP 500"),
    ("acme/not-json", "not valid JSON"),
    ("acme/huge", "too large"),
])
def test_cli_errors_are_one_line(capsys, model, words):
    assert main(["size", model, "--context", "8k"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and words in err and "Traceback" not in err


def test_hub_module_is_not_imported_by_the_core():
    import subprocess

    code = ("import sys, kvplan; kvplan.kv_cache('meta-llama/Llama-3.1-8B', context_len=1024); "
            "print('huggingface_hub' in sys.modules, 'gguf' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONPATH": "."})
    assert out.stdout.split() == ["False", "False"]


def test_planner_uses_safetensors_bytes_for_hub_models():
    """The plan's weights come from the checkpoint's safetensors headers (exact bytes), not only
    from the config's parameter count, when MODEL is a Hub id."""
    import kvplan

    p = kvplan.plan("acme/llama-8b", gpu_memory="80GB", max_model_len=1024, kv_memory="1GiB")
    header_len = int.from_bytes(ST_SINGLE[:8], "little")
    tensor_bytes = len(ST_SINGLE) - 8 - header_len  # the checkpoint's tensor data
    assert any("safetensors headers" in n for n in p.notes)
    assert 0 <= p.weights_bytes - tensor_bytes < 2**26  # plus only the RoPE cache vLLM allocates
