"""Every item in the engine's memory pool (issue 13 §2): NAS block configs, sparse-attention indexer
caches, speculative-decoding draft layers, multimodal and LoRA budget lines.

Golden numbers come from public engine logs kept in tests/golden/pool_logs.json (one row per log, with
its URL); the rest are arithmetic checks of the engine rules the profiles document.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kvplan
from kvplan.errors import UnsupportedConfigError
from kvplan.units import GiB, MiB
from kvplan.weights import param_counts

LOGS = {r["id"]: r for r in json.loads((Path(__file__).parent / "golden" / "pool_logs.json").read_text())}
ULTRA = "nvidia/Llama-3_1-Nemotron-Ultra-253B-v1"
SUPER = "nvidia/Llama-3_3-Nemotron-Super-49B-v1"


def _log(row_id: str) -> dict:
    row = LOGS[row_id]
    assert row["source"].startswith("https://github.com/"), row["source"]
    return row


# --- NAS block_configs (DeciLM: Nemotron-Ultra / Super) ----------------------------------------------------
def test_nemotron_ultra_llamacpp_kv_matches_ik_llama_log():
    """ik_llama.cpp PR #377: -c 12228 (12,288 cells), K q8_0 816 MiB + V q4_0 432 MiB = 1248 MiB, over the
    64 attention blocks only (98 no_op blocks hold no KV). Before block_configs were read, kvplan gave
    128 KV heads on all 162 layers: 50,544 MiB."""
    exp = _log("iklamacpp-nemotron-ultra-253b-q8k-q4v-12228")["expected"]
    est = kvplan.kv_cache(ULTRA, engine="llama.cpp", context_len=12228, kv_dtype="q8_0", parallel=1, type_v="q4_0")
    assert est.kv_bytes == exp["size_mib"] * MiB
    assert est.k_bytes == exp["k_mib"] * MiB
    assert est.v_bytes == exp["v_mib"] * MiB
    assert est.breakdown[0].tokens_per_seq == exp["n_ctx"]
    assert est.breakdown[0].num_layers == 64


def test_nemotron_ultra_param_count_matches_llamacpp():
    """The same log's "model params = 253.401 B" and "repeating layers ... 249.199 B parameters": per-block
    FFN widths (ffn_mult), no_op attention and FFN blocks without weights or norms."""
    exp = _log("iklamacpp-nemotron-ultra-253b-q8k-q4v-12228")["expected"]
    p = param_counts(kvplan.load_model(ULTRA))
    assert round(p.total / 1e9, 3) == exp["model_params_b"]
    assert round((p.total - p.embedding - p.lm_head) / 1e9, 3) == exp["repeating_params_b"]


@pytest.mark.parametrize("model,attn,none,kv_heads", [(ULTRA, 64, 98, 8), (SUPER, 49, 31, 8)])
def test_nas_layers_from_block_configs(model, attn, none, kv_heads):
    arch = kvplan.load_model(model)
    assert arch.kind_counts() == {"full": attn, "none": none}
    assert {s.num_kv_heads for s in arch.of_kind("full")} == {kv_heads}
    # vLLM: 2 (K, V) x 8 heads x 128 x bf16 per attention block and token
    est = kvplan.kv_cache(model, context_len=16)
    assert est.bytes_per_token == attn * 2 * 8 * 128 * 2


def test_nas_tp_splits_the_eight_kv_heads():
    one = kvplan.kv_cache(ULTRA, context_len=8192)
    eight = kvplan.kv_cache(ULTRA, context_len=8192, tp=8)
    assert eight.kv_bytes * 8 == one.kv_bytes


def _nas(blocks):
    return {"model_type": "nemotron-nas", "num_hidden_layers": len(blocks), "num_attention_heads": 8,
            "num_key_value_heads": None, "hidden_size": 512, "vocab_size": 1000, "torch_dtype": "bfloat16",
            "block_configs": blocks}


def test_nas_replace_with_linear_holds_no_kv_but_weights():
    """Nemotron-51B style blocks whose attention is one linear map (labelled synthetic config)."""
    attn = {"attention": {"n_heads_in_group": 4, "no_op": False, "replace_with_linear": False},
            "ffn": {"ffn_mult": 1.0, "no_op": False}}
    linear = {"attention": {"n_heads_in_group": None, "no_op": False, "replace_with_linear": True},
              "ffn": {"ffn_mult": 1.0, "no_op": False}}
    noop = {"attention": {"n_heads_in_group": None, "no_op": True}, "ffn": {"ffn_mult": None, "no_op": True}}
    arch = kvplan.parse_config(_nas([attn, linear, noop]))
    assert [s.kind for s in arch.layers] == ["full", "none", "none"]
    assert arch.layers[0].num_kv_heads == 2
    # ffn_mult 1.0, hidden 512: int(2·512/3) = 341 -> 512 (multiple of 256); the no_op block has no FFN
    assert arch.weight_dims.layer_intermediate_sizes == (512, 512, 0)
    with_linear = param_counts(arch).attention
    plain = param_counts(kvplan.parse_config(_nas([attn, noop, noop]))).attention
    assert with_linear - plain == 512 * 512


@pytest.mark.parametrize("blocks,field", [
    ([{"attention": {"n_heads_in_group": 3, "no_op": False}}], "block_configs[0].attention.n_heads_in_group"),
    ([{"attention": {"n_heads_in_group": None}}], "block_configs[0].attention.n_heads_in_group"),
    (["x"], "block_configs[0]"),
    ([{"attention": {"n_heads_in_group": 8}, "ffn": {"ffn_mult": "big"}}], "block_configs[0].ffn.ffn_mult"),
    ([], "block_configs"),
])
def test_nas_bad_block_configs_are_typed_errors(blocks, field):
    cfg = _nas(blocks)
    cfg["num_hidden_layers"] = max(1, len(blocks))
    with pytest.raises(UnsupportedConfigError) as err:
        kvplan.parse_config(cfg)
    assert err.value.field == field


# --- DeepSeek Sparse Attention: the lightning-indexer key beside the MLA latent -----------------------------
GLM5 = "QuantTrio/GLM-5-AWQ"


def _deepseek_v32() -> kvplan.ModelArch:
    """DeepSeek-V3.2's published config.json, bundled verbatim (model_specs/SOURCES.md, sixth batch);
    DeepSeek-V3.2-Exp has the same architecture fields."""
    return kvplan.load_model("deepseek-ai/DeepSeek-V3.2")


def test_deepseek_v32_real_config_is_v3_plus_the_indexer():
    """The real V3.2 file differs from V3's in the indexer fields only, as far as the cache goes: 61 MLA
    layers of 512 + 64 with a 128-wide fp8 indexer key (132 B with its scale) in every layer, 1 MTP layer."""
    arch, v3 = _deepseek_v32(), kvplan.load_model("deepseek-ai/DeepSeek-V3")
    assert arch.model_type == "deepseek_v32" and arch.kind_counts() == v3.kind_counts() == {"mla": 61}
    assert {(s.kv_lora_rank, s.rope_dim, s.index_head_dim, s.indexer_fp8_bytes) for s in arch.layers} == {(512, 64, 128, 132)}
    assert arch.weight_dims.index_n_heads == 64 and arch.weight_dims.num_nextn_predict_layers == 1
    # vLLM: latent + indexer in one 64-token block per layer; MTP speculation adds the MTP layer's cache
    est = kvplan.kv_cache(arch, context_len=64, engine="vllm")
    assert est.block_size == 64 and est.kv_bytes == 61 * 64 * (576 * 2 + 132)
    mtp = kvplan.kv_cache(arch, context_len=64, engine="vllm", speculative="mtp")
    assert mtp.kv_bytes == 62 * 64 * (576 * 2 + 132)


def test_glm5_config_has_an_indexer_in_every_layer():
    arch = kvplan.load_model(GLM5)
    assert arch.kind_counts() == {"mla": 78}
    assert {s.index_head_dim for s in arch.layers} == {128}
    assert arch.layers[0].indexer_fp8_bytes == 132


def test_sglang_nsa_pool_matches_pr11309():
    """DeepSeek-V3.2-Exp, 8×B200, tp 8 dp 8 with DP attention, fp8 NSA pool, page 64. After the PR the pool
    of 975,424 tokens is 43.67 GB (latent 656 B + indexer 132 B per token-layer); before it, the budget
    ignored the indexer: 1,462,784 tokens printed as 54.52 GB of latent, 65.49 GB with the indexer."""
    exp = _log("sglang-deepseek-v32-exp-nsa-indexer-pool-b200")["expected"]
    arch = _deepseek_v32()
    args = dict(engine="sglang", kv_dtype="fp8", tp=8, dp_attention=8)
    after = kvplan.kv_cache(arch, context_len=exp["with_pr"]["num_tokens"] + 64, **args)
    assert after.block_size == 64
    assert round(after.kv_bytes / GiB, 2) == exp["with_pr"]["kv_size_gb"]
    before = kvplan.kv_cache(arch, context_len=exp["before_pr"]["num_tokens"] + 64, **args)
    rows = {r.kind: r.bytes for r in before.breakdown}
    assert round(rows["mla"] / GiB, 2) == exp["before_pr"]["latent_size_gb"]
    assert round(before.kv_bytes / GiB, 2) == exp["before_pr"]["with_indexer_gb"]
    # capacity counts the indexer: a budget of exactly 975,424 tokens' worth gives 975,424 tokens
    cap = kvplan.capacity(arch, kv_memory=975424 * 61 * (656 + 132), max_model_len=8192, **args)
    assert cap.kv_tokens == 975424
    # ... from SGLang 0.5.4, the first release with the PR; 0.5.3's budget bought latent-only tokens
    budget = exp["before_pr"]["num_tokens"] * 61 * 656
    old = kvplan.capacity(arch, kv_memory=budget, max_model_len=8192, engine_version="0.5.3", **args)
    new = kvplan.capacity(arch, kv_memory=budget, max_model_len=8192, engine_version="0.5.4", **args)
    assert old.kv_tokens == exp["before_pr"]["num_tokens"]
    assert new.kv_tokens == budget // (61 * 788) // 64 * 64 < old.kv_tokens
    pinned = kvplan.kv_cache(arch, context_len=exp["before_pr"]["num_tokens"] + 64, engine_version="0.5.3", **args)
    assert pinned.kv_bytes == before.kv_bytes  # the indexer was allocated either way, only not budgeted
    assert any("left out of the token budget" in n for n in pinned.notes)


def test_llamacpp_dsa_indexer_cache_matches_issue_26382():
    """llama.cpp's llama_kv_cache_dsa keeps indexer keys in the -ctk type: 78 layers × 65,536 cells × 128
    q8_0 values = 663.00 MiB (ggml-org/llama.cpp#26382); dsa_indexer=False is the older dense-MLA build."""
    exp = _log("llamacpp-glm-dsa-indexer-cache-q8-65536")["expected"]
    est = kvplan.kv_cache(GLM5, engine="llama.cpp", context_len=65536, kv_dtype="q8_0")
    rows = {r.kind: r for r in est.breakdown}
    assert rows["indexer"].bytes == exp["indexer_mib_all_layers"] * MiB
    assert rows["indexer"].num_layers == 78
    old = kvplan.kv_cache(GLM5, engine="llama.cpp", context_len=65536, kv_dtype="q8_0", dsa_indexer=False)
    assert old.kv_bytes == est.kv_bytes - rows["indexer"].bytes


def test_vllm_pages_indexer_with_latent_in_64_token_blocks():
    """vLLM: DeepseekV32IndexerCache is an MLAAttentionSpec of one 132-byte head per token; with the latent
    (576 bf16 values, or 656 B fp8_ds_mla) it forms one UniformType group of 64-token blocks."""
    est = kvplan.kv_cache(GLM5, context_len=1000)
    assert est.block_size == 64
    rows = {r.kind: r for r in est.breakdown}
    assert rows["indexer"].bytes == 78 * 1024 * 132 and rows["mla"].bytes == 78 * 1024 * 1152
    assert est.bytes_per_token == 78 * (1152 + 132)
    cap = kvplan.capacity(GLM5, kv_memory=10 * GiB, max_model_len=8192, kv_dtype="fp8")
    assert cap.bytes_per_block == 78 * 64 * (656 + 132)
    assert cap.num_blocks == 10 * GiB // (78 * 64 * 788)
    forced = kvplan.kv_cache(GLM5, context_len=1000, block_size=16)
    assert forced.block_size == 64 and any("DEEPSEEK_V32_INDEXER" in n for n in forced.notes)


@pytest.mark.parametrize("engine,per_token", [("trtllm", 78 * (1152 + 132)), ("transformers", 78 * (576 + 128) * 2)])
def test_indexer_in_other_engines(engine, per_token):
    assert kvplan.kv_cache(GLM5, engine=engine, context_len=64).bytes_per_token == per_token


def test_indexer_types_keep_keys_only_in_full_layers():
    """GLM-5.2 style `indexer_types` (labelled synthetic 4-layer config): "shared" layers reuse top-k."""
    cfg = {"model_type": "glm_moe_dsa", "num_hidden_layers": 4, "num_attention_heads": 4, "hidden_size": 256,
           "kv_lora_rank": 64, "qk_rope_head_dim": 16, "qk_nope_head_dim": 32, "v_head_dim": 32,
           "index_head_dim": 128, "index_topk": 16, "indexer_types": ["full", "shared", "shared", "full"],
           "torch_dtype": "bfloat16"}
    arch = kvplan.parse_config(cfg)
    assert [s.index_head_dim for s in arch.layers] == [128, 0, 0, 128]
    cfg["indexer_types"] = ["full", "half", "full", "full"]
    with pytest.raises(UnsupportedConfigError) as err:
        kvplan.parse_config(cfg)
    assert err.value.field == "indexer_types"


# --- Speculative decoding: the draft's layers in the pool ----------------------------------------------------
def test_vllm_eagle_draft_layer_matches_issue_19996():
    """Llama-3.1-8B + EAGLE on an H100, vLLM 0.9.1: 51.63 GiB holds 410,128 tokens = 25,633 blocks of 33
    layers × 4 KiB (the draft's layer shares the pool); the target alone would give 422,944."""
    exp = _log("vllm-llama31-8b-eagle-h100-19996")["expected"]
    args = dict(max_model_len=8192, kv_tokens_rule="blocks", speculative="eagle")
    low = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=int((exp["available_kv_gib"] - 0.005) * GiB), **args)
    high = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=int((exp["available_kv_gib"] + 0.005) * GiB), **args)
    blocks = exp["kv_tokens"] // 16
    assert low.num_blocks <= blocks <= high.num_blocks
    assert high.bytes_per_block == 33 * 16 * 4096
    exact = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=blocks * high.bytes_per_block, **args)
    assert exact.kv_tokens == exp["kv_tokens"]
    plain = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=int(exp["available_kv_gib"] * GiB),
                            max_model_len=8192, kv_tokens_rule="blocks")
    assert plain.kv_tokens == 422944
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=16, speculative="eagle3")
    assert [(r.kind, r.num_layers) for r in est.breakdown] == [("full", 33)]


def test_mtp_layers_follow_num_nextn_predict_layers():
    """DeepSeek-V3's one MTP layer is an MLA layer like the others: 62 latent layers in the pool."""
    est = kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=64, speculative="mtp", num_speculative_tokens=1)
    assert est.bytes_per_token == 62 * 576 * 2
    with pytest.raises(kvplan.InvalidInputError) as err:
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=64, speculative="mtp")
    assert err.value.field == "speculative"


def test_vllm_hybrid_gdn_with_speculative_tokens():
    """Qwen3-Next (GDN hybrid) + MTP, k = 2, TP 4: the draft's attention layer joins the 12 full layers
    (13 per group: 3 padding slots), each conv state keeps 3 + k rows, and a request holds 2 + k state
    blocks (vLLM mamba_utils / MambaSpec.num_speculative_blocks). Arithmetic from the engine's rules."""
    model = "Qwen/Qwen3-Next-80B-A3B-Thinking"
    base = kvplan.kv_cache(model, context_len=32768, tp=4)
    spec = kvplan.kv_cache(model, context_len=32768, tp=4, speculative="mtp", num_speculative_tokens=2)
    rows = {r.kind: r for r in spec.breakdown}
    assert rows["full"].num_layers == 13 and rows["padding"].num_layers == 3
    arch = kvplan.load_model(model)
    gdn = arch.of_kind("state")[0]
    conv0 = (gdn.conv_kernel - 1) * gdn.conv_channels // 4 * 2
    conv2 = (gdn.conv_kernel - 1 + 2) * gdn.conv_channels // 4 * 2
    ssm = gdn.ssm_elems // 4 * 2
    page0, page2 = conv0 + ssm, conv2 + ssm
    # the state page is padded to one attention page; the state row counts 36 layers × blocks × page
    base_state = {r.kind: r for r in base.breakdown}["state"].bytes
    assert base_state % (36 * 2) == 0 and base_state // (36 * 2) >= page0
    assert rows["state"].bytes % (36 * 4) == 0 and rows["state"].bytes // (36 * 4) >= page2
    assert rows["state"].bytes // (36 * 4) < page2 + 288 * 2 * 2 * 256 // 4 * 2  # within one attention token-page


def test_sglang_and_llamacpp_add_draft_layers_and_trtllm_too():
    for engine in ("sglang", "llama.cpp", "trtllm"):
        base = kvplan.kv_cache("meta-llama/Llama-3.1-8B", engine=engine, context_len=4096)
        spec = kvplan.kv_cache("meta-llama/Llama-3.1-8B", engine=engine, context_len=4096, speculative="eagle3")
        assert spec.kv_bytes * 32 == base.kv_bytes * 33, engine


def test_draft_model_brings_its_own_layers():
    """A separate draft (Llama-3.2-1B for Llama-3.1-8B: 16 layers of 8 × 64) joins vLLM's pool."""
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=16, draft_model="meta-llama/Llama-3.2-1B")
    assert est.bytes_per_token == 32 * 4096 + 16 * 2048
    assert "Llama-3.2-1B" in est.model
    with pytest.raises(kvplan.InvalidInputError):
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=16, speculative="draft_model")


@pytest.mark.parametrize("kwargs,field", [
    (dict(speculative="medusa9"), "speculative"),
    (dict(speculative="eagle", num_speculative_tokens=-1), "num_speculative_tokens"),
    (dict(speculative="eagle", num_speculative_tokens=1000), "num_speculative_tokens"),
    (dict(speculative="ngram", draft_model="meta-llama/Llama-3.2-1B"), "draft_model"),
])
def test_bad_speculative_inputs_are_typed(kwargs, field):
    with pytest.raises(kvplan.InvalidInputError) as err:
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=16, **kwargs)
    assert err.value.field == field


def test_speculative_rejected_where_not_modelled():
    with pytest.raises(kvplan.InvalidInputError) as err:
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=16, engine="transformers", speculative="eagle")
    assert err.value.field == "speculative"


def test_pp_puts_the_draft_on_the_last_stage():
    two = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=1024, pp=2, speculative="eagle")
    assert two.breakdown[0].num_layers == 17  # 16 target layers + the draft on the last stage


# --- Budget lines: draft weights, LoRA slots, multimodal encoder (kvplan.pool, planner) ----------------------
def test_lora_buffers_follow_vllm_layer_shapes():
    """Llama-3.1-8B, rank 16, one slot: per layer A = r·(5·4096 + 4096 + 14336) (q, k, v, gate, up take the
    hidden size in; o and down their own inputs) and B = r·(4096 + 2·1024 + 2·14336 + 4096 + 4096) outputs:
    r · 81,920 values per layer, 32 layers, bf16 = 80 MiB. Under TP 2 column B and row A halve."""
    from kvplan import pool

    arch = kvplan.load_model("meta-llama/Llama-3.1-8B")
    assert pool.lora_bytes(arch, max_loras=1, max_lora_rank=16) == 80 * MiB
    per_layer_tp2 = 16 * (5 * 4096 + (4096 + 14336) // 2 + (4096 + 2 * 1024 + 2 * 14336) // 2 + 2 * 4096)
    assert pool.lora_bytes(arch, max_loras=4, max_lora_rank=16, tp=2) == 4 * 32 * per_layer_tp2 * 2
    assert pool.lora_bytes(arch, max_loras=0, max_lora_rank=16) == 0
    with pytest.raises(kvplan.InvalidInputError) as err:
        pool.lora_bytes(arch, max_loras=-1, max_lora_rank=16)
    assert err.value.field == "max_loras"


def test_plan_takes_lora_and_draft_weights_out_of_the_kv_budget():
    base = kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len="8k")
    lora = kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len="8k", max_loras=4, max_lora_rank=64)
    assert lora.pool_bytes == {"lora": 4 * 4 * 80 * MiB}
    assert base.kv_budget_bytes - lora.kv_budget_bytes == lora.pool_bytes["lora"]
    spec = kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len="8k", speculative="eagle3")
    assert spec.pool_bytes["draft_weights"] > 0
    assert spec.kv_bytes_per_token == 33 * 4096  # the draft layer is in the pool too
    draft = kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len="8k",
                        draft_model="meta-llama/Llama-3.2-1B")
    from kvplan.weights import weights_bytes

    assert draft.pool_bytes["draft_weights"] == weights_bytes(kvplan.load_model("meta-llama/Llama-3.2-1B"))
    with pytest.raises(kvplan.InvalidInputError):
        kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len="8k", engine="llama.cpp", max_loras=2)


def test_multimodal_encoder_cache_and_text_only():
    """Qwen2.5-VL-7B on vLLM: the encoder cache holds max_num_batched_tokens (8192 on an H100) embeddings
    of 3584 bf16 values; --limit-mm-per-prompt image=0,video=0 drops it (vllm PR #25631)."""
    model = "Qwen/Qwen2.5-VL-7B-Instruct"
    mm = kvplan.plan(model, gpu="H100", max_model_len="8k")
    assert mm.pool_bytes["encoder_cache"] == 8192 * 3584 * 2
    assert any("profiling peak" in n for n in mm.notes)
    text = kvplan.plan(model, gpu="H100", max_model_len="8k", limit_mm_per_prompt="image=0,video=0")
    assert text.pool_bytes == {}
    assert text.kv_budget_bytes - mm.kv_budget_bytes == 8192 * 3584 * 2
    prof = kvplan.plan(model, gpu="H100", max_model_len="8k", mm_profile_bytes="2GiB")
    assert prof.pool_bytes["mm_profiling"] == 2 * GiB
    with pytest.raises(kvplan.InvalidInputError):
        kvplan.plan(model, gpu="H100", max_model_len="8k", limit_mm_per_prompt="image=lots")


def test_vision_tower_is_split_under_tp():
    """vLLM shards the ViT's linear layers over TP: Mistral-Small-3.1's 0.62 GiB Pixtral tower is halved
    at TP 2 (the w8a8 checkpoint of the llm-d v0.19 campaign logs 24.07 GiB at TP 1, 12.11 at TP 2)."""
    from kvplan.weights import _vision_params, weights_bytes

    arch = kvplan.load_model("mistralai/Mistral-Small-3.1-24B-Instruct-2503")
    vision = _vision_params(arch) * 2
    assert abs(weights_bytes(arch, "auto", 1, 1) - 2 * weights_bytes(arch, "auto", 2, 1)) < vision // 10


def test_cli_plan_prints_pool_lines(capsys):
    from kvplan.cli import main

    assert main(["plan", "meta-llama/Llama-3.1-8B", "--gpu", "H100", "--max-model-len", "8k", "--max-loras", "2",
                 "--speculative", "eagle3", "--num-speculative-tokens", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["pool_bytes"]) == {"lora", "draft_weights"}
    assert main(["plan", "meta-llama/Llama-3.1-8B", "--gpu", "H100", "--max-model-len", "8k", "--max-loras", "2"]) == 0
    assert "lora" in capsys.readouterr().out


@pytest.mark.parametrize("model,engine,kwargs", [
    ("Qwen/Qwen3-Next-80B-A3B-Thinking", "vllm", dict(speculative="mtp", num_speculative_tokens=2, tp=4)),
    (GLM5, "vllm", dict(kv_dtype="fp8")), (GLM5, "sglang", dict(kv_dtype="fp8", tp=8)),
    (GLM5, "llama.cpp", dict(kv_dtype="q8_0")), (GLM5, "trtllm", {}), (GLM5, "transformers", {}),
    ("meta-llama/Llama-3.1-8B", "sglang", dict(speculative="eagle3", pp=2)),
    ("meta-llama/Llama-3.1-8B", "llama.cpp", dict(draft_model="meta-llama/Llama-3.2-1B")),
])
def test_sweep_agrees_with_kv_cache_on_pool_items(model, engine, kwargs):
    contexts = [100, 5000, 70000]
    assert kvplan.sweep(model, context_lens=contexts, engine=engine, **kwargs) == \
        [kvplan.kv_cache(model, context_len=c, engine=engine, **kwargs) for c in contexts]


def test_dsa_indexer_weights_are_counted():
    """The lightning indexer's linears per MLA layer: wq_b [heads·128, q_lora_rank], wk [128, hidden],
    a LayerNorm (weight + bias) and weights_proj [heads, hidden]; GLM-5: 32 heads, q_lora_rank 2048."""
    from kvplan.registry import read_config_file, specs_dir

    arch = kvplan.load_model(GLM5)
    assert arch.weight_dims.index_n_heads == 32
    cfg = read_config_file(specs_dir() / "QuantTrio--GLM-5-AWQ" / "config.json")
    plain = kvplan.parse_config({**cfg, "index_topk": None})
    per_layer = 32 * 128 * 2048 + 128 * 6144 + 2 * 128 + 32 * 6144
    assert param_counts(arch).total - param_counts(plain).total == 78 * per_layer
