"""Config parsing: every bundled config, each family's conventions, and typed errors for bad input.

Rows marked "bundled" use the verbatim published configs in model_specs/. Rows marked "synthetic"
exercise a family's field convention with a minimal dict (no real copy of those configs could be
found for bundling: Gemma 3n, Falcon-H1; and Llama 4's empty `no_rope_layers` default); their dims
follow the model cards.
"""

from __future__ import annotations

import json

import pytest

import kvplan
from kvplan import (MLA, ChunkedLocal, FullAttention, NoCache, RecurrentState, SlidingWindow,
                    UnsupportedConfigError, parse_config)
from kvplan.registry import list_models, specs_dir


def test_every_bundled_config_parses():
    ids = list_models()
    assert len(ids) >= 60
    kinds = set()
    for model_id in ids:
        arch = kvplan.load_model(model_id)
        assert arch.num_layers > 0 and arch.layers, model_id
        kinds.update(arch.attention_kinds)
    # every cache kind ModelArch knows has at least one real bundled config
    assert kinds == {"full", "sliding", "chunked", "mla", "state", "none"}


def test_bare_infinity_is_read():
    text = (specs_dir() / "nvidia--Nemotron-H-56B-Base-8K" / "config.json").read_text()
    assert "Infinity" in text
    arch = kvplan.load_model("nvidia/Nemotron-H-56B-Base-8K")
    assert arch.kind_counts() == {"state": 54, "none": 54, "full": 10}


# (bundled model, expected kind counts, first attention spec's (kv heads, head_dim)) — from the configs
BUNDLED = [
    ("openai-community/gpt2", {"full": 12}, (12, 64)),  # n_head / n_layer / n_embd naming, MHA
    ("tiiuae/falcon-180B", {"full": 80}, (8, 64)),  # num_kv_heads with new_decoder_architecture
    ("bigcode/gpt_bigcode-santacoder", {"full": 24}, (1, 128)),  # multi_query: one KV head
    ("THUDM/chatglm2-6b", {"full": 28}, (2, 128)),  # multi_query_group_num, kv_channels, num_layers
    ("meta-llama/Llama-3.1-8B", {"full": 32}, (8, 128)),
    ("Qwen/Qwen2.5-7B", {"full": 28}, (4, 128)),  # use_sliding_window: false beats sliding_window
    ("Qwen/Qwen3-Next-80B-A3B-Thinking", {"state": 36, "full": 12}, (2, 256)),  # head_dim 256 != 2048/16
    ("mistralai/Mistral-7B-v0.1", {"sliding": 32}, (8, 128)),  # window on every layer
    ("google/gemma-2-2b", {"sliding": 13, "full": 13}, (4, 256)),  # alternating, even layers local
    ("google/gemma-3-1b-it", {"sliding": 22, "full": 4}, (1, 256)),  # pattern 6
    ("google/gemma-3-27b-it", {"sliding": 52, "full": 10}, (16, 128)),  # sparse text_config + defaults
    ("openai/gpt-oss-20b", {"sliding": 12, "full": 12}, (8, 64)),  # layer_types
    ("LGAI-EXAONE/EXAONE-4.0-32B", {"sliding": 48, "full": 16}, (8, 128)),  # pattern "LLLG"
    ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", {"full": 40}, (8, 128)),  # head_dim 128 != 5120/32
    ("meta-llama/Llama-3.2-90B-Vision-Instruct", {"full": 80, "none": 20}, (8, 128)),  # cross-attn layers
    ("ai21labs/AI21-Jamba-1.5-Mini", {"state": 28, "full": 4}, (8, 128)),  # Mamba1 + attention
    ("MiniMaxAI/MiniMax-M1-80k", {"state": 70, "full": 10}, (8, 128)),  # lightning attention
    ("LiquidAI/LFM2.5-VL-1.6B", {"state": 10, "full": 6}, (8, 64)),  # short-conv layers
    ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4", {"state": 23, "none": 23, "full": 6}, (2, 128)),
    ("deepseek-ai/DeepSeek-V3", {"mla": 61}, None),
    ("moonshotai/Kimi-K2-Instruct", {"mla": 61}, None),
    ("state-spaces/mamba-130m-hf", {"state": 24}, None),
    # Llama 4: no_rope_layers[i] == 1 → chunked local (RoPE), 0 → global NoPE layer (every 4th)
    ("unsloth/Llama-4-Scout-17B-16E-Instruct-unsloth", {"chunked": 36, "full": 12}, (8, 128)),
    # Meta's first upload has "no_rope_layers": [] → Llama4TextConfig's no_rope_layer_interval 4
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", {"chunked": 36, "full": 12}, (8, 128)),
    # Granite-4.0-H (granitemoehybrid): layer_types "mamba" / "attention"
    ("ibm-granite/granite-4.0-h-1b", {"state": 36, "full": 4}, (4, 128)),
    ("ibm-granite/granite-4.0-h-350m", {"state": 28, "full": 4}, (4, 64)),
]


@pytest.mark.parametrize("model,counts,attn", BUNDLED, ids=[r[0] for r in BUNDLED])
def test_bundled_family_conventions(model, counts, attn):
    arch = kvplan.load_model(model)
    assert arch.kind_counts() == counts
    if attn:
        first = next(s for s in arch.layers if isinstance(s, FullAttention))
        assert (first.num_kv_heads, first.head_dim) == attn


def test_gemma2_local_layers_are_even():
    arch = kvplan.load_model("google/gemma-2-2b")
    assert isinstance(arch.layers[0], SlidingWindow) and type(arch.layers[1]) is FullAttention
    assert arch.layers[0].window == 4096


def test_mla_fields():
    spec = kvplan.load_model("deepseek-ai/DeepSeek-V3").layers[0]
    assert isinstance(spec, MLA)
    assert (spec.kv_lora_rank, spec.rope_dim, spec.num_heads, spec.qk_nope_head_dim, spec.v_head_dim) == \
        (512, 64, 128, 128, 128)


def test_mamba2_state_shape_nemotron_h():
    spec = next(s for s in kvplan.load_model("nvidia/Nemotron-H-56B-Base-8K").layers
                if isinstance(s, RecurrentState))
    # d_inner = 256 heads × 64 = 16,384; conv channels d_inner + 2·8 groups·256 state
    assert (spec.mixer, spec.num_heads, spec.head_dim, spec.state_dim, spec.n_groups) == ("mamba2", 256, 64, 256, 8)
    assert spec.conv_channels == 16384 + 2 * 8 * 256 and spec.conv_kernel == 4


def test_gdn_state_shape_qwen3_next():
    spec = next(s for s in kvplan.load_model("Qwen/Qwen3-Next-80B-A3B-Thinking").layers
                if isinstance(s, RecurrentState))
    assert (spec.mixer, spec.conv_channels, spec.num_heads, spec.head_dim, spec.state_dim) == \
        ("gdn", 8192, 32, 128, 128)


# --- families without a bundled config (synthetic, see module docstring) -----------------------------
def test_synthetic_llama4_chunked_local_and_nope_global():
    cfg = {"model_type": "llama4", "text_config": {
        "model_type": "llama4_text", "num_hidden_layers": 48, "num_attention_heads": 40,
        "num_key_value_heads": 8, "head_dim": 128, "hidden_size": 5120, "attention_chunk_size": 8192,
        "no_rope_layers": []}, "torch_dtype": "bfloat16"}
    arch = parse_config(cfg)
    assert arch.kind_counts() == {"chunked": 36, "full": 12}
    assert type(arch.layers[3]) is FullAttention and isinstance(arch.layers[0], ChunkedLocal)
    assert arch.layers[0].chunk == 8192


def test_synthetic_gemma3n_shared_kv_layers_hold_nothing():
    cfg = {"model_type": "gemma3n_text", "num_hidden_layers": 35, "num_attention_heads": 8,
           "num_key_value_heads": 2, "head_dim": 256, "hidden_size": 2048, "sliding_window": 512,
           "num_kv_shared_layers": 15,
           "layer_types": (["sliding_attention"] * 4 + ["full_attention"]) * 7}
    arch = parse_config(cfg)
    assert sum(isinstance(s, NoCache) for s in arch.layers) == 15
    assert all(isinstance(s, NoCache) for s in arch.layers[20:])


def test_synthetic_falcon_h1_attention_and_mamba_in_every_layer():
    cfg = {"model_type": "falcon_h1", "num_hidden_layers": 4, "num_attention_heads": 8,
           "num_key_value_heads": 2, "head_dim": 64, "hidden_size": 1024, "mamba_d_ssm": 1536,
           "mamba_n_heads": 24, "mamba_d_head": 64, "mamba_d_state": 128, "mamba_n_groups": 1,
           "mamba_d_conv": 4, "mamba_expand": 2}
    arch = parse_config(cfg)
    assert arch.kind_counts() == {"full": 4, "state": 4}


def test_synthetic_jamba_period_offset():
    cfg = {"model_type": "jamba", "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "hidden_size": 4096, "attn_layer_period": 8, "attn_layer_offset": 4,
           "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2}
    arch = parse_config(cfg)
    assert [s.index for s in arch.layers if isinstance(s, FullAttention)] == [4, 12]
    state = next(s for s in arch.layers if isinstance(s, RecurrentState))
    assert (state.mixer, state.conv_channels, state.state_dim) == ("mamba1", 8192, 16)


def test_qwen_sliding_window_when_enabled():
    cfg = {"model_type": "qwen2", "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
           "hidden_size": 256, "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 2}
    assert [s.kind for s in parse_config(cfg).layers] == ["full", "full", "sliding", "sliding"]


# --- bad input: typed errors that name the field --------------------------------------------------------
LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
         "hidden_size": 512}

BAD = [
    ({**LLAMA, "num_key_value_heads": 3}, "num_key_value_heads"),  # does not divide 8 heads
    ({**LLAMA, "num_hidden_layers": 0}, "num_hidden_layers"),
    ({**LLAMA, "num_hidden_layers": -4}, "num_hidden_layers"),
    ({**LLAMA, "num_hidden_layers": "32"}, "num_hidden_layers"),  # wrong type
    ({**LLAMA, "num_hidden_layers": float("inf")}, "num_hidden_layers"),
    ({k: v for k, v in LLAMA.items() if k != "num_hidden_layers"}, "num_hidden_layers"),  # missing
    ({**LLAMA, "head_dim": -128}, "head_dim"),
    ({**LLAMA, "hidden_size": 500}, "head_dim"),  # 500 / 8 heads is not whole and no head_dim
    ({**LLAMA, "layer_types": ["full_attention"]}, "layer_types"),  # wrong length
    ({**LLAMA, "layer_types": ["full_attention", "quantum_attention"]}, "layer_types[1]"),
    ({**LLAMA, "layer_types": ["sliding_attention", "full_attention"]}, "sliding_window"),  # no window
    ({**LLAMA, "torch_dtype": "float12"}, "torch_dtype"),
    ({**LLAMA, "num_key_value_heads": 16}, "num_key_value_heads"),  # more KV heads than heads
    ({**LLAMA, "hybrid_override_pattern": "M?"}, "hybrid_override_pattern"),
    ({**LLAMA, "model_type": "qwen3_next", "layer_types": ["linear_attention", "full_attention"]},
     "linear_num_key_heads"),
]


@pytest.mark.parametrize("cfg,field", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_configs_raise_typed_error_naming_field(cfg, field):
    with pytest.raises(UnsupportedConfigError) as err:
        parse_config(cfg)
    assert err.value.field == field
    assert isinstance(err.value, ValueError) and field in str(err.value)


@pytest.mark.parametrize("text", ["", "[1, 2]", "{not json", '"a string"'])
def test_malformed_json_is_a_typed_error(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(UnsupportedConfigError):
        kvplan.load_model(path)


def test_config_path_and_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    assert kvplan.load_model(tmp_path).num_layers == 2
    assert kvplan.load_model(tmp_path / "config.json").num_layers == 2


def test_unknown_model_suggests_close_bundled_ids():
    with pytest.raises(kvplan.UnknownModelError) as err:
        kvplan.load_model("meta-llama/Llama-3.1-8b")
    assert "meta-llama/Llama-3.1-8B" in err.value.suggestions
    assert isinstance(err.value, KeyError)


def test_auto_map_is_only_data():
    arch = parse_config({**LLAMA, "auto_map": {"AutoConfig": "evil.Config"}, "trust_remote_code": True})
    assert arch.num_layers == 2
