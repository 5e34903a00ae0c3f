"""The worked examples of ENGINE_KV_SPEC.md §G and the textbook figures, to the byte.

Each test names the section it reproduces. Where a bundled config is not available (Gemma-3-27B's
text config), the dims are the ones §G.2 states, in a config dict built here and labelled as such.
"""

from __future__ import annotations

import pytest

import kvplan
from kvplan.units import GB, GiB, MiB

T = 131072


# --- textbook figures (issue 2 "Must show") ---------------------------------------------------------
def test_llama2_7b_4096_fp16_is_exactly_2_gib():
    # 2 · 32 layers · 32 heads · 128 · 2 bytes · 4096 tokens = 2 GiB, in every engine without rounding
    for engine in ("naive", "transformers", "vllm", "llama.cpp", "sglang", "trtllm"):
        est = kvplan.kv_cache("meta-llama/Llama-2-7b-hf", context_len=4096, engine=engine, kv_dtype="fp16")
        assert est.kv_bytes == 2 * GiB, engine


def test_llama3_70b_is_327680_bytes_per_token_not_2_6_mb():
    est = kvplan.kv_cache("meta-llama/Llama-3.1-70B", context_len=1, engine="naive")
    assert est.bytes_per_token == 327_680  # 2 · 80 · 8 KV heads · 128 · 2
    all_heads = 2 * 80 * 64 * 128 * 2  # the all-heads (MHA) assumption
    assert all_heads == 2_621_440 and est.bytes_per_token * 8 == all_heads


# --- G.1 Llama-3.1-8B --------------------------------------------------------------------------------
def test_g1_llama31_8b_vllm_blocks_and_concurrency():
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=T)
    assert est.bytes_per_token == 131_072 and est.kv_bytes == 16 * GiB
    cap = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory="51.38GiB", max_model_len=T)
    assert cap.bytes_per_block == 2 * MiB  # 65,536 B per layer per block × 32 layers
    assert (cap.num_blocks, cap.kv_tokens, round(cap.max_concurrency, 2)) == (26_306, 420_896, 3.21)


@pytest.mark.parametrize("tp,per_rank", [(1, 131_072), (8, 16_384), (16, 16_384)])
def test_g1_tp_head_split_and_replication(tp, per_rank):
    # TP=8: one KV head per rank; TP=16: still one (replicated), so the cluster holds 16 copies.
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=1024, tp=tp)
    assert est.bytes_per_token == per_rank
    assert est.total_bytes == est.kv_bytes * tp


@pytest.mark.parametrize("dtype,gib", [("fp16", 16.0), ("q8_0", 8.5), ("q4_0", 4.5)])
def test_g1_llamacpp_quantized_rows(dtype, gib):
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=T, engine="llama.cpp", kv_dtype=dtype)
    assert est.kv_bytes == gib * GiB


# --- G.2 gemma-3-27b-it (dims as stated in §G.2) ------------------------------------------------------
GEMMA3_27B_TEXT = {  # L=62, Hkv=16, D=128, window 1024, pattern 6 (ENGINE_KV_SPEC.md G.2)
    "model_type": "gemma3_text", "num_hidden_layers": 62, "num_attention_heads": 32,
    "num_key_value_heads": 16, "head_dim": 128, "hidden_size": 5376, "sliding_window": 1024,
    "sliding_window_pattern": 6, "torch_dtype": "bfloat16",
}


def test_g2_gemma3_27b_layer_split():
    arch = kvplan.parse_config(GEMMA3_27B_TEXT, "gemma-3-27b (G.2 dims)")
    assert arch.kind_counts() == {"sliding": 52, "full": 10}


def test_g2_gemma3_27b_vllm_hybrid_groups():
    arch = kvplan.parse_config(GEMMA3_27B_TEXT, "gemma-3-27b (G.2 dims)")
    est = kvplan.kv_cache(arch, context_len=T)
    # 10 KVCacheTensors; one block id = 10 × 131,072 B; 8,192 full + 6 × 1,089 SWA blocks
    assert est.kv_bytes == 14_726 * 1_310_720
    assert round(est.kv_bytes / 1e9, 1) == 19.3
    rows = {r.kind: r for r in est.breakdown}
    assert rows["padding"].num_layers == 8
    old = kvplan.kv_cache(arch, context_len=T, async_scheduling=False)
    assert old.kv_bytes == 11_654 * 1_310_720
    off = kvplan.kv_cache(arch, context_len=T, hybrid_kv_cache_manager=False)
    assert off.kv_bytes == 62 * GiB


def test_g2_gemma3_27b_sglang_llamacpp_hf():
    arch = kvplan.parse_config(GEMMA3_27B_TEXT, "gemma-3-27b (G.2 dims)")
    assert kvplan.kv_cache(arch, context_len=T, engine="sglang").kv_bytes == 507_904 * T  # SWA memory off
    lcpp = kvplan.kv_cache(arch, context_len=T, engine="llama.cpp")
    rows = {r.kind: r for r in lcpp.breakdown}
    assert rows["full"].bytes == 10 * GiB and rows["sliding"].tokens_per_seq == 1_536
    assert rows["sliding"].bytes == 624 * MiB
    four = kvplan.kv_cache(arch, context_len=T, engine="llama.cpp", parallel=4, kv_unified=True, batch=1)
    assert {r.kind: r for r in four.breakdown}["sliding"].tokens_per_seq == 4_608
    hf = kvplan.kv_cache(arch, context_len=T, engine="transformers")
    assert {r.kind: r for r in hf.breakdown}["sliding"].tokens_per_seq == 1_023


# --- G.3 DeepSeek-V3 / R1 ---------------------------------------------------------------------------
@pytest.mark.parametrize("engine,dtype,per_token", [
    ("vllm", "auto", 70_272), ("vllm", "fp8", 35_136), ("sglang", "auto", 70_272),
    ("trtllm", "auto", 70_272), ("llama.cpp", "auto", 70_272),
    ("transformers", "auto", 70_272),  # transformers 5.x caches the latent (measured on 5.23.0)
    ("naive", "auto", 1_748_992),  # 2·61·128 "KV heads"·56·2
])
def test_g3_deepseek_v3_bytes_per_token(engine, dtype, per_token):
    est = kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=1, engine=engine, kv_dtype=dtype)
    assert est.bytes_per_token == per_token


def test_g3_transformers_4_57_decompressed_mla():
    # D.3: transformers 4.56/4.57 stored K [B, 128, T, 192] and V [B, 128, T, 128]: 71× the latent
    est = kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=1, engine="transformers",
                          mla_cache="decompressed")
    assert est.bytes_per_token == 4_997_120 == 61 * 128 * (192 + 128) * 2


def test_g3_mla_is_per_gpu_not_divided_by_tp():
    one = kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=8192, tp=1)
    eight = kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=8192, tp=8)
    assert eight.kv_bytes == one.kv_bytes and eight.total_bytes == 8 * one.kv_bytes


@pytest.mark.parametrize("block,version,page", [(None, "0.10", 73_728), (128, None, 147_456), (None, None, 18_432)])
def test_g3_mla_block_pages(block, version, page):
    # FlashMLA's 64-token blocks were the Hopper default from 0.8 to 0.11.0 (the spec's example); from
    # 0.11.1 FlashAttention-MLA (16) is preferred (vllm PR #27363; llm-d v0.19 logs); CUTLASS MLA 128.
    est = kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=1, block_size=block, engine_version=version)
    assert est.kv_bytes == 61 * page


# --- G.4 gpt-oss-120b --------------------------------------------------------------------------------
def test_g4_gpt_oss_120b_vllm():
    est = kvplan.kv_cache("openai/gpt-oss-120b", context_len=T)
    assert est.kv_bytes == 9_225 * 589_824 and round(est.kv_bytes / GB, 2) == 5.44
    assert round(kvplan.kv_cache("openai/gpt-oss-120b", context_len=T, async_scheduling=False).kv_bytes / GB, 2) == 5.14
    naive = kvplan.kv_cache("openai/gpt-oss-120b", context_len=T, engine="naive")
    assert naive.bytes_per_token == 73_728 and round(naive.kv_bytes / GB, 2) == 9.66


def test_g4_gpt_oss_llamacpp_swa_cells():
    est = kvplan.kv_cache("openai/gpt-oss-120b", context_len=T, engine="llama.cpp")
    assert {r.kind: r.tokens_per_seq for r in est.breakdown} == {"sliding": 768, "full": T}


# --- G.5 Qwen3-Next-80B-A3B --------------------------------------------------------------------------
QNEXT = "Qwen/Qwen3-Next-80B-A3B-Thinking"


def test_g5_qwen3_next_attention_bytes():
    assert kvplan.kv_cache(QNEXT, context_len=1, engine="naive").bytes_per_token == 98_304
    assert kvplan.kv_cache(QNEXT, context_len=1, engine="sglang").bytes_per_token == 24_576


def test_g5_qwen3_next_vllm_block_and_padding():
    est = kvplan.kv_cache(QNEXT, context_len=T, mamba_cache_mode="none")
    assert est.block_size == 544
    state = {r.kind: r for r in est.breakdown}["state"]
    assert state.bytes == 36 * 1_114_112  # one padded page per GDN layer per sequence
    full_blocks = -(-T // 544)
    assert est.kv_bytes == (full_blocks + 3) * 13_369_344  # cdiv(T, 544) + 3 blocks, 12-layer groups
    align = kvplan.kv_cache(QNEXT, context_len=T)  # prefix caching on: "align", 2 blocks per group
    assert align.kv_bytes == (full_blocks + 6) * 13_369_344


@pytest.mark.parametrize("engine,per_layer", [
    ("sglang", 2_146_304), ("llama.cpp", 2_195_456), ("transformers", 65_536 + 2_097_152),
])
def test_g5_qwen3_next_state_per_engine(engine, per_layer):
    est = kvplan.kv_cache(QNEXT, context_len=1, engine=engine)
    assert est.state_bytes == 36 * per_layer


def test_g5_qwen3_next_tp_splits_state_and_replicates_kv_heads():
    one = kvplan.kv_cache(QNEXT, context_len=1, engine="sglang")
    four = kvplan.kv_cache(QNEXT, context_len=1, engine="sglang", tp=4)
    assert four.bytes_per_token == one.bytes_per_token // 2  # 2 KV heads → 1 per rank, replicated
    assert four.state_bytes * 4 == one.state_bytes
