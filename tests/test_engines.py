"""Engine rules beyond the worked examples: dtype support, TP/PP layout, block rounding, invariants."""

from __future__ import annotations

import pytest

import kvplan
from kvplan import InvalidInputError, UnsupportedDtypeError
from kvplan.engines import ENGINE_NAMES, get_engine
from kvplan.engines.common import pp_stages

MODELS = ["meta-llama/Llama-3.1-8B", "google/gemma-3-27b-it", "deepseek-ai/DeepSeek-V3",
          "Qwen/Qwen3-Next-80B-A3B-Thinking", "nvidia/Nemotron-H-56B-Base-8K", "openai/gpt-oss-120b",
          "ai21labs/AI21-Jamba-1.5-Mini", "MiniMaxAI/MiniMax-M1-80k", "state-spaces/mamba-130m-hf",
          "unsloth/Llama-4-Scout-17B-16E-Instruct-unsloth", "ibm-granite/granite-4.0-h-1b"]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("model", MODELS)
def test_breakdown_sums_and_growth(engine, model):
    small = kvplan.kv_cache(model, context_len=1000, engine=engine)
    big = kvplan.kv_cache(model, context_len=100_000, engine=engine)
    for est in (small, big):
        assert est.kv_bytes == sum(r.bytes for r in est.breakdown)
        assert est.kv_bytes >= (est.k_bytes or 0) + (est.v_bytes or 0) + est.state_bytes
        assert isinstance(est.kv_bytes, int)
    assert big.kv_bytes >= small.kv_bytes
    two = kvplan.kv_cache(model, context_len=1000, engine=engine, batch=2)
    if engine != "llama.cpp":  # llama.cpp pads the whole -c, not each sequence
        assert two.kv_bytes == 2 * small.kv_bytes


@pytest.mark.parametrize("engine,dtype", [("vllm", "q4_0"), ("vllm", "int8"), ("sglang", "int4"),
                                          ("llama.cpp", "fp8"), ("transformers", "fp8"), ("trtllm", "q8_0")])
def test_engines_reject_dtypes_they_cannot_store(engine, dtype):
    with pytest.raises(UnsupportedDtypeError, match=engine):
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=1024, engine=engine, kv_dtype=dtype)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "naive"])
def test_fp8_halves_bf16(engine):
    bf16 = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=8192, engine=engine)
    fp8 = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=8192, engine=engine, kv_dtype="fp8")
    assert bf16.kv_bytes == 2 * fp8.kv_bytes


def test_auto_dtype_per_engine_for_float32_config():
    # gemma-2-2b ships torch_dtype float32: serving engines run it in bf16, HF keeps fp32, llama.cpp f16
    got = {e: kvplan.kv_cache("google/gemma-2-2b", context_len=16, engine=e).kv_dtype for e in ENGINE_NAMES}
    assert got == {"vllm": "bf16", "sglang": "bf16", "llama.cpp": "fp16", "transformers": "fp32",
                   "trtllm": "bf16", "naive": "bf16"}


def test_vllm_pp_split_matches_get_pp_indices():
    arch = kvplan.load_model("deepseek-ai/DeepSeek-V3")  # 61 layers over 4 stages: 15, 16?, ...
    sizes = [len(s) for s in pp_stages(arch, 4)]
    assert sizes == [15, 15, 16, 15]  # the remainder goes to the stages before the last
    est = kvplan.kv_cache(arch, context_len=64, pp=4)
    assert est.kv_bytes == 16 * 73_728  # most-loaded stage
    assert est.total_bytes == 61 * 73_728


def test_vllm_block_rounding_boundaries():
    # Llama-3.1-8B: 2 MiB per 16-token block; 16 tokens fit one block, 17 need two
    per_block = 2 * 2**20
    assert kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=16).kv_bytes == per_block
    assert kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=17).kv_bytes == 2 * per_block
    cap = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=8192 * per_block, max_model_len=131072)
    assert cap.max_sequences == 0 and cap.max_concurrency == 1.0  # block 0 is the null block
    cap = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory=8193 * per_block, max_model_len=131072)
    assert cap.max_sequences == 1


def test_llamacpp_ctx_padding_and_streams():
    one = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=65535, engine="llama.cpp")
    assert one.breakdown[0].tokens_per_seq == 65536  # -c 65535 pads to 65536 (addendum I.5)
    split = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=10000, engine="llama.cpp", parallel=3)
    assert split.breakdown[0].tokens_per_seq == 3584  # pad(pad(10000)/3 = 3413, 256), 3 streams
    assert split.kv_bytes == 3 * 3584 * 131072


def test_llamacpp_quantized_rows_need_whole_blocks():
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 3, "num_key_value_heads": 3,
           "head_dim": 10, "hidden_size": 30}
    with pytest.raises(InvalidInputError, match="multiple of 32"):
        kvplan.kv_cache(cfg, context_len=256, engine="llama.cpp", kv_dtype="q8_0")


def test_llamacpp_recurrent_state_is_f32_per_sequence():
    a = kvplan.kv_cache("state-spaces/mamba-130m-hf", context_len=1024, engine="llama.cpp", kv_dtype="q8_0")
    b = kvplan.kv_cache("state-spaces/mamba-130m-hf", context_len=1024, engine="llama.cpp", parallel=4)
    # mamba-130m: d_inner 1536, d_conv 4, d_state 16: (3·1536 + 16·1536) · 4 B per layer per sequence
    assert a.kv_bytes == 24 * (3 * 1536 + 1536 * 16) * 4
    assert b.kv_bytes == 4 * a.kv_bytes


def test_unknown_engine_and_options():
    with pytest.raises(InvalidInputError, match="engine"):
        get_engine("tgi")
    with pytest.raises(InvalidInputError, match="ubatch"):
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=8, engine="vllm", ubatch=512)


def test_transformers_single_device_only():
    with pytest.raises(InvalidInputError, match="tp"):
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=8, engine="transformers", tp=2)


def test_naive_ignores_everything_it_should_not():
    naive = kvplan.kv_cache("google/gemma-3-27b-it", context_len=131072, engine="naive")
    real = kvplan.kv_cache("google/gemma-3-27b-it", context_len=131072)
    assert naive.kv_bytes == 62 * 2**30 and real.kv_bytes < naive.kv_bytes / 3


# --- chunked local attention: Llama-4-Scout (bundled; 36 chunked + 12 global layers, 8 KV heads × 128,
# attention_chunk_size 8192; bf16 K+V = 4,096 B per layer per token). Expected values are worked by hand
# from ENGINE_KV_SPEC.md §A (ChunkedLocalAttentionSpec, grouping, max concurrency) and the llama.cpp
# iSWA rule (chunked layers use the SWA cache with n_swa = attention_chunk_size).
SCOUT = "unsloth/Llama-4-Scout-17B-16E-Instruct-unsloth"
LAYER_TOKEN = 8 * 128 * 2 * 2


def _rows(est):
    return {r.kind: (r.num_layers, r.tokens_per_seq, r.bytes) for r in est.breakdown}


@pytest.mark.parametrize("async_scheduling,chunk_tokens", [(True, 8192 + 2 * 8192), (False, 8192 + 8192)])
def test_vllm_chunked_layers_hold_chunk_plus_in_flight_tokens(async_scheduling, chunk_tokens):
    # cdiv(min(chunk + in-flight, max_model_len), 16) blocks; in-flight = 2 batches × 8192 with async
    est = kvplan.kv_cache(SCOUT, context_len=131072, engine="vllm", async_scheduling=async_scheduling)
    assert _rows(est) == {"chunked": (36, chunk_tokens, 36 * chunk_tokens * LAYER_TOKEN),
                          "full": (12, 131072, 12 * 131072 * LAYER_TOKEN)}
    short = kvplan.kv_cache(SCOUT, context_len=16384, engine="vllm")  # min(...) caps at max_model_len
    assert _rows(short)["chunked"][1] == 16384


def test_vllm_chunked_capacity_groups_and_concurrency():
    cap = kvplan.capacity(SCOUT, engine="vllm", kv_memory="40GiB", max_model_len=131072)
    # 48 layers → 4 groups of 12 (3 chunked, 1 full); a block holds 12 layers × 16 tokens × 4,096 B
    assert cap.bytes_per_block == 12 * 16 * LAYER_TOKEN == 786_432
    assert cap.num_blocks == 40 * 2**30 // 786_432 == 54_613
    # per request: 3 chunked groups × cdiv(24,576, 16) + 1 full group × cdiv(131,072, 16)
    assert cap.blocks_per_request == 3 * 1536 + 8192 == 12_800
    assert cap.max_concurrency == 54_613 / 12_800
    assert cap.kv_tokens == int(54_613 / 12_800 * 131072) == 559_237


@pytest.mark.parametrize("kwargs,cells,streams", [
    ({}, 8192 + 512, 1),  # pad256(n_swa + n_ubatch)
    ({"ubatch": 2048}, 8192 + 2048, 1),
    ({"parallel": 4}, 8192 + 512, 4),  # one SWA stream per sequence
    ({"parallel": 4, "kv_unified": True}, 4 * 8192 + 512, 1),  # unified: n_swa · n_seq_max + n_ubatch
    ({"swa_full": True}, 131072, 1),
])
def test_llamacpp_chunked_layers_use_the_swa_cache(kwargs, cells, streams):
    est = kvplan.kv_cache(SCOUT, context_len=131072, engine="llama.cpp", **kwargs)
    rows = _rows(est)
    assert rows["chunked"] == (36, cells, 36 * cells * streams * LAYER_TOKEN)
    assert rows["full"] == (12, 131072 // streams, 12 * 131072 * LAYER_TOKEN)


def test_chunked_tp_split_and_naive_gap():
    per_gpu = [kvplan.kv_cache(SCOUT, context_len=131072, tp=t).kv_bytes for t in (1, 2, 4, 8)]
    assert per_gpu == [per_gpu[0] // t for t in (1, 2, 4, 8)]  # 8 KV heads split evenly up to TP 8
    naive = kvplan.kv_cache(SCOUT, context_len=131072, engine="naive").kv_bytes
    assert naive == 48 * 131072 * LAYER_TOKEN  # the textbook figure ignores the chunked layers' bound
    assert naive > 3 * kvplan.kv_cache(SCOUT, context_len=131072, engine="sglang").kv_bytes


def test_sglang_dp_attention_splits_kv_heads_tp_over_dp_ways():
    one = kvplan.kv_cache("meta-llama/Llama-3.1-70B", engine="sglang", context_len=4096, tp=1)
    dp8 = kvplan.kv_cache("meta-llama/Llama-3.1-70B", engine="sglang", context_len=4096, tp=8, dp_attention=8)
    dp4 = kvplan.kv_cache("meta-llama/Llama-3.1-70B", engine="sglang", context_len=4096, tp=8, dp_attention=4)
    assert dp8.kv_bytes == one.kv_bytes and dp4.kv_bytes == one.kv_bytes // 2  # 8 KV heads over 1 / 2 ranks
    with pytest.raises(InvalidInputError, match="dp_attention"):
        kvplan.kv_cache("meta-llama/Llama-3.1-70B", engine="sglang", context_len=4096, tp=8, dp_attention=3)


def _check_tp_every_layer(arch, tp: int, split_state: bool) -> None:
    """check_tp on each layer alone, in layer order: the first layer that fails raises, as checking every
    layer did before check_tp looked at one of each shape (one layer is its own only shape)."""
    import dataclasses

    from kvplan.engines.common import check_tp

    for spec in arch.layers:
        check_tp(dataclasses.replace(arch, layers=(spec,)), tp, split_state=split_state)


def _varied(model: str):
    """A bundled model whose layers' KV heads (full attention) and state heads vary along the stack, as
    NAS models' do (no bundled config has that): every layer's shape counts for check_tp."""
    import dataclasses

    from kvplan.layers import FullAttention, RecurrentState

    arch = kvplan.load_model(model)
    kv, state = (8, 4, 8, 6, 1, 3), (16, 8, 12, 5)
    layers = tuple(dataclasses.replace(s, num_kv_heads=kv[i % len(kv)]) if isinstance(s, FullAttention) else
                   dataclasses.replace(s, num_heads=state[i % len(state)]) if isinstance(s, RecurrentState) else s
                   for i, s in enumerate(arch.layers))
    return dataclasses.replace(arch, model_id=arch.model_id + " (varied heads)", layers=layers)


@pytest.mark.parametrize("model", [*kvplan.list_models(), "varied:meta-llama/Llama-3.1-8B",
                                   "varied:ai21labs/AI21-Jamba-1.5-Mini", "varied:Qwen/Qwen3.5-9B"])
def test_check_tp_looks_at_one_layer_of_each_shape_with_the_same_answers(model):
    """check_tp checks the first layer of each (class, KV heads, state heads) only: every bundled model,
    and models whose head counts vary by layer, at every TP get the same verdict and the same message as
    checking every layer."""
    from kvplan.engines.common import check_tp

    arch = _varied(model.removeprefix("varied:")) if model.startswith("varied:") else kvplan.load_model(model)
    for tp in (2, 3, 4, 5, 6, 8, 12, 16, 32, 64, 128):
        for split_state in (True, False):
            want = got = None
            try:
                _check_tp_every_layer(arch, tp, split_state)
            except InvalidInputError as err:
                want = str(err)
            try:
                check_tp(arch, tp, split_state=split_state)
            except InvalidInputError as err:
                got = str(err)
            assert got == want, (tp, split_state)
