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
from kvplan.units import MiB
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
