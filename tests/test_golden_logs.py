"""Golden tests from real engine logs pasted in public issues and repos.

The log lines, settings and sources live in tests/golden/engine_logs.json (one row per log, with the
URL). Each table row here names the log row it checks and the bundled config whose KV geometry the
logged model has (a GGUF fine-tune of Llama-3.1-8B has Llama-3.1-8B's geometry; the note says so).
Logged sizes printed with two decimals are compared at that precision; logged budgets printed with
two decimals ("51.38 GiB") are checked as intervals of ±0.005 of the printed unit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kvplan
from kvplan.units import GiB, MiB

LOGS = {r["id"]: r for r in json.loads((Path(__file__).parent / "golden" / "engine_logs.json").read_text())}


def _log(row_id: str) -> dict:
    row = LOGS[row_id]
    assert row["source"].startswith("https://github.com/"), row["source"]
    return row


# --- llama.cpp: "llama_kv_cache: size = X MiB (cells, layers, seqs), K (type): ..., V (type): ..." ------
# (log id, bundled config with the same KV geometry, kv_cache kwargs)
LLAMA_CPP = [
    # Qwen2.5-Coder-32B-Instruct q8_0 K/V, -c 32768 — ggml-org/llama.cpp#11200
    ("llamacpp-qwen25-coder-32b-q8kv-32k", "Qwen/Qwen2.5-32B", dict(context_len=32768, kv_dtype="q8_0")),
    # Command-R v01 (MHA 64 heads), -c 4096 — ggml-org/llama.cpp PR #6122
    ("llamacpp-command-r-v01-4k-2gpu", "CohereForAI/c4ai-command-r-v01", dict(context_len=4096)),
    # open_llama_7b_v2 = Llama-2-7B geometry, ggml-org/ci log, -c 512 and -c 2048
    ("llamacpp-ci-open-llama-7b-v2-n512", "meta-llama/Llama-2-7b-hf", dict(context_len=512)),
    ("llamacpp-ci-open-llama-7b-v2-n2048-ppl", "meta-llama/Llama-2-7b-hf", dict(context_len=2048)),
    # Llama-3.2-1B-Instruct in WasmEdge, --ctx-size 4096 — second-state/runwasi-wasmedge-demo
    ("llamacpp-llama32-1b-wasmedge-4k", "meta-llama/Llama-3.2-1B", dict(context_len=4096)),
    # Llama-3.1-405B Q4_0 over RPC, -c 4096 — ArmDeveloperEcosystem/arm-learning-paths
    ("llamacpp-llama31-405b-rpc-4k", "meta-llama/Llama-3.1-405B", dict(context_len=4096)),
    ("llamacpp-llama31-70b-rpc-4k", "meta-llama/Llama-3.1-70B", dict(context_len=4096)),
    # dolphin-2.9.4-llama3.1-8b (Llama-3.1-8B fine-tune) on Graviton4 — arm-learning-paths
    ("llamacpp-llama31-8b-dolphin-graviton4-4k", "meta-llama/Llama-3.1-8B", dict(context_len=4096)),
    # iOS app console logs, n_ctx 1024 — carlostarrats/Control-LLM Console.md
    ("llamacpp-llama32-1b-ios-1k", "meta-llama/Llama-3.2-1B", dict(context_len=1024)),
    ("llamacpp-qwen3-17b-ios-1k", "Qwen/Qwen3-1.7B", dict(context_len=1024)),
    # SmolLM2-1.7B-Instruct: same attention geometry as SmolLM-1.7B (24 layers, 32 KV heads × 64)
    ("llamacpp-smollm2-17b-ios-1k", "HuggingFaceTB/SmolLM-1.7B", dict(context_len=1024)),
]


@pytest.mark.parametrize("log_id,model,kwargs", LLAMA_CPP, ids=[r[0] for r in LLAMA_CPP])
def test_llamacpp_kv_size_matches_log(log_id, model, kwargs):
    exp = _log(log_id)["expected"]
    est = kvplan.kv_cache(model, engine="llama.cpp", **kwargs)
    assert est.kv_bytes == exp["size_mib"] * MiB
    assert est.k_bytes == exp["k_mib"] * MiB
    assert est.v_bytes == exp["v_mib"] * MiB
    assert est.breakdown[0].tokens_per_seq == exp["cells"]
    if "layers" in exp:
        assert sum(r.num_layers for r in est.breakdown) == exp["layers"]


GPT_OSS_ISWA = [
    # llama-server defaults: 4 unified slots, n_ctx = n_ctx_train; SWA cache 128·4 + 512 = 1,024 cells.
    # ontouchstart/rabbit-holes llama-cpp/models/unsloth/gpt-oss-20b-GGUF/README.md (build 8198, Metal)
    ("llamacpp-gpt-oss-20b-np4-131k-metal", dict(parallel=4, kv_unified=True)),
    # -c 131072, one slot: SWA cache pad256(128 + 512) = 768 cells. ik_llama.cpp#822 (build 6699, CUDA)
    ("llamacpp-gpt-oss-20b-np1-131k-cuda", dict(parallel=1)),
]


@pytest.mark.parametrize("log_id,kwargs", GPT_OSS_ISWA, ids=[r[0] for r in GPT_OSS_ISWA])
def test_llamacpp_iswa_gpt_oss(log_id, kwargs):
    """gpt-oss-20b: a base cache of 131,072 cells for the 12 full layers and a small SWA cache for the
    12 sliding layers (window 128)."""
    exp = _log(log_id)["expected"]
    est = kvplan.kv_cache("openai/gpt-oss-20b", engine="llama.cpp", context_len=131072, **kwargs)
    rows = {r.kind: r for r in est.breakdown}
    for kind, key in (("full", "non_swa"), ("sliding", "swa")):
        assert rows[kind].tokens_per_seq == exp[key]["cells"]
        assert rows[kind].num_layers == exp[key]["layers"]
        assert rows[kind].bytes == exp[key]["size_mib"] * MiB
        assert rows[kind].k_bytes == exp[key]["k_mib"] * MiB
    assert est.kv_bytes == (exp["non_swa"]["size_mib"] + exp["swa"]["size_mib"]) * MiB


def test_llamacpp_mla_latent_f16_matches_pr11446():
    """DeepSeek-R1 MLA cache at -c 32768, f16: c^KV 512 + k^R 64 per token-layer, no separate V.
    ggml-org/llama.cpp PR #11446 logs 2196 MiB (1952 + 244), the size of today's mainline latent-only
    cache (PR #19067)."""
    exp = _log("llamacpp-pr11446-deepseek-mla-32k")["expected"]
    est = kvplan.kv_cache("deepseek-ai/DeepSeek-R1", engine="llama.cpp", context_len=32768)
    assert est.kv_bytes == exp["mla_size_mib"] * MiB == (exp["c_kv_mib"] + exp["k_rope_mib"]) * MiB
    assert est.k_bytes is None and est.v_bytes is None  # one latent, not a K/V pair
    # the pre-#19067 mainline layout also kept a 512-wide V: 1088 instead of 576 elements
    legacy = kvplan.kv_cache("deepseek-ai/DeepSeek-R1", engine="llama.cpp", context_len=32768, mla_v_cache=True)
    assert legacy.kv_bytes * 576 == est.kv_bytes * 1088


def test_llamacpp_mla_latent_q8_0_matches_ik_llama():
    """The same latent-only layout in q8_0 (34 bytes per 32 values): ik_llama.cpp PR #259 logs
    1166.62 MiB for DeepSeek-R1 at 32,768 cells."""
    exp = _log("iklamacpp-deepseek-mla-q8-32k")["expected"]
    est = kvplan.kv_cache("deepseek-ai/DeepSeek-R1", engine="llama.cpp", context_len=32768, kv_dtype="q8_0")
    assert round(est.kv_bytes / MiB, 2) == exp["size_mib"]


# --- vLLM: "# GPU blocks" / "GPU KV cache size: N tokens" / "Maximum concurrency for L tokens" ----------
# (log id, bundled config, max_model_len, tp, logged available-KV GiB, expected blocks or None,
#  expected kv_tokens or None, logged concurrency, kv_tokens_rule of that vLLM version)
# V0 / early V1 logged blocks·block_size; newest vLLM logs int(concurrency·max_model_len) (A.9).
VLLM = [
    # Llama-3.1-8B-Instruct on an RTX 3090, vLLM V0 — vllm-project/vllm#10517
    ("vllm-llama31-8b-rtx3090-20k", "meta-llama/Llama-3.1-8B", 20000, 1, 3.81, 1952, None, 1.56, "blocks"),
    ("vllm-llama31-8b-rtx3090-29k", "meta-llama/Llama-3.1-8B", 29000, 1, 2.89, 1478, 23648, 0.82, "blocks"),
    # Meta-Llama-3-8B on an A100 40GB, vLLM V0 — vllm-project/vllm#12330
    ("vllm-llama3-8b-a100-40g-8k", "meta-llama/Meta-Llama-3-8B", 8192, 1, 11.12, 5691, None, 11.12, "blocks"),
    # Qwen3-14B, vLLM V1 with LMCache — LMCache/LMCache#1739
    ("vllm-qwen3-14b-32k-lmcache", "Qwen/Qwen3-14B", 32768, 1, 6.51, None, 42656, 1.30, "concurrency"),
    # LMCache FAQ table of vLLM startup figures (H100) — LMCache/LMCache PR #1769
    ("vllm-qwen3-8b-h100-lmcache-faq", "Qwen/Qwen3-8B", 40960, 1, 50.32, None, 366400, 8.95, "concurrency"),
    ("vllm-qwen3-32b-tp2-h100-lmcache-faq", "Qwen/Qwen3-32B", 40960, 2, 33.66, None, 275760, 6.73, "concurrency"),
    ("vllm-llama31-70b-tp4-h100-lmcache-faq", "meta-llama/Llama-3.1-70B", 131072, 4, 32.06, None, 420208, 3.21, "concurrency"),
]


@pytest.mark.parametrize("log_id,model,max_len,tp,avail_gib,blocks,tokens,conc,rule", VLLM,
                         ids=[r[0] for r in VLLM])
def test_vllm_blocks_tokens_concurrency_match_log(log_id, model, max_len, tp, avail_gib, blocks, tokens, conc, rule):
    row = _log(log_id)
    assert row["engine"] == "vllm"
    args = dict(max_model_len=max_len, tp=tp, kv_tokens_rule=rule)
    low = kvplan.capacity(model, kv_memory=int((avail_gib - 0.005) * GiB), **args)
    high = kvplan.capacity(model, kv_memory=int((avail_gib + 0.005) * GiB), **args)
    logged_blocks = blocks if blocks is not None else tokens // 16
    assert low.num_blocks <= logged_blocks <= high.num_blocks  # the printed budget was rounded
    exact = kvplan.capacity(model, kv_memory=logged_blocks * low.bytes_per_block, **args)
    assert exact.num_blocks == logged_blocks
    if tokens is not None:
        assert exact.kv_tokens == tokens
    assert round(exact.max_concurrency, 2) == conc


# --- SGLang: "KV Cache is allocated. #tokens: N, K size: X GB, V size: Y GB" (GB = 2^30 in its code) ---
# The pool allocates N + page_size rows (slot 0 is a padded dummy), page_size 1 by default.
SGLANG = [
    # Qwen3-235B-A22B-FP8, TP4 (1 KV head per rank) — vllm-project/vllm#21348
    ("sglang-qwen3-235b-a22b-fp8-tp4-h100", "Qwen/Qwen3-235B-A22B", 4, "num_tokens"),
    # Qwen3-Next-80B-A3B FP8, TP4 with DP attention (dp 4): attention TP size 1, so both KV heads of the
    # 12 full-attention layers on every rank (GDN layers hold no KV) — sgl-project/sglang#10622
    ("sglang-qwen3-next-fp8-dp4-attention", "Qwen/Qwen3-Next-80B-A3B-Thinking", (4, 4), "num_tokens"),
    # QwQ-32B (Qwen2.5-32B geometry), TP4 on L4s — didier-durand/llms-in-clouds docs/sglang.md
    ("sglang-qwq-32b-tp4-l4", "Qwen/Qwen2.5-32B", 4, "num_tokens"),
    # DeepSeek-R1-Distill-Qwen-7B (Qwen2.5-7B geometry) on an RTX 3090 — jerryzsj/my-deepseek-r1
    ("sglang-r1-distill-qwen7b-rtx3090", "Qwen/Qwen2.5-7B", 1, "max_total_num_tokens"),
]


@pytest.mark.parametrize("log_id,model,tp,token_key", SGLANG, ids=[r[0] for r in SGLANG])
def test_sglang_pool_k_v_sizes_match_log(log_id, model, tp, token_key):
    exp = _log(log_id)["expected"]
    rows = exp[token_key] + 1
    tp, dp = tp if isinstance(tp, tuple) else (tp, 1)
    est = kvplan.kv_cache(model, engine="sglang", context_len=rows, tp=tp, dp_attention=dp)
    assert round(est.k_bytes / GiB, 2) == exp["k_size_gb"]
    assert round(est.v_bytes / GiB, 2) == exp["v_size_gb"]


def test_sglang_mla_latent_pool_matches_kimi_log():
    """Kimi-K2.5 (Kimi-K2 text geometry: 61 MLA layers, 512+64 latent), TP8 on MI355X: the latent pool
    is replicated on every rank; 2,454,421 tokens print as 160.63 GB.
    Source: ajith-sirra-amd/Issues Kimi-K2.5-MI355X-SGLANG-ERROR.md."""
    exp = _log("sglang-kimi-k25-tp8-mi355x")["expected"]
    est = kvplan.kv_cache("moonshotai/Kimi-K2-Instruct", engine="sglang", context_len=exp["num_tokens"] + 1, tp=8)
    assert round(est.kv_bytes / GiB, 2) == exp["kv_size_gb"]
    one_rank = kvplan.kv_cache("moonshotai/Kimi-K2-Instruct", engine="sglang", context_len=1000, tp=1)
    eight = kvplan.kv_cache("moonshotai/Kimi-K2-Instruct", engine="sglang", context_len=1000, tp=8)
    assert eight.kv_bytes == one_rank.kv_bytes  # the latent does not shrink with TP


# --- TensorRT-LLM: "[MemUsageChange] Allocated X GiB for max tokens in paged KV cache (N)" -------------
def test_trtllm_fp8_blocks_match_log():
    """Llama-3.1-8B-Instruct, FP8 KV, tokens_per_block 32 on an RTX 5090: 8,219 blocks = 263,008 tokens
    and 16.05 GiB (65,536 bytes per token). NVIDIA/TensorRT-LLM#4275 (comment 2941155249)."""
    exp = _log("trtllm-llama31-8b-fp8kv-rtx5090")["expected"]
    args = dict(engine="trtllm", kv_dtype="fp8", max_model_len=2048)
    low = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=int((exp["kv_cache_gib"] - 0.005) * GiB), **args)
    high = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=int((exp["kv_cache_gib"] + 0.005) * GiB), **args)
    assert low.num_blocks <= exp["num_blocks_primary"] <= high.num_blocks
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", engine="trtllm", kv_dtype="fp8",
                          context_len=exp["max_tokens_in_paged_kv_cache"])
    assert round(est.kv_bytes / GiB, 2) == exp["kv_cache_gib"]
    assert est.kv_bytes // exp["max_tokens_in_paged_kv_cache"] == 65536


# --- SGLang by version: the default mem_fraction_static printed in server_args ------------------------
# (log id, GPU memory in MiB as SGLang reads it, tp, engine version, vision tower (layers, hidden) or ())
SGLANG_MEM_FRACTION = [
    # 0.4.3.post4 on 4× L4 (22,574 MiB), TP4: the TP table gives 0.85 — didier-durand/llms-in-clouds
    ("sglang-qwq-32b-tp4-l4", 22574, 4, "0.4.3", ()),
    # early 2025 (~0.4.2) on an RTX 3090, TP1: 0.88 — jerryzsj/my-deepseek-r1
    ("sglang-r1-distill-qwen7b-rtx3090", 24576, 1, "0.4.2", ()),
    # 0.5.8.post1 on 8× MI355X (294,896 MiB), TP8: reserve 27,136 MB → 0.908, × the multimodal factor of
    # Kimi-K2.5's MoonViT (27 layers × 1152): 0.908 × 0.95 × (1 − 0.1·(27·1152²/(24·1024²) − 1))
    # = 0.8260405859375 — ajith-sirra-amd/Issues Kimi-K2.5-MI355X-SGLANG-ERROR.md
    ("sglang-kimi-k25-tp8-mi355x", 294896, 8, "0.5.8", (27, 1152)),
]


@pytest.mark.parametrize("log_id,mem_mib,tp,version,vision", SGLANG_MEM_FRACTION, ids=[r[0] for r in SGLANG_MEM_FRACTION])
def test_sglang_default_mem_fraction_static_matches_log(log_id, mem_mib, tp, version, vision):
    from kvplan.planner import sglang_mem_fraction_static

    exp = _log(log_id)["expected"]["mem_fraction_static"]
    got = sglang_mem_fraction_static(mem_mib * MiB, tp=tp, engine_version=version, vision_dims=vision)
    assert got == pytest.approx(exp, abs=1e-12)
