"""Hostile input, everywhere: property-based tests over the config parser and every public entry point.

Random and malformed configs (mutations of real bundled configs and free-form JSON), negative / zero /
huge / NaN / Infinity values, wrong types, deeply nested `text_config`, unknown layer types,
inconsistent head counts, contexts up to 10M tokens, batches up to 10^9, random engines, dtypes,
parallelism and engine options. Every call must end in a valid result or a `KvplanError`, never
another exception, a hang (SIGALRM guard + hypothesis deadline) or an overflow. The CLI, given the
same corpus, prints one line on stderr and exits non-zero.

`TRIED` counts the inputs; `test_zz_report` prints the total (run with `-s` to see it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvplan
from kvplan.cli import main
from kvplan.errors import KvplanError
from kvplan.gguf_file import arch_from_gguf_metadata
from kvplan.registry import bundled_config, parse_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_files  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRIED: Counter = Counter()
OUTCOMES: Counter = Counter()
FAST = settings(max_examples=int(os.environ.get("KVPLAN_HOSTILE_EXAMPLES", "400")), deadline=5000,
                suppress_health_check=list(HealthCheck), derandomize=True, database=None)


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a test that runs for more than 120 s instead of hanging the suite."""
    def on_alarm(signum, frame):
        raise TimeoutError("hostile input hung")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---- strategies ----------------------------------------------------------------------------------

HOSTILE_NUMBERS = [0, -1, 1, 2, 3, 7, -(2**63), 2**31, 2**53 + 1, 2**63, 2**64, 10**12, 10**30, 10**400,
                   0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"), True, False]
WORDS = ["full_attention", "sliding_attention", "chunked_attention", "linear_attention", "mamba", "attention",
         "conv", "cross_attention", "moe", "", "NaN", "Infinity", "bfloat16", "float32", "float16", "int4",
         "auto", "LLLG", "M*-E", "llama", "gemma3", "deepseek_v3", "qwen3_next", "nemotron_h", "falcon_h1",
         "mamba2", "jamba", "gpt_oss", "llama4", "\x00", "\u202e", "a" * 300]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(HOSTILE_NUMBERS),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(WORDS))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=16)

CONFIG_KEYS = [
    "model_type", "num_hidden_layers", "n_layer", "num_layers", "num_attention_heads", "n_head",
    "num_key_value_heads", "n_head_kv", "num_kv_heads", "multi_query_group_num", "head_dim", "kv_channels",
    "v_head_dim", "hidden_size", "n_embd", "intermediate_size", "vocab_size", "max_position_embeddings",
    "torch_dtype", "dtype", "multi_query", "new_decoder_architecture", "sliding_window", "use_sliding_window",
    "max_window_layers", "sliding_window_pattern", "layer_types", "attention_chunk_size", "no_rope_layers",
    "num_kv_shared_layers", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "q_lora_rank",
    "hybrid_override_pattern", "layers_block_type", "attn_layer_period", "attn_layer_offset",
    "full_attention_interval", "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
    "linear_value_head_dim", "linear_conv_kernel_dim", "mamba_ssm_dtype", "conv_L_cache",
    "cross_attention_layers", "mamba_num_heads", "mamba_head_dim", "mamba_d_state", "mamba_n_groups",
    "mamba_d_conv", "mamba_expand", "mamba_d_ssm", "state_size", "num_heads", "conv_kernel", "expand",
    "n_groups", "num_local_experts", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
    "n_shared_experts", "first_k_dense_replace", "tie_word_embeddings", "attn_config", "auto_map",
    "text_config", "llm_config", "language_config", "thinker_config", "rope_scaling", "interleaved_sliding_window",
]

# Real configs of every family the parser knows, as mutation seeds.
SEED_IDS = ["meta-llama/Llama-3.1-8B", "google/gemma-3-1b-it", "google/gemma-2-9b", "deepseek-ai/DeepSeek-V3",
            "Qwen/Qwen3-Next-80B-A3B-Thinking", "nvidia/Nemotron-H-56B-Base-8K", "tiiuae/falcon-mamba-7b",
            "openai/gpt-oss-20b", "microsoft/Phi-3-mini-4k-instruct", "mistralai/Mixtral-8x7B-v0.1",
            "meta-llama/Llama-3.2-90B-Vision-Instruct", "LiquidAI/LFM2.5-VL-1.6B", "Qwen/Qwen3.5-9B",
            "tiiuae/falcon-180B", "openai-community/gpt2", "LGAI-EXAONE/EXAONE-4.0-32B", "THUDM/chatglm2-6b",
            "state-spaces/mamba-130m-hf", "Qwen/Qwen2.5-7B", "bigcode/gpt_bigcode-santacoder"]
SEEDS = {m: bundled_config(m) for m in SEED_IDS if m in kvplan.list_models()}


def _hostile_value(config_value):
    """Values aimed at one field: a wrong type, an absurd number, a list of the wrong length..."""
    return st.one_of(json_values, st.sampled_from(HOSTILE_NUMBERS), st.sampled_from(WORDS),
                     st.lists(st.sampled_from(WORDS + [0, 1, -1, 8]), max_size=8),
                     st.integers(min_value=-(2**70), max_value=2**70))


@st.composite
def configs(draw):
    """A real config with a few fields replaced, deleted, nested or duplicated."""
    seed = dict(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    text = seed
    if isinstance(seed.get("text_config"), dict) and draw(st.booleans()):
        text = seed["text_config"] = dict(seed["text_config"])
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), max_size=4)):
        if draw(st.integers(0, 3)) == 0:
            text.pop(key, None)
        else:
            text[key] = draw(_hostile_value(text.get(key)))
    layers = text.get("num_hidden_layers")
    if isinstance(layers, int) and 0 < layers < 200 and draw(st.integers(0, 4)) == 0:
        # a per-layer list of the right length with random (often unknown) entries
        key = draw(st.sampled_from(["layer_types", "num_key_value_heads", "no_rope_layers", "layers_block_type"]))
        text[key] = draw(st.lists(st.sampled_from(WORDS[:9] + [0, 1, 2, 4, 8, -1, 3]), min_size=layers,
                                  max_size=layers))
    depth = draw(st.integers(0, 3))
    for _ in range(depth):  # nested text_config wrappers, some with their own model_type
        seed = {"text_config": seed, **({"model_type": "wrapper"} if draw(st.booleans()) else {})}
    return seed


free_configs = st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=6), json_values, max_size=12)
any_config = st.one_of(configs(), configs(), free_configs)

contexts = st.one_of(st.integers(1, 10_000_000), st.integers(1, 10_000_000), st.integers(-10, 2**80),
                     st.sampled_from(["32k", "1M", "10M", "9.5M", "0", "-5", "1e309", "nan", "inf", "Infinity",
                                      "12 parsecs", "", " ", "1.5k", "0.1", "9" * 400, "1e9999999999", "1_0_0",
                                      "1,000", "٣", "32k\x00"]),
                     st.sampled_from(HOSTILE_NUMBERS), st.floats(allow_nan=True), st.text(max_size=6), st.none())
batches = st.one_of(st.integers(1, 10**9), st.integers(1, 64), st.integers(-5, 10**20),
                    st.sampled_from(HOSTILE_NUMBERS), st.floats(), st.text(max_size=4), st.none())
parallel = st.one_of(st.integers(1, 8), st.sampled_from([1, 2, 4, 8, 16, 64, 0, -1, 5, 3, 10**6]),
                     st.sampled_from(HOSTILE_NUMBERS), st.text(max_size=3))
engines = st.sampled_from(list(kvplan.ENGINE_NAMES) + ["llamacpp", "hf", "TRT-LLM", "vLLM ", "", "x", "naive"])
dtypes = st.sampled_from(["auto", "bf16", "fp16", "fp32", "fp8", "fp8_e4m3", "fp8_e5m2", "int8", "int4",
                          "nvfp4", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "float64", "", "AUTO",
                          "bfloat16", "fp8_e4m3fn", "nonsense"]) | st.none() | st.integers(-1, 4)
options = st.dictionaries(st.sampled_from(["block_size", "ubatch", "parallel", "swa_full", "kv_unified",
                                           "async_scheduling", "mamba_cache_mode", "page_size", "bogus"]),
                          st.one_of(st.integers(-2, 2**40), st.sampled_from(HOSTILE_NUMBERS), st.booleans(),
                                    st.text(max_size=4), st.none()), max_size=3)
models = st.one_of(st.sampled_from(sorted(kvplan.list_models())), any_config, any_config,
                   st.sampled_from(["", " ", "nope", "org/", "/", ".", "..", "~", "x" * 5000, "\x00", "a/b/c",
                                    "meta-llama/llama-3.1-8b", "model.json", "/nonexistent/config.json"]),
                   st.sampled_from([None, 3, 3.5, b"bytes", [], ["a"], object()]))


def _valid_estimate(est) -> None:
    assert isinstance(est.kv_bytes, int) and est.kv_bytes >= 0
    assert isinstance(est.total_bytes, int) and est.total_bytes >= est.kv_bytes
    assert sum(b.bytes for b in est.breakdown) == est.kv_bytes
    json.dumps(est.to_dict(), allow_nan=False)


def _valid_capacity(cap) -> None:
    assert isinstance(cap.kv_tokens, int) and cap.kv_tokens >= 0 and cap.max_sequences >= 0
    assert math.isfinite(cap.max_concurrency) and cap.max_concurrency >= 0
    json.dumps(cap.to_dict(), allow_nan=False)


def _outcome(kind: str, fn, check) -> str:
    TRIED[kind] += 1
    try:
        result = fn()
    except KvplanError as err:
        msg = str(err)
        assert msg and "\n" not in msg.strip() and "Traceback" not in msg, msg
        OUTCOMES["typed error"] += 1
        return "error"
    check(result)
    OUTCOMES["valid result"] += 1
    return "ok"


# ---- the parser ----------------------------------------------------------------------------------

@FAST
@given(config=any_config)
def test_parse_config_never_crashes(config):
    def check(arch):
        assert isinstance(arch, kvplan.ModelArch) and arch.num_layers >= 1
        assert all(s.index < arch.num_layers for s in arch.layers)
    _outcome("parse_config", lambda: kvplan.parse_config(config), check)


@FAST
@given(config=json_values)
def test_parse_config_any_json(config):
    _outcome("parse_config", lambda: kvplan.parse_config(config), lambda arch: None)


@FAST
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                      json_values.map(lambda v: json.dumps(v).encode())))
def test_parse_json_never_crashes(data):
    _outcome("parse_json", lambda: parse_json(data), lambda obj: None)


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deeply_nested_text_config(depth):
    text = '{"text_config": ' * depth + '{"model_type": "llama"}' + "}" * depth
    TRIED["nested"] += 1
    with pytest.raises(KvplanError):
        kvplan.parse_config(parse_json(text))
    nested: dict = {"num_hidden_layers": 2}
    for _ in range(min(depth, 5000)):
        nested = {"text_config": nested}
    TRIED["nested"] += 1
    try:
        kvplan.parse_config(nested)
    except KvplanError:
        pass


# ---- public entry points -------------------------------------------------------------------------

@FAST
@given(model=models, context=contexts, batch=batches, engine=engines, kv_dtype=dtypes, tp=parallel, pp=parallel)
def test_kv_cache_never_crashes(model, context, batch, engine, kv_dtype, tp, pp):
    _outcome("kv_cache", lambda: kvplan.kv_cache(model, context_len=context, batch=batch, engine=engine,
                                                 kv_dtype=kv_dtype, tp=tp, pp=pp), _valid_estimate)


@FAST
@given(model=st.sampled_from(sorted(kvplan.list_models())), context=st.integers(1, 10_000_000),
       batch=st.integers(1, 10**9), engine=st.sampled_from(kvplan.ENGINE_NAMES), tp=st.sampled_from([1, 2, 4, 8]),
       pp=st.sampled_from([1, 2, 4]), opts=options)
def test_kv_cache_valid_ranges_and_options(model, context, batch, engine, tp, pp, opts):
    _outcome("kv_cache", lambda: kvplan.kv_cache(model, context_len=context, batch=batch, engine=engine,
                                                 tp=tp, pp=pp, **opts), _valid_estimate)


@FAST
@given(model=models, kv_memory=st.one_of(st.integers(-5, 2**70), st.sampled_from(
           ["80GB", "20GiB", "0", "-1GB", "1e400GB", "nan", "1.5TiB", "", "9" * 100, "0.5B"]),
           st.sampled_from(HOSTILE_NUMBERS)),
       max_model_len=contexts, engine=engines, kv_dtype=dtypes, tp=parallel, pp=parallel)
def test_capacity_never_crashes(model, kv_memory, max_model_len, engine, kv_dtype, tp, pp):
    _outcome("capacity", lambda: kvplan.capacity(model, kv_memory=kv_memory, max_model_len=max_model_len,
                                                 engine=engine, kv_dtype=kv_dtype, tp=tp, pp=pp), _valid_capacity)


@FAST
@given(model=st.one_of(st.sampled_from(sorted(kvplan.list_models())), configs()),
       contexts_=st.lists(contexts, max_size=5), engine=engines, batch=batches)
def test_sweep_never_crashes(model, contexts_, engine, batch):
    def check(rows):
        for est in rows:
            _valid_estimate(est)
    _outcome("sweep", lambda: kvplan.sweep(model, context_lens=contexts_, engine=engine, batch=batch), check)

    def check_bytes(values):
        assert type(values) is list and len(values) == len(contexts_)
        assert all(type(x) is int and x >= 0 for x in values)
    _outcome("sweep_bytes", lambda: kvplan.sweep_bytes(model, context_lens=contexts_, engine=engine, batch=batch),
             check_bytes)


@FAST
@given(model=st.one_of(st.sampled_from(sorted(kvplan.list_models())), configs()),
       gpu=st.sampled_from(["H100", "A100-80GB", "H200", "L4", "RTX 4090", "nope", "", "B200"]),
       max_model_len=contexts, users=st.one_of(st.none(), st.integers(-2, 10**9), st.sampled_from(HOSTILE_NUMBERS)),
       num_gpus=st.sampled_from([1, 2, 8, 0, -1, 10**6]), engine=engines, tp=parallel)
def test_plan_never_crashes(model, gpu, max_model_len, users, num_gpus, engine, tp):
    from kvplan.planner import plan

    def check(p):
        json.dumps(p.to_dict(), allow_nan=True)
    _outcome("plan", lambda: plan(model, gpu=gpu, max_model_len=max_model_len, users=users, num_gpus=num_gpus,
                                  engine=engine, tp=tp), check)


GGUF_KEYS = ["block_count", "embedding_length", "attention.head_count", "attention.head_count_kv",
             "attention.key_length", "attention.value_length", "attention.sliding_window",
             "attention.sliding_window_pattern", "attention.kv_lora_rank", "attention.key_length_mla",
             "attention.value_length_mla", "rope.dimension_count", "ssm.conv_kernel", "ssm.state_size",
             "ssm.group_count", "ssm.inner_size", "ssm.time_step_rank", "full_attention_interval",
             "attention.shared_kv_layers", "context_length", "feed_forward_length", "shortconv.l_cache"]


@st.composite
def gguf_metadata(draw):
    arch = draw(st.sampled_from(["llama", "gemma2", "gemma3", "gemma3n", "deepseek2", "mamba", "mamba2", "jamba",
                                 "qwen3next", "nemotron_h", "falcon-h1", "lfm2", "llama4", "gpt-oss", "x"]))
    meta = {"general.architecture": draw(st.sampled_from([arch, arch, "", 3, None]))}
    n = draw(st.sampled_from([1, 2, 4, 6, 0, -1, 10**6, "4"]))
    meta[f"{arch}.block_count"] = n
    for key in draw(st.lists(st.sampled_from(GGUF_KEYS), max_size=10)):
        per_layer = isinstance(n, int) and 0 < n < 10
        meta[f"{arch}.{key}"] = draw(st.one_of(
            st.integers(-2, 2**41), st.sampled_from([0, 1, 2, 4, 8, 64, 128, 4096]),
            st.lists(st.sampled_from([0, 1, 2, 4, 8, True, False, -1]), min_size=n if per_layer else 0,
                     max_size=n if per_layer else 3),
            st.sampled_from(HOSTILE_NUMBERS), st.text(max_size=3)))
    return meta


@FAST
@given(meta=gguf_metadata())
def test_gguf_metadata_never_crashes(meta):
    def check(arch):
        kvplan.kv_cache(arch, context_len=4096, engine="llama.cpp")  # the arch must be usable, too
    _outcome("gguf", lambda: check(arch_from_gguf_metadata(meta)) or True, lambda r: None)


# ---- the CLI -------------------------------------------------------------------------------------

_TMP = Path(tempfile.mkdtemp(prefix="kvplan-hostile-"))
BAD_FILES = {
    "not-json.json": b"{'model_type': 'llama'",
    "list.json": b"[1, 2]",
    "nan.json": b'{"num_hidden_layers": NaN, "num_attention_heads": 8, "hidden_size": 64}',
    "inf.json": b'{"num_hidden_layers": Infinity, "num_attention_heads": 8, "hidden_size": 64}',
    "neg.json": b'{"num_hidden_layers": -32, "num_attention_heads": 8, "hidden_size": 64}',
    "zero-heads.json": b'{"num_hidden_layers": 2, "num_attention_heads": 0, "hidden_size": 64}',
    "bad-kv.json": b'{"num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 3, "hidden_size": 64}',
    "unknown-layer.json": b'{"num_hidden_layers": 2, "num_attention_heads": 8, "hidden_size": 64, '
                          b'"layer_types": ["full_attention", "quantum_attention"]}',
    "huge-layers.json": b'{"num_hidden_layers": 1e309, "num_attention_heads": 8, "hidden_size": 64}',
    "string-layers.json": b'{"num_hidden_layers": "32", "num_attention_heads": 8, "hidden_size": 64}',
    "deep.json": b'{"text_config": ' * 50_000 + b"{}" + b"}" * 50_000,
    "empty.json": b"",
    "binary.json": bytes(range(256)),
    "bad.gguf": b"GGUF\x03\x00\x00\x00" + b"\xff" * 32,
}
for _name, _data in BAD_FILES.items():
    (_TMP / _name).write_bytes(_data)
(_TMP / "empty-folder").mkdir(exist_ok=True)

GOOD = "meta-llama/Llama-3.1-8B"
CLI_CORPUS = [[ "size", str(_TMP / name), "--context", "8k"] for name in BAD_FILES] + [
    ["size", str(_TMP / "empty-folder"), "--context", "8k"],
    ["size", "no-such-model", "--context", "8k"],
    ["size", "", "--context", "8k"],
    ["size", GOOD, "--context", "0"],
    ["size", GOOD, "--context", "-5"],
    ["size", GOOD, "--context", "nan"],
    ["size", GOOD, "--context", "inf"],
    ["size", GOOD, "--context", "1e309"],
    ["size", GOOD, "--context", "9" * 400],
    ["size", GOOD, "--context", "100000000000000k"],
    ["size", GOOD, "--context", "8k", "--batch", "0"],
    ["size", GOOD, "--context", "8k", "--batch", "-1"],
    ["size", GOOD, "--context", "8k", "--batch", "10000000001"],
    ["size", GOOD, "--context", "8k", "--batch", "1.5"],
    ["size", GOOD, "--context", "8k", "--tp", "0"],
    ["size", GOOD, "--context", "8k", "--tp", "3"],
    ["size", GOOD, "--context", "8k", "--pp", "1000"],
    ["size", GOOD, "--context", "8k", "--engine", "nope"],
    ["size", GOOD, "--context", "8k", "--kv-dtype", "float128"],
    ["size", GOOD, "--context", "8k", "--engine", "vllm", "--kv-dtype", "q4_0"],
    ["size", GOOD, "--context", "8k", "--block-size", "0"],
    ["size", GOOD, "--context", "8k", "--block-size", "-16"],
    ["size", GOOD, "--context", "8k", "--set", "nonsense"],
    ["size", GOOD, "--context", "8k", "--set", "bogus=1"],
    ["size", GOOD, "--context", "8k", "--engine", "llama.cpp", "--ubatch", "0"],
    ["size", GOOD, "--context", "8k", "--engine", "llama.cpp", "--parallel", "-3"],
    ["size", GOOD],
    ["size"],
    ["plan", GOOD, "--kv-memory", "-1GB", "--max-model-len", "8k"],
    ["plan", GOOD, "--kv-memory", "nan", "--max-model-len", "8k"],
    ["plan", GOOD, "--kv-memory", "1e400GB", "--max-model-len", "8k"],
    ["plan", GOOD, "--kv-memory", "20GiB", "--max-model-len", "0"],
    ["plan", GOOD, "--kv-memory", "20GiB", "--max-model-len", "8k", "--tp", "-2"],
    ["frobnicate"],
]  # a bare `kvplan` prints its help and exits 0 (tests/test_cli.py)


@pytest.mark.parametrize("argv", CLI_CORPUS, ids=range(len(CLI_CORPUS)))
def test_cli_corpus_one_line_nonzero(argv, capsys):
    TRIED["cli"] += 1
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith("kvplan: error:") and "Traceback" not in err
    assert out == ""


@settings(max_examples=150, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(config=any_config, context=contexts.map(str), batch=batches.map(str), engine=engines,
       kv_dtype=dtypes.map(str), tp=parallel.map(str))
def test_cli_hostile_configs(config, context, batch, engine, kv_dtype, tp, capsys):
    TRIED["cli"] += 1
    path = _TMP / f"cfg-{TRIED['cli']}.json"
    path.write_text(json.dumps(config, allow_nan=True))
    code = main(["size", str(path), "--context", context, "--batch", batch, "--engine", engine,
                 "--kv-dtype", kv_dtype, "--tp", tp, "--json"])
    out, err = capsys.readouterr()
    if code == 0:
        json.loads(out)
        assert err == ""
    else:
        assert code == 2, err  # 3 = an unexpected exception: a bug
        assert err.count("\n") == 1 and "Traceback" not in err and out == ""


def test_cli_subprocess_exit_codes():
    """The real process, not just main(): one line, exit 2, no traceback."""
    for argv in (["size", str(_TMP / "deep.json"), "--context", "8k"], ["size", GOOD, "--context", "nan"],
                 ["size", str(_TMP / "bad.gguf"), "--context", "1M"]):
        TRIED["cli"] += 1
        proc = subprocess.run([sys.executable, "-m", "kvplan", *argv], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_zz_report():
    total = sum(TRIED.values())
    print(f"\nhostile inputs tried: {total} ({dict(TRIED)}; {dict(OUTCOMES)}); no traceback, no hang")
    assert total > 0


# ---- special files: one guarded reader for every config read (issue 10, item 4) -------------------

@pytest.fixture
def special_files(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs named pipes")
    os.mkfifo(tmp_path / "pipe.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    (tmp_path / "pipe-folder").mkdir()
    os.mkfifo(tmp_path / "pipe-folder" / "config.json")
    (tmp_path / "zero-folder").mkdir()
    os.symlink("/dev/zero", tmp_path / "zero-folder" / "config.json")
    (tmp_path / "big.json").write_bytes(b" " * (kvplan.registry.MAX_CONFIG_BYTES + 1))
    return tmp_path


SPECIAL = ["pipe.json", "zero.json", "pipe-folder", "zero-folder", "big.json"]


@pytest.mark.parametrize("name", SPECIAL)
def test_special_files_are_refused_without_blocking(special_files, name):
    from kvplan.registry import read_config_file

    with pytest.raises(kvplan.UnsupportedConfigError, match="not a regular file|too large"):
        read_config_file(special_files / name)
    with pytest.raises(kvplan.UnsupportedConfigError, match="not a regular file|too large"):
        kvplan.load_model(str(special_files / name))


def test_guarded_reader_caps_bytes_read(tmp_path):
    from kvplan.files import read_limited

    (tmp_path / "f").write_bytes(b"x" * 100)
    assert read_limited(tmp_path / "f", 100) == b"x" * 100
    with pytest.raises(kvplan.UnsupportedConfigError, match="limit 99"):
        read_limited(tmp_path / "f", 99)
    with pytest.raises(FileNotFoundError):
        read_limited(tmp_path / "missing", 99)


def test_model_specs_env_pointing_at_special_files(special_files, monkeypatch):
    """KVPLAN_MODEL_SPECS at a pipe, at /dev/zero, or at a folder whose SOURCES.md is /dev/zero and
    whose one model's config.json is a pipe: `models` and `size` answer at once."""
    from kvplan import registry

    specs = special_files / "specs"
    (specs / "org--pipe").mkdir(parents=True)
    os.mkfifo(specs / "org--pipe" / "config.json")
    os.symlink("/dev/zero", specs / "SOURCES.md")
    for target in (special_files / "pipe.json", special_files / "zero.json", specs):
        monkeypatch.setenv("KVPLAN_MODEL_SPECS", str(target))
        registry.list_models.cache_clear()
        registry._bundled_arch.cache_clear()
        try:
            assert registry.sources() == {}
            if target == specs:
                assert registry.list_models() == ("org/pipe",)
                with pytest.raises(kvplan.UnsupportedConfigError, match="named pipe"):
                    kvplan.load_model("org/pipe")
        finally:
            registry.list_models.cache_clear()
            registry._bundled_arch.cache_clear()
    run = subprocess.run([sys.executable, "-m", "kvplan", "models", "--json"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                     "KVPLAN_MODEL_SPECS": str(specs)})
    assert run.returncode == 0, run.stderr
    assert "named pipe" in json.loads(run.stdout)["models"][0]["error"]


def test_cli_validate_and_size_on_special_files(special_files):
    """The real process on a pipe / /dev/zero: one line, exit 2, well within the timeout."""
    for argv in (["size", str(special_files / "pipe.json"), "--context", "8k"],
                 ["size", str(special_files / "zero-folder"), "--context", "8k"],
                 ["validate", str(special_files / "pipe-folder"), "--context", "16", "--device", "cpu"],
                 ["validate", str(special_files / "zero.json"), "--context", "16", "--device", "cpu"]):
        proc = subprocess.run([sys.executable, "-m", "kvplan", *argv], capture_output=True, text=True,
                              timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "not a regular file" in proc.stderr, proc.stderr


# ---- unbounded work, untyped errors, wrong answers (issue 10, items 5-7) ---------------------------

LLAMA = "meta-llama/Llama-3.1-8B"
PLANNER_KNOBS = ["max_num_seqs", "chunked_prefill_size", "cuda_graph_max_bs", "expert_pad", "decode_batch",
                 "decode_context", "mem_fraction_static", "free_gpu_memory_fraction", "activation_fit"]
BAD_KNOB_VALUES = ["abcd", "8", b"8", 2.5, 1e308, float("nan"), float("inf"), -1, 0, 10**400, True, [8], None]


@settings(max_examples=200, deadline=20000, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@given(knob=st.sampled_from(PLANNER_KNOBS), value=st.one_of(st.sampled_from(BAD_KNOB_VALUES), st.text(max_size=5),
                                                            st.floats(), st.integers(-(2**70), 2**70)),
       engine=st.sampled_from(["vllm", "sglang", "trtllm", "llama.cpp"]))
def test_planner_knobs_are_typed_before_work(knob, value, engine):
    """Every planner knob: a valid plan (finite numbers, int bytes, strict JSON) or a typed error
    naming the knob. A string `max_num_seqs` used to be multiplied into gigabytes."""
    from kvplan.planner import plan

    TRIED["planner knobs"] += 1
    try:
        p = plan(LLAMA, gpu="H100", max_model_len=4096, engine=engine, **{knob: value})
    except kvplan.InvalidInputError as err:
        assert err.field in (knob, "mem_fraction_static", "free_gpu_memory_fraction"), (err.field, knob)
        return
    except kvplan.KvplanError:
        return
    d = p.to_dict()
    json.dumps(d, allow_nan=False)  # no NaN / Infinity anywhere
    assert all(type(d[k]) is int for k in d if k.endswith("_bytes") and isinstance(d[k], (int, float)))


@pytest.mark.parametrize("kwargs, field", [
    (dict(max_num_seqs="abcd"), "max_num_seqs"), (dict(max_num_seqs=1e308), "max_num_seqs"),
    (dict(max_num_seqs=float("nan")), "max_num_seqs"), (dict(expert_pad=2.5), "expert_pad"),
    (dict(expert_pad=0), "expert_pad"), (dict(chunked_prefill_size="8192"), "chunked_prefill_size"),
    (dict(cuda_graph_max_bs="8"), "cuda_graph_max_bs"), (dict(decode_batch=10**12), "decode_batch"),
])
def test_issue_planner_knob_cases(kwargs, field):
    from kvplan.planner import plan

    with pytest.raises(kvplan.InvalidInputError) as info:
        plan(LLAMA, gpu="H100", max_model_len=4096, engine="sglang" if "cuda" in field or "chunk" in field
             else "vllm", **kwargs)
    assert info.value.field == field


def test_min_gpus_max_tp_is_typed():
    from kvplan.planner import min_gpus

    for bad in ("8", 8.0, 0, 1000, None):
        with pytest.raises(kvplan.InvalidInputError, match="max_tp"):
            min_gpus(LLAMA, gpu="H100", max_model_len=4096, users=4, max_tp=bad)


@pytest.mark.parametrize("contexts", ["8192", b"12", bytearray(b"12"), 8192, {"a": 1}, [1.5], [float("nan")],
                                      [2**40], range(1, 10**6), iter(range(1, 10**9))])
def test_sweep_refuses_strings_bytes_and_huge_sweeps(contexts):
    for fn in (kvplan.sweep, kvplan.sweep_bytes):  # the iterator: still 10^9 - 10^4 items for the second
        with pytest.raises(kvplan.InvalidInputError, match="context_lens"):
            fn(LLAMA, context_lens=contexts)


def test_sweep_limit_is_cheap_to_hit():
    """A 10^9-point generator is refused after reading MAX_SWEEP_POINTS + 1 items, not all of them."""
    from kvplan.api import MAX_SWEEP_POINTS

    seen = []

    def gen():
        for i in range(1, 10**9):
            seen.append(i)
            yield i
    with pytest.raises(kvplan.InvalidInputError, match=f"{MAX_SWEEP_POINTS:,}"):
        kvplan.sweep(LLAMA, context_lens=gen())
    assert len(seen) == MAX_SWEEP_POINTS + 1
    assert len(kvplan.sweep(LLAMA, context_lens=range(1, MAX_SWEEP_POINTS + 1))) == MAX_SWEEP_POINTS


def _cfg(**over):
    base = {"model_type": "llama", "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
            "hidden_size": 256, "intermediate_size": 512, "vocab_size": 1000, "torch_dtype": "bfloat16"}
    return {**base, **over}


DEEPSEEK = bundled_config("deepseek-ai/DeepSeek-V3") if "deepseek-ai/DeepSeek-V3" in kvplan.list_models() else None
HUGE = 10**400
# Values the JSON parser accepts that used to end in OverflowError / ZeroDivisionError /
# AttributeError / ValueError / TypeError, or in a wrong answer (negative counts, 0 bytes).
ISSUE_CONFIGS = {
    "qk_nope_head_dim huge": {**(DEEPSEEK or {}), "qk_nope_head_dim": HUGE},
    "q_lora_rank huge": {**(DEEPSEEK or {}), "q_lora_rank": HUGE},
    "q_lora_rank negative": {**(DEEPSEEK or {}), "q_lora_rank": -5},
    "n_routed_experts huge": {**(DEEPSEEK or {}), "n_routed_experts": HUGE},
    "n_routed_experts -1": {**(DEEPSEEK or {}), "n_routed_experts": -1},
    "num_experts -1": _cfg(num_experts=-1, num_experts_per_tok=2, moe_intermediate_size=64),
    "num_experts_per_tok huge": _cfg(num_experts=8, num_experts_per_tok=HUGE, moe_intermediate_size=64),
    "num_experts_per_tok > experts": _cfg(num_experts=8, num_experts_per_tok=9, moe_intermediate_size=64),
    "moe_intermediate_size huge": _cfg(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=HUGE),
    "n_shared_experts huge": {**(DEEPSEEK or {}), "n_shared_experts": HUGE},
    "shared_expert_intermediate_size -3": _cfg(shared_expert_intermediate_size=-3),
    "num_nextn_predict_layers 1e7": {**(DEEPSEEK or {}), "num_nextn_predict_layers": 10**7},
    "vision hidden huge": _cfg(vision_config={"hidden_size": HUGE, "num_hidden_layers": 4}),
    "vision layers huge": _cfg(vision_config={"hidden_size": 64, "num_hidden_layers": 10**9}),
    "bits huge": _cfg(quantization_config={"quant_method": "gptq", "bits": HUGE}),
    "weight_block_size [0, 0]": _cfg(quantization_config={"quant_method": "fp8", "weight_block_size": [0, 0]}),
    "modelopt list": _cfg(quantization_config={"quant_method": "modelopt", "quantization": [1, 2]}),
    "modelopt string": _cfg(quantization_config={"quant_method": "modelopt", "quantization": "NVFP4"}),
    "num_key_value_heads 0": _cfg(num_key_value_heads=0),
    "all-MLP hybrid": _cfg(model_type="nemotron_h", hybrid_override_pattern="----", mamba_num_heads=8,
                           mamba_head_dim=32, mamba_d_state=16, mamba_d_conv=4),
    "bert": {"model_type": "bert", "architectures": ["BertForMaskedLM"], "num_hidden_layers": 12,
             "num_attention_heads": 12, "hidden_size": 768, "intermediate_size": 3072, "vocab_size": 30522},
    "masked LM of an unknown type": _cfg(model_type="x", architectures=["XForMaskedLM"]),
    "t5": {"model_type": "t5", "num_layers": 6, "num_heads": 8, "d_model": 512, "vocab_size": 32128,
           "is_encoder_decoder": True},
    "sliding_window huge": _cfg(sliding_window=HUGE),  # 2^62 is allowed (a window past any context)
}


@pytest.mark.parametrize("name", list(ISSUE_CONFIGS))
def test_issue_configs_are_typed_errors_in_every_entry_point(name):
    config = ISSUE_CONFIGS[name]
    if not config:
        pytest.skip("DeepSeek-V3 is not bundled")
    from kvplan.planner import plan

    with pytest.raises(kvplan.UnsupportedConfigError):
        kvplan.parse_config(config)
    for call in (lambda: kvplan.kv_cache(config, context_len=4096),
                 lambda: plan(config, gpu="H100", max_model_len=4096),
                 lambda: plan(config, gpu="H100", max_model_len=4096, engine="sglang")):
        with pytest.raises(kvplan.KvplanError):
            call()


def test_json_integer_beyond_4300_digits_is_a_typed_error(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{"model_type": "llama", "num_hidden_layers": ' + "9" * 5000 + "}")
    with pytest.raises(kvplan.UnsupportedConfigError, match="config.json"):
        kvplan.load_model(str(path))
    assert main(["size", str(path), "--context", "8k"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(kvplan.UnsupportedConfigError):  # a dict holding such an int (API users)
        kvplan.parse_config(_cfg(num_hidden_layers=10**5000))


@settings(max_examples=300, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@given(field=st.sampled_from(["qk_nope_head_dim", "q_lora_rank", "num_experts", "n_routed_experts",
                              "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts",
                              "shared_expert_intermediate_size", "first_k_dense_replace", "num_nextn_predict_layers",
                              "sliding_window", "max_window_layers", "num_kv_shared_layers", "head_dim",
                              "intermediate_size", "vocab_size", "attn_layer_offset"]),
       value=st.one_of(st.integers(-(2**80), 2**80), st.sampled_from([HUGE, -HUGE, 0, -1, 2**40, 2**40 + 1]),
                       st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)),
       seed=st.sampled_from([s for s in ("deepseek-ai/DeepSeek-V3", "mistralai/Mixtral-8x7B-v0.1", LLAMA)
                             if s in kvplan.list_models()]))
def test_every_int_field_has_a_type_and_a_range(field, value, seed):
    """Any value in any integer field: a valid, non-negative, finite answer (plan included) or a
    typed error; never OverflowError / ZeroDivisionError / TypeError or a negative parameter count."""
    from kvplan.planner import plan
    from kvplan.weights import param_counts

    TRIED["config fields"] += 1
    config = {**bundled_config(seed), field: value}
    try:
        arch = kvplan.parse_config(config)
    except kvplan.KvplanError:
        return
    counts = param_counts(arch) if arch.weight_dims.hidden_size and arch.weight_dims.vocab_size else None
    if counts is not None:
        assert all(v >= 0 for v in dataclasses.asdict(counts).values()), counts
    try:
        p = plan(arch, gpu="H100", max_model_len=4096, tp=8, num_gpus=8)
    except kvplan.KvplanError:
        return
    json.dumps(p.to_dict(), allow_nan=False)
    assert p.weights_bytes >= 0 and type(p.weights_bytes) is int


def test_deep_pp_split_is_linear():
    """100k layers over pp=4096 stages: one pass over the layers (it was layers × stages: 85 s)."""
    from kvplan.engines.common import pp_stages

    arch = kvplan.parse_config(_cfg(num_hidden_layers=100_000))
    stages = pp_stages(arch, 4096)
    assert len(stages) == 4096 and sum(len(s) for s in stages) == 100_000
    assert [s.index for s in stages[0]] == list(range(24)) and stages[-1][-1].index == 99_999
    run = hostile_files.run_limited(
        "import kvplan, json\n"
        "c = {'model_type': 'llama', 'num_hidden_layers': 100000, 'num_attention_heads': 8, 'hidden_size': 64,"
        " 'num_key_value_heads': 8, 'vocab_size': 100, 'intermediate_size': 128}\n"
        "print(json.dumps({'kv': kvplan.kv_cache(c, context_len=8192, pp=4096).kv_bytes}))\n",
        mem_bytes=2 << 30, timeout=300)
    assert not run["timed_out"] and run["rc"] == 0, run["stderr"][-500:]
    assert json.loads(run["stdout"])["kv"] > 0


# ---- the one-line promise of the CLI (issue 10, item 9) -------------------------------------------

def _cli(*argv, env=None, stdin=None, shell=None):
    return subprocess.run(["bash", "-c", shell] if shell else [sys.executable, "-m", "kvplan", *argv],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_closed_pipe_ends_quietly():
    for cmd in ("models | head -1", "models --json | head -c 10", "gpus | true", "models | true"):
        proc = _cli(shell=f"set -o pipefail; {shlex.quote(sys.executable)} -m kvplan {cmd}")
        assert proc.returncode == 0, (cmd, proc.returncode, proc.stderr)
        assert proc.stderr == "", (cmd, proc.stderr)


def test_ascii_terminal_gets_ascii_not_a_crash():
    proc = _cli("size", LLAMA, "--context", "8k", env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "1 x 8,192 tokens" in proc.stdout
    proc = _cli("size", LLAMA, "--context", "8k", "--tp", "2", env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert proc.returncode == 0 and proc.stderr == ""


@pytest.mark.parametrize("argv", [
    ["plan", LLAMA, "--gpu-memory", "80GB", "--bandwidth", "9" * 5000, "--max-model-len", "8k"],
    ["plan", LLAMA, "--gpu", "H100", "--bandwidth", "9" * 50 + "TB/s", "--max-model-len", "8k"],
    ["plan", LLAMA, "--gpu", "H100", "--max-model-len", "8k", "--set", "max_num_seqs=abc"],
    ["plan", LLAMA, "--gpu", "H100", "--max-model-len", "8k", "--set", "max_num_seqs=1e308"],
    ["plan", LLAMA, "--gpu", "H100", "--max-model-len", "8k", "--set", "max_num_seqs=nan"],
    ["plan", LLAMA, "--gpu", "H100", "--max-model-len", "8k", "--set", "expert_pad=2.5"],
    ["plan", LLAMA, "--gpu", "H100", "--max-model-len", "8k", "--users", "9" * 5000],
    ["size", LLAMA, "--context", "8k", "--batch", "9" * 5000],
])
def test_cli_hostile_flags_one_line(argv, capsys):
    TRIED["cli"] += 1
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("kvplan: error:"), err


@pytest.mark.parametrize("endpoint", ["htp:/x", "http://[::1", "http://h:99999", "://", "http:///x"])
def test_cli_malformed_hf_endpoint(endpoint):
    proc = _cli("size", "acme/model", "--context", "8k", env={"HF_ENDPOINT": endpoint})
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.count("\n") == 1 and "HF_ENDPOINT" in proc.stderr, proc.stderr
    # offline, the endpoint is not needed, and huggingface_hub (which prints import errors for a
    # malformed one) is not touched: still exactly one line
    proc = _cli("size", "acme/model", "--context", "8k", env={"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.count("\n") == 1 and "offline" in proc.stderr, proc.stderr


def test_validate_prints_no_warnings_and_refuses_unbounded_prefills(tmp_path):
    """validate on success prints nothing on stderr (torch/transformers FutureWarnings are silenced);
    a 1M-token or 100000-batch CPU prefill is refused up front with the limit, not run for minutes."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text(json.dumps(_cfg(num_hidden_layers=2, hidden_size=64,
                                                          intermediate_size=128, vocab_size=256,
                                                          torch_dtype="float32")))
    ok = _cli("validate", str(tmp_path), "--context", "16", "--device", "cpu", "--no-paged")
    # stderr holds only validate's own progress lines: no FutureWarning, no log noise
    assert ok.returncode == 0 and "Warning" not in ok.stderr, ok.stderr[-800:]
    assert all(line.startswith("kvplan validate:") for line in ok.stderr.splitlines()), ok.stderr[-800:]
    for argv, words in ((["--context", "1M"], "limit 65,536"), (["--context", "1024", "--batch", "100000"],
                                                                 "limit 4,096"),
                        (["--context", "16", "--tolerance", "nan"], "tolerance")):
        proc = _cli("validate", str(tmp_path), "--device", "cpu", *argv)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
