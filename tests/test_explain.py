"""`kvplan explain` on real public startup logs (tests/golden/*.json: the logged lines and their URLs).

Each row names the golden log, what the excerpt leaves out (MODEL when the log names a model kvplan
does not bundle but whose geometry it does; settings such as TP that the excerpt's other lines held;
the version the source states), and the quantities that must come back within the log's printing
precision. Rows cover vLLM V0 and V1, SGLang, llama.cpp (and ik_llama.cpp), TensorRT-LLM; dense,
sliding-window, MLA and hybrid models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import kvplan
from kvplan.errors import InvalidInputError, LogParseError
from kvplan.explain import MAX_LINE_CHARS, MAX_LOG_CHARS, explain, parse_log

GOLDEN = Path(__file__).parent / "golden"
ROWS = {r["id"]: r for f in ("engine_logs.json", "startup_logs.json", "explain_logs.json") for r in json.loads((GOLDEN / f).read_text())}
ROOT = Path(__file__).resolve().parents[1]


def _text(row_id: str) -> str:
    row = ROWS[row_id]
    assert row["source"].startswith("https://"), row["source"]
    return "\n".join(row["log"])


# (log id, MODEL or None, settings the excerpt lacks, engine version, engine, attention kind,
#  quantities that must be within precision as (name, rank-or-cache or None))
CASES = [
    # vLLM V1 v0.19.0, dense GQA, full DEBUG excerpt: every budget term and the KV side
    ("vllm-llama31-8b-instruct-h100-tp1-16k-v0190", None, {}, None, "vllm", "dense",
     [("weights_bytes", None), ("activation_bytes", None), ("non_torch_bytes", None), ("cuda_graph_bytes", None),
      ("num_blocks", None), ("kv_tokens", None), ("max_concurrency", None)]),
    # vLLM V1 v0.19.0, sliding window (gemma-2: 23 sliding + 23 full layers, two KV-cache groups)
    ("vllm-gemma2-27b-it-h100-tp1-8k-v0190", "google/gemma-2-27b-it", {}, "0.19.0", "vllm", "sliding",
     [("kv_tokens", None), ("max_concurrency", None)]),
    # vLLM V1 v0.19.0, gpt-oss-20b TP=2 (alternating sliding/full)
    ("vllm-gpt-oss-20b-h100-tp2-8k-v0190", "openai/gpt-oss-20b", {"tensor_parallel_size": 2}, "0.19.0", "vllm",
     "sliding", [("kv_tokens", None), ("max_concurrency", None)]),
    # vLLM V1 (2025), Qwen3-14B with LMCache
    ("vllm-qwen3-14b-32k-lmcache", "Qwen/Qwen3-14B", {}, None, "vllm", "dense",
     [("kv_tokens", None), ("max_concurrency", None)]),
    # vLLM V1, MLA, TP=2 × PP=2 (DeepSeek-V2-Lite, vllm PR #20665): four ranks, each stage's budget over its
    # own layers (14 / 13); the config is a public transcription (tests/golden/configs/SOURCES.md)
    ("vllm-deepseek-v2-lite-tp2-pp2-l4", "configs/deepseek-ai--DeepSeek-V2-Lite", {}, None, "vllm", "mla",
     [("kv_tokens", None), ("max_concurrency", None)]),
    # vLLM V0 (0.6.4): "Memory profiling results", "# GPU blocks", and the max-seq-len refusal's token count
    ("vllm-llama31-8b-rtx3090-29k", "meta-llama/Llama-3.1-8B", {}, None, "vllm", "dense",
     [("weights_bytes", None), ("num_blocks", None), ("kv_tokens", None), ("max_concurrency", None)]),
    # vLLM V0 (0.6.5+): "the rest of the memory reserved for KV Cache is"
    ("vllm-llama3-8b-a100-40g-8k", "meta-llama/Meta-Llama-3-8B", {}, None, "vllm", "dense",
     [("num_blocks", None), ("max_concurrency", None)]),
    # SGLang, dense, TP=1: K/V pool sizes from #tokens and #tokens from mem_fraction_static
    ("sglang-llama31-8b-instruct-80gb-tp1-docs-2025-01", None, {}, None, "sglang", "dense",
     [("k_bytes", "TP0"), ("v_bytes", "TP0"), ("kv_tokens", "TP0")]),
    # SGLang, TP=4 on L4s: QwQ-32B has Qwen2.5-32B's geometry
    ("sglang-qwq-32b-4xl4-tp4", "Qwen/Qwen2.5-32B", {}, None, "sglang", "dense",
     [("k_bytes", "TP0"), ("v_bytes", "TP0"), ("kv_tokens", "TP0")]),
    # SGLang, MLA latent pool replicated on 8 ranks (Kimi-K2.5 has Kimi-K2's text geometry)
    ("sglang-kimi-k25-tp8-mi355x", "moonshotai/Kimi-K2-Instruct", {"tp_size": 8}, None, "sglang", "mla",
     [("kv_bytes", None)]),
    # SGLang, hybrid GDN + full attention with DP attention (attention TP size 1)
    ("sglang-qwen3-next-fp8-dp4-attention", "Qwen/Qwen3-Next-80B-A3B-Thinking",
     {"tp_size": 4, "dp_size": 4, "enable_dp_attention": True}, None, "sglang", "hybrid",
     [("k_bytes", "DP0 TP0 EP0"), ("v_bytes", "DP0 TP0 EP0")]),
    # llama.cpp, old "KV self size" lines, q8_0 K/V, two GPUs
    ("llamacpp-qwen25-coder-32b-q8kv-32k", "Qwen/Qwen2.5-32B", {}, None, "llama.cpp", "dense",
     [("kv_bytes", None), ("k_bytes", None), ("v_bytes", None)]),
    # llama.cpp, "llama_kv_cache_unified: size = ... (cells, layers, seqs)" lines, build 5935, RPC
    ("llamacpp-llama31-405b-rpc-4k", "meta-llama/Llama-3.1-405B", {}, None, "llama.cpp", "dense",
     [("kv_bytes", None), ("k_bytes", None), ("v_bytes", None), ("cells", None), ("layers", None)]),
    # llama.cpp in WasmEdge (build 5640)
    ("llamacpp-llama32-1b-wasmedge-4k", "meta-llama/Llama-3.2-1B", {}, None, "llama.cpp", "dense",
     [("kv_bytes", None), ("k_bytes", None), ("v_bytes", None), ("cells", None)]),
    # llama.cpp iSWA (gpt-oss-20b, one slot): a 131,072-cell base cache and a 768-cell SWA cache
    ("llamacpp-gpt-oss-20b-np1-131k-cuda", "openai/gpt-oss-20b", {}, None, "llama.cpp", "sliding",
     [("kv_bytes", "non-SWA"), ("cells", "non-SWA"), ("kv_bytes", "SWA"), ("cells", "SWA"), ("k_bytes", "SWA")]),
    # llama.cpp MLA latent cache (PR #11446): K^R + c^KV, after a vestigial per-head line
    ("llamacpp-pr11446-deepseek-mla-32k", "deepseek-ai/DeepSeek-R1", {}, None, "llama.cpp", "mla",
     [("kv_bytes", "MLA"), ("latent_bytes", "MLA"), ("rope_bytes", "MLA")]),
    # ik_llama.cpp MLA latent cache in q8_0 (its PR #259); n_ctx from the slot line
    ("iklamacpp-deepseek-mla-q8-32k", "deepseek-ai/DeepSeek-R1", {}, None, "llama.cpp", "mla",
     [("kv_bytes", "MLA")]),
    # TensorRT-LLM C++ runtime: FP8 KV, 32-token blocks (the excerpt holds only the allocation line)
    ("trtllm-llama31-8b-fp8kv-rtx5090", "meta-llama/Llama-3.1-8B", {"kv_cache_dtype": "fp8", "block_size": 32},
     None, "trtllm", "dense", [("kv_bytes", None)]),
]


@pytest.mark.parametrize("row_id,model,settings,version,engine,kind,must", CASES, ids=[c[0] for c in CASES])
def test_explain_reproduces_logged_quantities(row_id, model, settings, version, engine, kind, must):
    kw = {"config": GOLDEN / model} if model and model.startswith("configs/") else {}
    ex = explain(_text(row_id), None if kw else model, settings=settings, engine_version=version, offline=True, **kw)
    assert ex.engine == engine
    assert ex.fits is True
    for name, where in must:
        q = next((q for q in ex.quantities if q.name == name and (where is None or where in (q.rank, q.cache))), None)
        assert q is not None, f"{name} ({where}) not read from the log"
        assert q.predicted is not None, f"{name}: no kvplan value"
        assert q.within_precision, f"{name}: logged {q.printed}, kvplan {q.predicted}"


def test_engines_and_attention_kinds_covered():
    assert {c[4] for c in CASES} == {"vllm", "sglang", "llama.cpp", "trtllm"}
    assert {c[5] for c in CASES} == {"dense", "sliding", "mla", "hybrid"}
    variants = {parse_log(_text(c[0])).variant for c in CASES if c[4] == "vllm"}
    assert variants == {"V0", "V1"}
    assert parse_log(_text("iklamacpp-deepseek-mla-q8-32k")).variant == "ik_llama.cpp"


def test_vllm_json_contract_and_answers():
    # the excerpt does not hold the version banner; the source (llm-d v0.19.0 campaign) states it
    d = explain(_text("vllm-llama31-8b-instruct-h100-tp1-16k-v0190"), engine_version="vllm@0.19.0",
                offline=True).to_dict()
    assert d["engine"] == "vllm" and d["engine_version"] == "0.19.0"
    assert d["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert d["settings"]["max_model_len"] == 16384 and d["settings"]["gpu_memory_utilization"] == 0.95
    assert d["fits"] is True and d["failure"] is None
    names = {q["name"] for q in d["quantities"]}
    assert {"weights_bytes", "activation_bytes", "non_torch_bytes", "cuda_graph_bytes", "kv_budget_bytes",
            "num_blocks", "kv_tokens", "max_concurrency"} <= names
    for q in d["quantities"]:
        assert {"name", "logged", "predicted", "unit", "within_precision"} <= set(q)
    blocks = next(q for q in d["quantities"] if q["name"] == "num_blocks")
    assert blocks["logged"] == 29751 and blocks["unit"] == "blocks"
    tokens = next(q for q in d["quantities"] if q["name"] == "kv_tokens")
    assert tokens["logged"] == 476016 and tokens["exact_given_blocks"] is True
    assert "16,384" in d["context_limit"]
    fp8 = next(m for m in d["more_users"] if m["flag"] == "--kv-cache-dtype fp8")
    assert fp8["gain"] == 2.0
    parts = {m["part"] for m in d["memory"]}
    assert {"weights", "KV cache", "total GPU memory"} <= parts


def test_vllm_refusal_names_the_cause_and_reads_the_numbers():
    """vllm#23278-style refusal: the KV budget is negative; no model name in the excerpt -> read only."""
    ex = explain(_text("vllm-gpt-oss-120b-h100-tp1-default-fail-23278"), offline=True)
    assert ex.fits is False and ex.failure_kind == "kv_too_small"
    assert ex.quantity("kv_budget_bytes").logged < 0
    ex = explain(_text("vllm-qwen3-coder-480b-fp8-dp8-h20-gmu09"), offline=True)
    assert ex.fits is False and "max_model_len" in ex.failure
    assert ex.quantity("max_model_len_fits").logged == 205728


def test_tgi_log_read():
    """TGI on MI300X, 2 shards (huggingface/ms-build-mi300 README): the router's token total and the
    launcher's defaults; kvplan has no TGI profile, so it reads the total and computes its memory."""
    ex = explain(_text("tgi-llama3-8b-instruct-mi300-2shard"), offline=True)
    assert ex.engine == "tgi" and ex.fits is True
    assert ex.settings["num_shard"] == 2 and ex.settings["max_total_tokens"] == 4096
    q = ex.quantity("kv_tokens")
    assert q.logged == 801568 and q.predicted is None and q.within_precision is None
    # 801,568 tokens × 32 layers × 4 KV heads per shard × 128 × 2 (K, V) × 2 B, in 16-token blocks
    assert ex.memory[0]["predicted_bytes"] == 801568 * 32 * 4 * 128 * 2 * 2


def test_vllm_mla_refusal_reproduces_the_needed_kv():
    """DeepSeek-V2-Lite-Chat at 32,768 tokens with 0.93 GiB available (vLLM V1 0.8.3 dev, vllm#15871):
    the engine refuses because one request needs 0.95 GiB = 27 layers × 576 × 2 B × 32,768."""
    ex = explain(_text("vllm-deepseek-v2-lite-chat-32k-need"), config=GOLDEN / "configs/deepseek-ai--DeepSeek-V2-Lite",
                 offline=True)
    assert ex.fits is False and ex.failure_kind == "kv_too_small" and ex.attention == "mla"
    need = ex.quantity("kv_needed_bytes")
    assert need.within_precision and need.predicted == 27 * 576 * 2 * 32768
    assert "32,768" in ex.context_limit


def test_llamacpp_settings_read():
    p = parse_log(_text("llamacpp-gpt-oss-20b-np1-131k-cuda"))
    assert p.engine == "llama.cpp" and p.engine_version == "b6699"
    assert p.settings["n_ctx"] == 131072 and p.settings["n_seq_max"] == 1 and p.settings["n_ubatch"] == 512
    assert p.settings["type_k"] == "f16" and p.settings["kv_unified"] is False


def test_multi_rank_vllm_reads_each_rank():
    """DeepSeek-V2-Lite TP=2 × PP=2 (vllm PR #20665): four ranks print their own budgets."""
    p = parse_log(_text("vllm-deepseek-v2-lite-tp2-pp2-l4"))
    ranks = {q.rank: q.value for q in p.all("kv_budget_bytes")}
    assert ranks == {"VllmWorker rank=0": 12.13, "VllmWorker rank=1": 12.13, "VllmWorker rank=2": 11.33,
                     "VllmWorker rank=3": 11.33}
    assert p.settings["tensor_parallel_size"] == 2 and p.settings["pipeline_parallel_size"] == 2


def test_unknown_truncated_and_unresolvable_logs_are_typed_errors():
    with pytest.raises(LogParseError, match="no engine recognized"):
        explain("hello\nworld\n")
    truncated = "\n".join(_text("vllm-llama31-8b-instruct-h100-tp1-16k-v0190").splitlines()[:4])
    with pytest.raises(LogParseError, match="truncated") as err:
        explain(truncated)
    assert "kv_budget_bytes" in err.value.missing
    with pytest.raises(LogParseError, match="--config"):
        explain(_text("sglang-qwq-32b-4xl4-tp4"), offline=True)
    with pytest.raises(LogParseError, match="not bundled.*--config"):
        explain(_text("llamacpp-llama31-8b-dolphin-graviton4-4k"), offline=True)


def test_hostile_input_is_bounded():
    with pytest.raises(InvalidInputError, match="characters"):
        explain("x" * (MAX_LOG_CHARS + 1))
    with pytest.raises(InvalidInputError, match="lines"):
        explain("\n" * 200_001)
    with pytest.raises(InvalidInputError):
        explain(b"GPU KV cache size: 1 tokens")  # bytes, not text
    # a 10 MB line of near-matches and deep brackets parses fast and is cut at MAX_LINE_CHARS
    long_line = "non-default args: {" + "'model': '" * 200_000 + "\n" + "GPU KV cache size: 1" + "9" * 50_000
    with pytest.raises(LogParseError):
        parse_log(long_line + "\nAvailable KV cache memory: " + "(" * 100_000)
    p = parse_log("Available KV cache memory: 1.00 GiB\n" + "Maximum concurrency for 1 tokens per request: 1.00x\n"
                  * 12_000 + "GPU KV cache size: 16 tokens")
    assert len(p.logged) <= 10_000 + 3
    assert all(len(q.line) <= MAX_LINE_CHARS for q in p.logged)


def test_lazy_export_keeps_import_light():
    code = ("import sys, kvplan; assert 'kvplan.explain' not in sys.modules; "
            "f = kvplan.explain; assert callable(f); assert 'kvplan.explain' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert "explain" in kvplan.__all__
    # importing a submodule rebinds kvplan.explain to the package; it stays callable
    code = ("import kvplan, kvplan.explain.accuracy, json; rows = json.load(open('tests/golden/startup_logs.json')); "
            "ex = kvplan.explain('\\n'.join(rows[0]['log']), offline=True); assert ex.engine == 'vllm'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_cli_explain_json_and_stdin(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(_text("vllm-llama31-8b-instruct-h100-tp1-16k-v0190"))
    run = [sys.executable, "-m", "kvplan", "explain"]
    out = subprocess.run(run + [str(log), "--json", "--offline"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["engine"] == "vllm" and d["fits"] is True
    out = subprocess.run(run + ["-", "--offline"], input=log.read_text(), capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "kv_tokens" in out.stdout
    out = subprocess.run(run + [str(tmp_path / "missing.log")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no such file" in out.stderr
    sg = tmp_path / "sglang.log"
    sg.write_text(_text("sglang-qwq-32b-4xl4-tp4"))
    out = subprocess.run(run + [str(sg), "--offline"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "--config" in out.stderr
    out = subprocess.run(run + [str(sg), "Qwen/Qwen2.5-32B", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and json.loads(out.stdout)["engine"] == "sglang"
