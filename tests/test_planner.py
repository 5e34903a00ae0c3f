"""Planner: engine memory budgets and concurrency against real vLLM / SGLang startup logs, fit checks,
prefix caching, min_gpus, and the CLI/API contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kvplan
from kvplan import DoesNotFitError, InvalidInputError
from kvplan.cli import main
from kvplan.planner import Plan, min_gpus, plan, sglang_mem_fraction_static, vllm_activation_bytes
from kvplan.units import GiB

from test_weights import _llama2_with_vocab

GOLDEN = Path(__file__).parent / "golden"
LOGS = {row["id"]: row for row in json.loads((GOLDEN / "startup_logs.json").read_text())}
H100 = dict(gpu="H100")
# The version alone selects each release's rules: v0.19 only *estimates* graphs
# (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=False), pre-0.17 had the older activation profile.
V019 = dict(engine_version="0.19.0")
OLD = dict(engine_version="0.16.0")


def _model(name):
    return _llama2_with_vocab(32016) if name == "codellama" else name


# (log id [/sub-row], model, plan kwargs, logged "Available KV cache memory" GiB, logged max concurrency).
# Every row's GPU total memory is in the log or its report (H100 80GB: 79.19 GiB, the catalog's figure);
# overheads are our estimates unless the kwargs say otherwise (then the note says which log figure).
BUDGET_ROWS = [
    ("vllm-llama31-8b-instruct-h100-tp1-16k-v0190", "meta-llama/Llama-3.1-8B-Instruct",
     dict(max_model_len=16384, gpu_memory_utilization=0.95, **V019), 58.11, 29.05),
    ("vllm-gemma2-9b-it-h100-tp1-8k-v0190", "google/gemma-2-9b",
     dict(max_model_len=8192, gpu_memory_utilization=0.95, **V019), 54.12, 20.6),
    ("vllm-gemma2-27b-it-h100-tp1-8k-v0190", "google/gemma-2-27b-it",
     dict(max_model_len=8192, gpu_memory_utilization=0.95, **V019), 20.59, 7.16),
    # CodeLlama-7b is Llama-2-7B geometry with vocab 32016; its own config allows 16,384 positions (the
    # Llama-2 config used here says 4,096), hence the override of vLLM's max_model_len check
    ("vllm-codellama-7b-h100-tp1-8k-v0190", "codellama",
     dict(max_model_len=8192, gpu_memory_utilization=0.95, allow_long_max_model_len=True, **V019), 61.66, 15.41),
    ("vllm-qwen25-7b-instruct-h100-tp1-8k-v0190-report", "Qwen/Qwen2.5-7B",
     dict(max_model_len=8192, gpu_memory_utilization=0.95, **V019), 58.53, None),
    ("vllm-qwen25-7b-w8a8-h100-tp1-8k-v0190", "Qwen/Qwen2.5-7B",
     dict(max_model_len=8192, gpu_memory_utilization=0.95, weights_dtype="int8", **V019), 64.64, 147.74),
    ("vllm-gpt-oss-20b-h100-tp2-8k-v0190", "openai/gpt-oss-20b",
     dict(max_model_len=8192, tp=2, gpu_memory_utilization=0.9, **V019), 59.32, 316.07),
    # v0.17/v0.15 rows of the version sweep: non-torch 0.13 GiB as logged in those versions.
    ("vllm-qwen3-14b-h100-tp1-8k-version-sweep-report/v0.17.0", "Qwen/Qwen3-14B",
     dict(max_model_len=8192, gpu_memory_utilization=0.95, engine_version="0.17.0"), 45.34, 36.27),
    ("vllm-qwen3-14b-h100-tp1-8k-version-sweep-report/v0.15.0", "Qwen/Qwen3-14B",
     dict(max_model_len=8192, gpu_memory_utilization=0.95, engine_version="0.15.0"), 41.94, 33.55),
    # llm-d-benchmark (older vLLM, block 128): non-torch as logged (0.13 / 0.14 / 0.54 GiB).
    ("vllm-llama31-8b-instruct-h100-tp1-16k-gmu09-llmd-bench-report", "meta-llama/Llama-3.1-8B-Instruct",
     dict(max_model_len=16000, gpu_memory_utilization=0.9, non_torch_bytes=13 * GiB // 100, block_size=128, **OLD),
     51.38, None),
    ("vllm-qwen3-32b-h100-tp1-16k-llmd-bench-report", "Qwen/Qwen3-32B",
     dict(max_model_len=16000, gpu_memory_utilization=0.9, non_torch_bytes=14 * GiB // 100, block_size=128, **OLD),
     4.45, None),
    ("vllm-qwen3-32b-h100-tp2-16k-llmd-bench-report", "Qwen/Qwen3-32B",
     dict(max_model_len=16000, tp=2, gpu_memory_utilization=0.9, non_torch_bytes=54 * GiB // 100, block_size=128,
          **OLD), 34.49, None),
]


@pytest.mark.parametrize("log_id,model,kwargs,logged_kv_gib,logged_concurrency", BUDGET_ROWS)
def test_vllm_kv_budget_vs_log(log_id, model, kwargs, logged_kv_gib, logged_concurrency):
    row = LOGS[log_id.split("/")[0]]
    assert row["source"].startswith("https://") and "H100" in row["gpu"]
    p = plan(_model(model), **H100, **kwargs)
    # Within 0.5 % of the logged budget, or 0.1 GiB where the budget is small (Qwen3-32B TP=1: 4.45 GiB).
    assert abs(p.kv_budget_bytes / GiB - logged_kv_gib) < max(0.005 * logged_kv_gib, 0.1), row["source"]
    if logged_concurrency is not None:
        assert p.max_concurrency == pytest.approx(logged_concurrency, rel=0.006), row["source"]


def test_sglang_budget_vs_docs_log():
    """SGLang docs log: 78.81 GB free before weights, mem_fraction_static 0.88, K+V 27.13 + 27.13 GB
    (SGLang's GB are GiB), 444,500 tokens. https://docs.sglang.ai/start/send_request.html"""
    row = LOGS["sglang-llama31-8b-instruct-80gb-tp1-docs-2025-01"]
    p = plan("meta-llama/Llama-3.1-8B-Instruct", gpu_memory="78.81GiB", non_torch_bytes=0, engine="sglang",
             max_model_len=131072, mem_fraction_static=row["settings"]["mem_fraction_static"])
    assert abs(p.kv_budget_bytes / GiB / 54.26 - 1) < 0.005
    assert p.kv_tokens == pytest.approx(row["expected"]["max_total_num_tokens"], rel=0.005)


def test_budget_formula_with_logged_overheads():
    """Llama-3.3-70B TP=4 on H100 NVL (vllm#15039): 79.33 GiB × 0.89 − 32.95 weights − 1.30 activation
    − 0.28 non-torch = 36.07 GiB logged; given the logged overheads the formula and our weights agree."""
    p = plan("meta-llama/Llama-3.3-70B-Instruct", gpu_memory="79.33GiB", tp=4, max_model_len=131072,
             gpu_memory_utilization=0.89, activation_bytes=int(1.30 * GiB), non_torch_bytes=int(0.28 * GiB),
             cuda_graph_bytes=0)
    assert abs(p.kv_budget_bytes / GiB - 36.07) < 0.15
    assert p.max_concurrency == pytest.approx(3.61, rel=0.01)


def test_activation_fit_matches_logs():
    g = GiB
    # (model, logged torch peak increase GiB, source id): vLLM v0.19.0, H100, serve defaults.
    for model, logged in (("meta-llama/Llama-3.1-8B", 1.89), ("google/gemma-2-9b", 3.65),
                          ("Qwen/Qwen2.5-7B", 2.21), ("google/gemma-2-27b-it", 3.66)):
        assert abs(vllm_activation_bytes(kvplan.load_model(model)) / g - logged) < 0.05, model
    assert abs(vllm_activation_bytes(_llama2_with_vocab(32016)) / g - 0.77) < 0.05  # forward-bound
    assert abs(vllm_activation_bytes(kvplan.load_model("meta-llama/Llama-3.1-8B"), fit="v0.16") / g - 4.76) < 0.05
    with pytest.raises(InvalidInputError):
        vllm_activation_bytes(kvplan.load_model("meta-llama/Llama-3.1-8B"), fit="v9")


def test_sglang_default_fraction_h100():
    assert sglang_mem_fraction_static(81559 * 2**20) == pytest.approx(0.835, abs=0.002)  # ENGINE_KV_SPEC B.3


# ---- does not fit ------------------------------------------------------------------------------

@pytest.mark.parametrize("log_id,model,kwargs", [
    # vllm#23278: gpt-oss-120b on one H100 with defaults (131072 tokens, 0.9) fails to start.
    ("vllm-gpt-oss-120b-h100-tp1-default-fail-23278", "openai/gpt-oss-120b", dict(gpu="H100", max_model_len=131072)),
    # vllm#27508: --gpu-memory-utilization 0.95 --max-num-batched-tokens 1024, v0.11: 1.71 GiB KV, fails.
    ("vllm-gpt-oss-120b-h100-tp1-gmu095-mbt1024-fail", "openai/gpt-oss-120b",
     dict(gpu="H100", max_model_len=131072, gpu_memory_utilization=0.95, max_num_batched_tokens=1024, **OLD)),
    # vllm#13061: R1-Distill-Qwen-14B on 2×4090, TP=2, 0.98, 131072 tokens: 81,536-token cache < 131,072.
    ("vllm-r1-distill-qwen-14b-2x4090-tp2", "Qwen/Qwen2.5-14B",
     dict(gpu="RTX-4090", tp=2, max_model_len=131072, gpu_memory_utilization=0.98, **OLD)),
    # llm-d-benchmark: Qwen3-32B on one H100 fails at 32000 tokens (block 128, 0.9).
    ("vllm-qwen3-32b-h100-tp1-16k-llmd-bench-report", "Qwen/Qwen3-32B",
     dict(gpu="H100", max_model_len=32000, block_size=128, non_torch_bytes=14 * GiB // 100, **OLD)),
])
def test_does_not_fit_cases(log_id, model, kwargs):
    assert LOGS[log_id]["source"].startswith("https://")
    p = plan(model, **kwargs)
    assert not p.fits and p.max_sequences == 0
    assert 0 <= p.max_model_len_that_fits < p.max_model_len
    with pytest.raises(DoesNotFitError) as err:
        p.check()
    assert err.value.max_model_len == p.max_model_len_that_fits
    assert "estimated maximum model length" in str(err.value)


def test_fits_where_logs_say_it_runs():
    # llm-d-benchmark: gpt-oss-120b fits one H100 at 16000 tokens (3.33 GiB KV); Qwen3-32B at 16000
    # (block 128). NOTE: that gpt-oss run logged 7.38 GiB activations yet 3.33 GiB KV, which the older
    # additive formula cannot give (its profiler already used the newer free-memory accounting), so this
    # row is checked with the current (v0.17+) estimates.
    p = plan("openai/gpt-oss-120b", gpu="H100", max_model_len=16000, block_size=128)
    assert p.fits and p.max_sequences >= 1
    assert plan("Qwen/Qwen3-32B", gpu="H100", max_model_len=16000, block_size=128,
                non_torch_bytes=14 * GiB // 100, **OLD).fits


def test_users_do_not_fit_error_and_max_context():
    p = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=32768, users=40)
    assert not p.fits and p.max_sequences < 40
    assert p.max_context_for_users is not None and p.max_context_for_users < 32768
    at = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=p.max_context_for_users, users=40)
    assert at.fits
    over = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=p.max_context_for_users + 16, users=40)
    assert not over.fits
    with pytest.raises(DoesNotFitError) as err:
        p.check()
    assert err.value.need_bytes > err.value.have_bytes > 0


# ---- prefix caching ---------------------------------------------------------------------------

def test_prefix_caching_counts_full_blocks_once():
    budget = 20 * GiB
    base = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, kv_memory=budget)
    p = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, kv_memory=budget, prefix_tokens=2000)
    blocks = budget // (16 * 131072)  # 16-token blocks of 128 KiB per token
    usable, per_req, shared = blocks - 1, 8192 // 16, 2000 // 16  # null block; 125 full blocks shared
    assert base.users_with_prefix == base.max_sequences == usable // per_req
    assert p.users_with_prefix == (usable - shared) // (per_req - shared)
    assert p.users_with_prefix > base.users_with_prefix
    # A prefix shorter than one block shares nothing.
    assert plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, kv_memory=budget,
                prefix_tokens=15).users_with_prefix == base.users_with_prefix


def test_prefix_caching_sglang_by_token():
    base = plan("meta-llama/Llama-3.1-8B", gpu="H100", engine="sglang", max_model_len=8192)
    p = plan("meta-llama/Llama-3.1-8B", gpu="H100", engine="sglang", max_model_len=8192, prefix_tokens=4096)
    assert p.users_with_prefix >= 2 * base.users_with_prefix - 1


# ---- layouts, engines, min_gpus -----------------------------------------------------------------

def test_min_gpus_llama70b():
    p = min_gpus("meta-llama/Llama-3.1-70B", gpu="H100", max_model_len=8000, users=100)
    assert p.fits and p.num_gpus == 8 and p.tp == 4 and p.dp == 2
    assert p.total_sequences >= 100
    smaller = plan("meta-llama/Llama-3.1-70B", gpu="H100", tp=4, num_gpus=4, max_model_len=8000, users=100)
    assert not smaller.fits
    with pytest.raises(DoesNotFitError):
        min_gpus("meta-llama/Llama-3.1-405B", gpu="L4", max_model_len=8000, users=1)


def test_min_gpus_answers_for_every_user_count_the_planner_takes():
    # Issue 16: 100,000 users of a 70B model need thousands of GPUs; the user never gave --num-gpus, so
    # the 4,096 GPU sanity limit must not refuse the answer.
    one = plan("meta-llama/Llama-3.1-70B", gpu="H100", tp=8, num_gpus=8, max_model_len=8000)
    for users in (100_000, 10**9):
        p = min_gpus("meta-llama/Llama-3.1-70B", gpu="H100", max_model_len=8000, users=users)
        assert p.fits and p.total_sequences >= users and p.num_gpus > 4096
        assert p.num_gpus == p.tp * p.dp and p.dp * p.max_sequences >= users
        # one replica fewer would not hold them
        assert (p.dp - 1) * p.max_sequences < users
    assert min_gpus("meta-llama/Llama-3.1-70B", gpu="H100", max_model_len=8000, users=100_000).num_gpus \
        <= 8 * -(-100_000 // one.max_sequences)
    with pytest.raises(InvalidInputError, match="users"):
        min_gpus("meta-llama/Llama-3.1-70B", gpu="H100", max_model_len=8000, users=10**9 + 1)
    # A GPU count given by hand is still bounded: replicas past one per user serve no one.
    with pytest.raises(InvalidInputError, match="num_gpus"):
        plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, num_gpus=5000)
    assert plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, num_gpus=5000, users=5000).dp == 5000


def test_cli_min_gpus_many_users(capsys):
    rc = main(["plan", "meta-llama/Llama-3.1-70B", "--gpu", "H100", "--max-model-len", "8k", "--users", "100000",
               "--min-gpus", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["fits"] and out["users"] == 100_000 and out["num_gpus"] > 4096


def test_data_parallel_replicas_and_users_per_gpu():
    one = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192)
    four = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, num_gpus=4)
    assert four.dp == 4 and four.total_sequences == 4 * one.max_sequences
    assert four.users_per_gpu == pytest.approx(one.users_per_gpu)
    tp2 = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, tp=2)
    assert tp2.num_gpus == 2 and tp2.users_per_gpu == pytest.approx(tp2.max_concurrency / 2)
    with pytest.raises(InvalidInputError):
        plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, tp=2, num_gpus=3)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "llama.cpp", "transformers", "naive"])
def test_every_engine_plans(engine):
    p = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, engine=engine)
    assert p.fits and p.kv_budget_bytes > 0 and p.max_sequences >= 1
    # vLLM and SGLang also allocate the RoPE cos/sin cache with the weights (131072 × 128 × 2 B).
    assert p.weights_bytes == 16060522496 + (131072 * 128 * 2 if engine in ("vllm", "sglang") else 0)


def test_llamacpp_offload_note():
    p = plan("meta-llama/Llama-3.1-8B", gpu="RTX-4090", engine="llama.cpp", max_model_len=131072, users=4)
    assert not p.fits and any("offload" in n for n in p.notes)


def test_fp8_kv_doubles_sequences_and_h200_more():
    bf16 = plan("meta-llama/Llama-3.1-70B", gpu="H100", tp=4, max_model_len=8000)
    fp8 = plan("meta-llama/Llama-3.1-70B", gpu="H100", tp=4, max_model_len=8000, kv_dtype="fp8")
    h200 = plan("meta-llama/Llama-3.1-70B", gpu="H200", tp=4, max_model_len=8000)
    assert fp8.max_sequences in (2 * bf16.max_sequences, 2 * bf16.max_sequences + 1)
    assert h200.max_sequences > 2 * bf16.max_sequences


def test_custom_gpu_and_kv_memory_override():
    p = plan("meta-llama/Llama-3.1-8B", gpu_memory="48GiB", bandwidth="864GB/s", max_model_len=8192)
    assert p.gpu == "custom" and p.gpu_memory_bytes == 48 * GiB and p.decode_ms_per_step > 0
    unknown = plan("meta-llama/Llama-3.1-8B", gpu_memory="48GiB", max_model_len=8192)
    assert unknown.decode_ms_per_step == 0.0 and unknown.decode_bound == "unknown"
    kv = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=131072, kv_memory=26306 * 2 * 2**20)
    assert (kv.num_blocks, kv.kv_tokens, round(kv.max_concurrency, 2)) == (26306, 420896, 3.21)
    with pytest.raises(InvalidInputError):
        plan("meta-llama/Llama-3.1-8B", max_model_len=8192)
    with pytest.raises(InvalidInputError):
        plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, gpu_memory_utilization=1.5)


def test_plan_to_dict_contract():
    p = kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len="8k", users=10)
    assert isinstance(p, kvplan.Plan)
    d = p.to_dict()
    for key in ("weights_bytes", "kv_budget_bytes", "num_blocks", "kv_tokens", "max_concurrency", "users_per_gpu",
                "fits", "activation_bytes", "non_torch_bytes", "cuda_graph_bytes", "decode_ms_per_step",
                "decode_tokens_per_s_per_user", "decode_tokens_per_s_per_gpu", "prefill_ms", "max_sequences",
                "max_context_for_users", "users_with_prefix", "free_bytes", "notes"):
        assert key in d
    assert json.loads(json.dumps(d)) == d
    assert type(d["max_concurrency"]) is float and type(d["users_per_gpu"]) is float
    assert set(d) == {f.name for f in Plan.__dataclass_fields__.values()}


def test_cli_plan_gpu_json(capsys):
    assert main(["plan", "meta-llama/Llama-3.1-70B", "--gpu", "H100", "--tp", "2", "--max-model-len", "8000",
                 "--kv-dtype", "fp8", "--users", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["tp"] == 2 and d["kv_dtype"] == "fp8" and "num_blocks" in d and "max_concurrency" in d
    assert main(["plan", "meta-llama/Llama-3.1-8B", "--gpu-memory", "48GiB", "--max-model-len", "8k",
                 "--prefix-tokens", "1000", "--weights-dtype", "fp8"]) == 0
    assert "fits" in capsys.readouterr().out
    assert main(["plan", "meta-llama/Llama-3.1-70B", "--gpu", "H100", "--max-model-len", "8000", "--users", "100",
                 "--min-gpus", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_gpus"] == 8


def test_cli_plan_kv_memory_form_unchanged(capsys):
    assert main(["plan", "meta-llama/Llama-3.1-8B", "--kv-memory", "20GiB", "--max-model-len", "8k", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d == kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory="20GiB", max_model_len=8192).to_dict()
    assert main(["plan", "meta-llama/Llama-3.1-8B", "--max-model-len", "8k"]) == 2
