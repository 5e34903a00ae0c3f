"""Weights: exact parameter counts against published sizes, and per-GPU bytes against vLLM/SGLang logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kvplan
from kvplan.errors import InvalidInputError, UnsupportedDtypeError
from kvplan.units import GiB
from kvplan.weights import param_counts, resolve_weights_dtype, weights_bytes

GOLDEN = Path(__file__).parent / "golden"
HF_API = "HF API safetensors.total via tests/golden/reference_figures.json"

# (bundled model, published parameter count, source). Exact.
EXACT_PARAMS = [
    ("meta-llama/Llama-3.1-8B", 8_030_261_248, HF_API + "; Ollama docs/api.md general.parameter_count"),
    ("meta-llama/Llama-3.1-70B", 70_553_706_496, HF_API),
    ("meta-llama/Llama-3.1-405B", 405_853_388_800, HF_API),
    ("Qwen/Qwen2.5-7B", 7_615_616_512, "reference_figures.json (Qwen2.5-7B-Instruct, same shape)"),
    ("Qwen/Qwen2.5-32B", 32_763_876_352, "reference_figures.json (Qwen2.5-32B-Instruct)"),
    ("Qwen/Qwen2.5-72B", 72_706_203_648, "reference_figures.json (Qwen2.5-72B-Instruct)"),
    ("Qwen/Qwen2.5-3B", 3_085_938_688, "reference_figures.json (Qwen2.5-3B-Instruct, tied)"),
    ("Qwen/Qwen2.5-1.5B", 1_543_714_304, "reference_figures.json (Qwen2.5-1.5B-Instruct, tied)"),
    ("mistralai/Mistral-7B-v0.1", 7_241_732_096, "Ollama show: general.parameter_count (reference_figures.json)"),
    ("google/gemma-2-9b", 9_241_705_984, "HF model page google/gemma-2-9b: 9,241,705,984 params (tied, 4 norms/layer)"),
    ("openai-community/gpt2", 124_439_808, "HF model page openai-community/gpt2: 124,439,808 params"),
    ("state-spaces/mamba-130m-hf", 129_135_360, "HF model page state-spaces/mamba-130m-hf: 129,135,360 params"),
]

# Checkpoints that store extra tensors the model does not allocate twice.
STORED_EXTRAS = [
    # Llama-2 checkpoints keep rotary_emb.inv_freq buffers: head_dim/2 = 64 values per layer.
    ("meta-llama/Llama-2-7b-hf", 6_738_417_664, lambda a: a.num_layers * 64, HF_API),
    ("meta-llama/Llama-2-13b-hf", 13_015_866_880, lambda a: a.num_layers * 64, HF_API),
    ("meta-llama/Llama-2-70b-hf", 68_976_653_312, lambda a: a.num_layers * 64, HF_API),
    # Qwen3-0.6B ties embeddings but its safetensors also stores lm_head.weight (vocab × hidden).
    ("Qwen/Qwen3-0.6B", 751_632_384, lambda a: a.weight_dims.vocab_size * a.weight_dims.hidden_size,
     "llm-d-benchmark capacity_planner_test.py (HF API safetensors total)"),
]

# (model, published total, tolerance, source): rounded published figures.
ROUNDED_PARAMS = [
    ("deepseek-ai/DeepSeek-V3", 671e9, 0.001, "DeepSeek-V3 README: 671B main model (685B with 14B MTP)"),
    ("openai/gpt-oss-120b", 116.83e9, 0.001, "gpt-oss model card: 116.83B total parameters"),
    ("openai/gpt-oss-20b", 20.91e9, 0.001, "gpt-oss model card: 20.91B total parameters"),
    ("mistralai/Mixtral-8x7B-v0.1", 46.7e9, 0.002, "Mixtral paper: 46.7B total, 12.9B active"),
    ("Qwen/Qwen3-30B-A3B", 30.5e9, 0.002, "Qwen3-30B-A3B model card: 30.5B total, 3.3B activated"),
    ("Qwen/Qwen3-235B-A22B", 235e9, 0.002, "Qwen3-235B-A22B model card: 235B total, 22B activated"),
    ("google/gemma-2-27b-it", 27.227e9, 0.001, "HF model page google/gemma-2-27b-it: 27.2B"),
    ("moonshotai/Kimi-K2-Instruct", 1.026e12, 0.002, "Kimi-K2 README: 1T total (1.026T), 32B activated"),
    # routed experts + one shared expert per layer + vision tower: 108.61B
    ("unsloth/Llama-4-Scout-17B-16E-Instruct-unsloth", 109e9, 0.005, "Llama 4 model card: Scout 109B total"),
]


@pytest.mark.parametrize("model,expected,source", EXACT_PARAMS)
def test_param_counts_exact(model, expected, source):
    assert param_counts(kvplan.load_model(model)).total == expected, source


@pytest.mark.parametrize("model,stored,extra,source", STORED_EXTRAS)
def test_param_counts_vs_stored_checkpoint(model, stored, extra, source):
    arch = kvplan.load_model(model)
    assert param_counts(arch).total + extra(arch) == stored, source


@pytest.mark.parametrize("model,expected,tol,source", ROUNDED_PARAMS)
def test_param_counts_rounded(model, expected, tol, source):
    assert abs(param_counts(kvplan.load_model(model)).total / expected - 1) < tol, source


def test_moe_active_and_mtp():
    v3 = param_counts(kvplan.load_model("deepseek-ai/DeepSeek-V3"))
    assert abs(v3.active / 37e9 - 1) < 0.02  # README: 37B activated
    assert abs((v3.total + v3.mtp) / 685e9 - 1) < 0.002  # README: 685B on the Hub incl. the MTP module
    mixtral = param_counts(kvplan.load_model("mistralai/Mixtral-8x7B-v0.1"))
    assert abs(mixtral.active / 12.9e9 - 1) < 0.01
    assert v3.total == (v3.embedding + v3.lm_head + v3.attention + v3.mlp + v3.experts + v3.shared_experts
                        + v3.router + v3.state + v3.norms + v3.vision)


def test_llama4_moe_layers_and_dense_mlp():
    """Llama4TextConfig: routed experts on every interleave_moe_layer_step-th layer (Maverick: 2), one
    shared expert of intermediate_size beside them, and dense layers of intermediate_size_mlp."""
    text = {"model_type": "llama4_text", "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 8, "hidden_size": 32, "intermediate_size": 16,
            "intermediate_size_mlp": 64, "num_local_experts": 8, "interleave_moe_layer_step": 2,
            "vocab_size": 100, "attention_chunk_size": 16}
    p = param_counts(kvplan.parse_config(text))
    assert p.experts == 2 * 8 * 3 * 16 * 32  # layers 1 and 3
    assert p.shared_experts == 2 * 3 * 16 * 32
    assert p.mlp == 2 * 3 * 64 * 32  # layers 0 and 2 are dense
    listed = param_counts(kvplan.parse_config({**text, "moe_layers": [3]}))
    assert listed.experts == 8 * 3 * 16 * 32 and listed.mlp == 3 * 3 * 64 * 32
    with pytest.raises(kvplan.UnsupportedConfigError, match="moe_layers"):
        kvplan.parse_config({**text, "moe_layers": [4]})


def test_tied_embeddings_counted_once():
    tied = param_counts(kvplan.load_model("Qwen/Qwen2.5-3B"))
    assert tied.lm_head == 0 and tied.embedding == 151936 * 2048
    untied = param_counts(kvplan.load_model("Qwen/Qwen2.5-7B"))
    assert untied.lm_head == untied.embedding


def test_vision_tower_counted_when_described():
    vl = param_counts(kvplan.load_model("Qwen/Qwen2.5-VL-7B-Instruct"))
    assert vl.vision > 0
    # Qwen2.5-VL-7B-Instruct: 8.29B in all per the HF page; the ViT estimate is approximate.
    assert abs(vl.total / 8.29e9 - 1) < 0.03


def _llama2_with_vocab(vocab: int) -> kvplan.ModelArch:
    config = json.loads((Path(kvplan.registry.specs_dir()) / "meta-llama--Llama-2-7b-hf" / "config.json").read_text())
    config["vocab_size"] = vocab
    return kvplan.parse_config(config, "codellama/CodeLlama-7b-hf")


def _golden_logs() -> dict:
    return {row["id"]: row for row in json.loads((GOLDEN / "startup_logs.json").read_text())}


# (log id, model (bundled id or arch factory), weights dtype, tp, pp, logged GiB, tolerance, note).
# bf16 rows must be within 1.5 % (the bar); quantized rows are looser and say why.
LOGGED_WEIGHTS = [
    ("vllm-llama31-8b-instruct-h100-tp1-16k-v0190", "meta-llama/Llama-3.1-8B-Instruct", "auto", 1, 1, 14.99, 0.015, ""),
    ("vllm-meta-llama3-8b-tp1-80gb-pr10511", "meta-llama/Meta-Llama-3-8B", "auto", 1, 1, 14.96, 0.015, ""),
    ("vllm-gemma2-9b-it-h100-tp1-8k-v0190", "google/gemma-2-9b", "auto", 1, 1, 17.22, 0.015, "fp32 config, served bf16"),
    ("vllm-gemma2-27b-it-h100-tp1-8k-v0190", "google/gemma-2-27b-it", "auto", 1, 1, 50.72, 0.015, ""),
    ("vllm-codellama-7b-h100-tp1-8k-v0190", "codellama", "auto", 1, 1, 12.56, 0.015, "Llama-2-7B shape, vocab 32016"),
    ("vllm-qwen25-7b-instruct-h100-tp1-8k-v0190-report", "Qwen/Qwen2.5-7B", "auto", 1, 1, 14.25, 0.015, ""),
    ("vllm-qwen3-14b-h100-tp1-8k-version-sweep-report", "Qwen/Qwen3-14B", "auto", 1, 1, 27.52, 0.015, ""),
    ("vllm-qwen3-32b-h100-tp1-16k-llmd-bench-report", "Qwen/Qwen3-32B", "auto", 1, 1, 61.03, 0.015, ""),
    ("vllm-qwen3-32b-h100-tp2-16k-llmd-bench-report", "Qwen/Qwen3-32B", "auto", 2, 1, 30.59, 0.015, ""),
    ("vllm-llama31-8b-instruct-h100-tp-pp-sweep-v0190-report/tp2", "meta-llama/Llama-3.1-8B-Instruct", "auto", 2, 1, 7.51, 0.015, ""),
    ("vllm-llama31-8b-instruct-h100-tp-pp-sweep-v0190-report/tp4", "meta-llama/Llama-3.1-8B-Instruct", "auto", 4, 1, 3.77, 0.015, ""),
    ("vllm-llama31-8b-instruct-h100-tp-pp-sweep-v0190-report/pp2", "meta-llama/Llama-3.1-8B-Instruct", "auto", 1, 2, 7.51, 0.015, ""),
    ("vllm-llama31-8b-instruct-h100-tp-pp-sweep-v0190-report/pp4", "meta-llama/Llama-3.1-8B-Instruct", "auto", 1, 4, 4.26, 0.015, ""),
    ("vllm-llama33-70b-instruct-4xh100nvl-tp4-lora", "meta-llama/Llama-3.3-70B-Instruct", "auto", 4, 1, 32.95, 0.015, ""),
    ("vllm-r1-distill-qwen-14b-2x4090-tp2", "Qwen/Qwen2.5-14B", "auto", 2, 1, 13.9476, 0.015, "R1-Distill-Qwen-14B = Qwen2.5-14B shape"),
    ("sglang-llama31-8b-instruct-hopper-tp1-fa3-pr4760", "meta-llama/Llama-3.1-8B-Instruct", "auto", 1, 1, 15.11, 0.015, "SGLang"),
    # SGLang's "mem usage" over-reads by ~0.3 GiB here (allocator/NCCL buffers during load).
    ("sglang-qwq-32b-4xl4-tp4", "Qwen/Qwen2.5-32B", "auto", 4, 1, 15.54, 0.025, "SGLang, QwQ-32B = Qwen2.5-32B shape"),
    # Quantized: runtime fp8 and W8A8 int8 keep embeddings / lm_head in bf16.
    ("vllm-llama31-8b-instruct-h100-tp-pp-sweep-v0190-report/fp8", "meta-llama/Llama-3.1-8B-Instruct", "fp8", 1, 1, 8.49, 0.015, ""),
    ("vllm-llama31-70b-w8a8-tp1-pr12569", "meta-llama/Llama-3.1-70B", "int8", 1, 1, 67.7229, 0.015, ""),
    ("vllm-qwen25-7b-w8a8-h100-tp1-8k-v0190", "Qwen/Qwen2.5-7B", "int8", 1, 1, 8.14, 0.015, ""),
]


def _arch_for(model: str) -> kvplan.ModelArch:
    if model == "codellama":
        return _llama2_with_vocab(32016)
    return kvplan.load_model(model)


@pytest.mark.parametrize("log_id,model,dtype,tp,pp,logged_gib,tol,note", LOGGED_WEIGHTS)
def test_weights_vs_logged_model_loading(log_id, model, dtype, tp, pp, logged_gib, tol, note):
    logs = _golden_logs()
    row = logs[log_id.split("/")[0]]
    assert row["source"].startswith("https://")
    got = weights_bytes(_arch_for(model), dtype, tp, pp) / GiB
    assert abs(got / logged_gib - 1) < tol, f"{got:.3f} GiB vs logged {logged_gib} ({row['source']}) {note}"


# gpt-oss mxfp4: vLLM pads each expert's intermediate 2880 -> 3072 (expert_pad=256).
@pytest.mark.parametrize("model,tp,logged_gib,tol,source", [
    ("openai/gpt-oss-120b", 1, 64.38, 0.01, "vllm#33155 v0.14.1 and llm-d-benchmark (64.38 GiB)"),
    ("openai/gpt-oss-20b", 1, 13.47, 0.01, "llm-d-benchmark empirical-vllm-memory-results.md"),
    ("openai/gpt-oss-20b", 2, 7.01, 0.05, "llm-d-planner v0.19.0 TP=2 log (per rank)"),
])
def test_mxfp4_checkpoint_weights(model, tp, logged_gib, tol, source):
    arch = kvplan.load_model(model)
    assert arch.weight_dims.quant_method == "mxfp4"
    got = weights_bytes(arch, "auto", tp, expert_pad=256) / GiB
    assert abs(got / logged_gib - 1) < tol, source
    assert weights_bytes(arch, "auto", tp) < weights_bytes(arch, "auto", tp, expert_pad=256)
    assert weights_bytes(arch, "bf16", tp) > 3 * weights_bytes(arch, "auto", tp)


def test_fp8_block_checkpoint_deepseek_v3():
    arch = kvplan.load_model("deepseek-ai/DeepSeek-V3")
    wd = arch.weight_dims
    assert (wd.quant_method, wd.quant_bits, wd.quant_block) == ("fp8", 8, (128, 128))
    # DeepSeek-V3's fp8 checkpoint is ~642 GiB on disk incl. 14B MTP; without MTP about 1 byte/param.
    got = weights_bytes(arch)
    pc = param_counts(arch)
    assert pc.total < got < pc.total * 1.02


def test_int4_and_dtype_names():
    arch = kvplan.load_model("meta-llama/Llama-3.1-8B")
    int4 = weights_bytes(arch, "int4")
    assert 5.3 * GiB < int4 < 5.8 * GiB  # AWQ Llama-3.1-8B checkpoints are ~5.7 GB with fp16 embeddings
    assert weights_bytes(arch, "awq") == weights_bytes(arch, "gptq") == int4
    assert weights_bytes(arch, "fp16") == weights_bytes(arch, "bf16") == weights_bytes(arch)
    assert resolve_weights_dtype(arch, "auto") == ("bf16", "bf16")
    with pytest.raises(UnsupportedDtypeError):
        weights_bytes(arch, "q3_k")
    with pytest.raises(InvalidInputError):
        weights_bytes(arch, tp=0)


def test_tp_replicates_kv_projections_past_kv_heads():
    arch = kvplan.load_model("meta-llama/Llama-3.1-8B")  # 8 KV heads
    w8, w16 = weights_bytes(arch, tp=8), weights_bytes(arch, tp=16)
    assert w16 > w8 // 2  # K/V projections stop shrinking at tp > 8


def test_tensor_listing_is_cached_per_model_and_unchanged():
    # Issue 16: the capacity chart plans every context; the tensor listing is built once per model.
    from kvplan import weights

    for model_id in ("meta-llama/Llama-3.1-8B", "deepseek-ai/DeepSeek-V3", "openai/gpt-oss-20b"):
        arch = kvplan.load_model(model_id)
        first = weights._tensors(arch)
        assert weights._tensors(arch) is first and first == weights._list_tensors(arch)
        assert weights.weights_bytes(arch) == weights.weights_bytes(arch)
