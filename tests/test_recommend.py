"""`kvplan recommend` / `kvplan.recommend`: hand-worked examples, with the arithmetic beside the numbers.

Constants used below (from the catalog and the planner, each checked in its own tests):
- H100-SXM: 3.35 TB/s, 989 TFLOP/s bf16 dense. With the default efficiencies (bandwidth 0.75,
  compute 0.55) the model sees bw = 2,512,500,000,000 B/s and peak = 543,950,000,000,000 FLOP/s.
- Llama-3.1-8B: 8,030,261,248 parameters; vLLM holds 16,094,076,928 weight bytes per GPU at TP=1
  (16,060,522,496 of bf16 weights + a 32 MiB RoPE cache); KV = 32 layers × 8 heads × 128 × 2 (K, V)
  × 2 B = 131,072 B per token, so one vLLM block of 16 tokens is 2 MiB (2,097,152 B); attention
  FLOPs per new token = 2 × 32 heads × (128 + 128) × 32 layers = 524,288 per cached token.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

import kvplan
from kvplan.errors import InvalidInputError
from kvplan.planner import plan
from kvplan.recommend import recommend
from kvplan.workload import littles_law_concurrency, make_workload

L8 = "meta-llama/Llama-3.1-8B"
BW = 2_512_500_000_000  # int(3.35e12 × 0.75)
PEAK = 543_950_000_000_000  # int(989e12 × 0.55)
W8 = 16_094_076_928  # Llama-3.1-8B weights read per decode step (vLLM, TP=1)
P8 = 8_030_261_248  # Llama-3.1-8B parameters
MIB2 = 2 * 2**20  # one vLLM block of Llama-3.1-8B


def prefill_s(prompt: int) -> float:
    """Llama-3.1-8B prefill on one H100: compute-bound, 2·params·P + attention P²/2."""
    flops = 2 * P8 * prompt + 524_288 * prompt * prompt // 2
    return max(W8 / BW, flops / PEAK)


def step_s(n: int, ctx: int) -> float:
    """One decode step for n sequences at ctx tokens: the weights plus n sequences' blocks."""
    kv = math.ceil(ctx / 16) * MIB2
    return max((W8 + n * kv) / BW, n * (2 * P8 + 524_288 * ctx) / PEAK)


def test_littles_law_request_rate():
    # L = λ·W: 2 requests/s that stay 15 s each keep 30 in flight.
    assert littles_law_concurrency(2.0, 15.0) == 30.0
    # 4 requests/s of 1,000 prompt + 500 output tokens, Llama-3.1-8B, one H100 (vLLM):
    #   prefill(1,000) = (2·8,030,261,248·1,000 + 524,288·1,000²/2) / 5.4395e14 = 30.008 ms
    #   prefill share of the GPU f = 4 /s × 30.008 ms = 0.1200
    #   live context = 1,000 + 500/2 = 1,250 tokens = 79 blocks = 165,675,008 B per sequence
    #   n = ⌈4 × (prefill + step(n) + 500 × step(n)/(1 − f))⌉, iterated from n = 1:
    #   step(1) = 6.4715 ms -> n = ⌈4 × 3.7136 s⌉ = 15; step(15) = 7.3947 ms -> 17;
    #   step(17) = 7.5266 ms -> 18; step(18) = (16,094,076,928 + 18 × 165,675,008) / 2.5125e12
    #   = 7.5925 ms -> ⌈4 × (0.0300 + 0.0076 + 500 × 0.0086282)⌉ = ⌈17.41⌉ = 18: settled.
    p = prefill_s(1000)
    assert p == pytest.approx(0.030008, rel=1e-4)
    f = 4 * p
    s18 = step_s(18, 1250)
    assert s18 == pytest.approx(0.0075925, rel=1e-4)
    assert math.ceil(4 * (p + s18 + 500 * s18 / (1 - f))) == 18
    r = recommend(L8, request_rate=4, prompt_tokens=1000, output_tokens=500, gpus="H100")
    d = r.best
    assert (d.num_gpus, d.replicas, d.users) == (1, 1, 18)
    assert d.tpot_ms == pytest.approx(s18 / (1 - f) * 1e3, rel=1e-3)  # 8.628 ms
    assert d.requests_per_s == 4.0
    assert r.workload.request_rate == 4.0 and r.workload.users is None


def test_p95_far_above_mean_sizes_over_the_distribution():
    # 18 requests of 1,000 + 100 tokens and two of 30,000 + 100: the prompt p95 is 30,000, the mean
    # 3,900. vLLM blocks of 16: 1,100 tokens -> 69 blocks; 30,100 -> 1,882 blocks. Equal outputs, so
    # live shares equal request shares: μ = (18·69 + 2·1,882)/20 = 250.3 blocks,
    # σ² = (18·(69 − 250.3)² + 2·(1,882 − 250.3)²)/20 = 295,827.21 -> σ = 543.9.
    # A 30,000-block pool (kv_memory = 30,001 blocks: vLLM keeps one null block) holds n users while
    # 250.3·n + 1.645·√n·543.9 ≤ 30,000 -> n = 86 (86: 21,526 + 8,297 = 29,822; 87: 30,121).
    # Every user at the longest request would allow 30,000 // 1,882 = 15; sizing at the mean length
    # (4,000 tokens = 250 blocks) 30,000 // 250 = 120, which overflows the pool whenever more than
    # the expected share of long requests is in flight.
    rows = [(1000, 100)] * 18 + [(30000, 100)] * 2
    mu = (18 * 69 + 2 * 1882) / 20
    sd = math.sqrt((18 * (69 - mu) ** 2 + 2 * (1882 - mu) ** 2) / 20)
    assert (mu, round(sd, 2)) == (250.3, 543.9)
    need = lambda n: n * mu + 1.6448536269514722 * math.sqrt(n) * sd  # noqa: E731
    assert need(86) <= 30000 < need(87)
    r = recommend(L8, users=86, lengths=rows, gpus="H100", kv_memory=30001 * MIB2)
    d = r.best
    assert d.max_users_per_instance == 86 and d.num_gpus == 1
    assert r.workload.prompt_p95 == 30000 and r.workload.prompt_tokens == 3900.0
    assert r.workload.max_model_len == 30100  # the longest request
    assert 30000 // 1882 < 86 < 30000 // 250
    r2 = recommend(L8, users=87, lengths=rows, gpus="H100", kv_memory=30001 * MIB2)
    assert r2.best.num_gpus == 2 and r2.best.binding == "kv_memory"


def test_prefix_sharing_counts_the_shared_blocks_once():
    # Prompts of 2,000 tokens whose first 1,600 are a shared system prompt, outputs of 400:
    # 2,400 tokens = 150 blocks per request, of which 1,600 / 16 = 100 are shared.
    # A 30,000-block pool: without sharing 30,000 // 150 = 200 users; with it
    # (30,000 − 100) // (150 − 100) = 598 users.
    kw = dict(prompt_tokens=2000, output_tokens=400, gpus="H100", kv_memory=30001 * MIB2)
    assert recommend(L8, users=10, **kw).best.max_users_per_instance == 200
    assert recommend(L8, users=10, prefix_tokens=1600, **kw).best.max_users_per_instance == 598
    # llama.cpp keeps a private cache per slot: no sharing (and every slot gets the full context).
    base = recommend(L8, users=10, engines="llama.cpp", **kw).best.max_users_per_instance
    shared = recommend(L8, users=10, engines="llama.cpp", prefix_tokens=1600, **kw).best.max_users_per_instance
    assert base == shared


def test_tpot_sla_turns_memory_bound_into_bandwidth_bound():
    # 150 users of 1,000 + 1,000 tokens, Llama-3.1-8B, H100, TP=1 only.
    # Memory: the planner's vLLM budget (0.28 defaults: 58,935,503,685 B = 28,102 blocks, 28,101
    # usable); a request needs 2,000 / 16 = 125 blocks -> 224 users per GPU: one GPU, bound by KV memory.
    p = plan(L8, gpu="H100", max_model_len=2000)
    blocks = p.kv_budget_bytes // MIB2
    assert blocks > 150 * 125
    r = recommend(L8, users=150, prompt_tokens=1000, output_tokens=1000, gpus="H100", max_tp=1)
    assert (r.best.num_gpus, r.best.max_users_per_instance, r.best.binding) == (1, (blocks - 1) // 125, "kv_memory")
    # With TPOT ≤ 12 ms: live context 1,500 tokens = 94 blocks = 197,132,288 B per sequence;
    # step(n) = (16,094,076,928 + n·197,132,288) / 2.5125e12 (memory-bound), prefill p = 30.008 ms.
    # Closed loop with prefills sharing the GPU (Little's law: n users arrive at n/W per second):
    # T solves 1,000·T² + (t − n·p − 1,000·s)·T − s·t = 0 with s = step(n), t = p + s.
    def tpot(n):
        s = step_s(n, 1500)
        t = prefill_s(1000) + s
        b = t - n * prefill_s(1000) - s * 1000
        return (-b + math.sqrt(b * b + 4 * 1000 * s * t)) / 2000
    assert tpot(50) == pytest.approx(0.011824, rel=1e-3)  # step(50) = 10.33 ms, +1.5 ms of prefill
    assert tpot(60) == pytest.approx(0.012908, rel=1e-3)
    cap = max(n for n in range(1, 150) if tpot(n) <= 0.012)
    assert 50 < cap < 60
    r = recommend(L8, users=150, prompt_tokens=1000, output_tokens=1000, gpus="H100", max_tp=1, tpot_ms=12)
    d = r.best
    assert d.max_users_per_instance == cap
    assert d.binding == "bandwidth" and d.decode_bound == "memory"
    assert d.num_gpus == d.replicas == math.ceil(150 / cap) == 3
    assert d.users_per_instance == 50 and d.tpot_ms <= 12  # 150 users over 3 replicas


def test_tp_sizes_that_do_not_divide_the_heads_are_skipped():
    # Phi-3-medium: 40 attention heads, 10 KV heads. TP=4 and TP=8 neither divide 10 KV heads nor are
    # multiples of them (vLLM/SGLang refuse to start); TP=2 and TP=1 remain.
    r = recommend("microsoft/Phi-3-medium-4k-instruct", users=50, prompt_tokens=3000, output_tokens=500,
                  gpus=["L40S", "A100-80GB"])
    assert any("tp=4" in s and "10 KV" in s for s in r.skipped)
    assert any("tp=8" in s for s in r.skipped)
    assert r.deployments and {d.tp for d in r.deployments} <= {1, 2}
    # Llama-3.1-70B (64 heads, 8 KV heads): TP=16 is a multiple of 8 KV heads and divides 64: allowed.
    r = recommend("meta-llama/Llama-3.1-70B", users=10, prompt_tokens=1000, output_tokens=100, gpus="L40S",
                  max_tp=16, max_pp=1)
    assert not any("tp=16" in s for s in r.skipped)


@pytest.mark.parametrize("model, gpu, context, users, exact, naive", [
    # Sliding window: gemma-3-27b-it has 52 local layers (window 1,024) and 10 global ones of 16 KV
    # heads × 128: the naive 62 × 16 × 128 × 2 × 2 = 507,904 B/token vs 10 × 8,192 = 81,920 B/token
    # growing with context (plus the windows).
    ("google/gemma-3-27b-it", "H100", 32000, 200, 81_920, 507_904),
    # Hybrid: Qwen3-Next-80B keeps KV in 12 of 48 layers (2 KV heads × 256): 12 × 2 × 256 × 2 × 2 =
    # 24,576 B/token; the other 36 are Gated DeltaNet with a fixed state. Naive: 48 layers = 98,304.
    ("Qwen/Qwen3-Next-80B-A3B-Thinking", "H100", 32000, 200, 24_576, 98_304),
    # MLA: DeepSeek-V3 caches one 512 + 64 latent per layer: 61 × 576 × 2 = 70,272 B/token; the
    # naive formula (128 heads of 56, K and V) gives 61 × 128 × 56 × 2 × 2 = 1,748,992.
    ("deepseek-ai/DeepSeek-V3", "H200", 8000, 100, 70_272, 1_748_992),
])
def test_exact_memory_changes_the_gpu_count(model, gpu, context, users, exact, naive):
    kw = dict(users=users, prompt_tokens=context - 1000, output_tokens=1000, gpus=gpu)
    assert kvplan.kv_cache(model, context_len=context).bytes_per_token == exact
    assert kvplan.kv_cache(model, context_len=context, engine="naive").bytes_per_token == naive
    good = recommend(model, **kw).best
    bad = recommend(model, engines="naive", **kw).best
    assert good.num_gpus < bad.num_gpus
    # Each count is replicas × instance, and an instance holds what the planner says it holds.
    for d in (good, bad):
        assert d.num_gpus == d.replicas * d.tp * d.pp
        assert d.replicas == math.ceil(users / d.max_users_per_instance)
        p = plan(model, gpu=gpu, tp=d.tp, pp=d.pp, max_model_len=context, engine=d.engine)
        assert d.max_users_per_instance == p.max_sequences


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "llama.cpp", "transformers"])
def test_single_length_capacity_is_the_planners(engine):
    # One length, no prefix, no SLA: users per instance is exactly plan().max_sequences.
    r = recommend(L8, users=1, prompt_tokens=7000, output_tokens=1000, gpus="A100-80GB", engines=engine,
                  max_tp=1, max_pp=1)
    p = plan(L8, gpu="A100-80GB", max_model_len=8000, engine=engine)
    assert r.best.max_users_per_instance == p.max_sequences


def test_launch_commands_carry_the_assumed_numbers():
    r = recommend("meta-llama/Llama-3.1-70B", users=100, prompt_tokens=7000, output_tokens=1000, gpus="H100",
                  kv_dtype="any", engines=["vllm", "sglang", "trtllm"])
    by = {(d.engine, d.kv_dtype): d for d in r.deployments}
    v = by[("vllm", "fp8")]
    assert v.launch.startswith("vllm serve meta-llama/Llama-3.1-70B ")
    for flag in (f"--tensor-parallel-size {v.tp}", "--max-model-len 8000", "--gpu-memory-utilization 0.9",
                 f"--max-num-seqs {v.max_users_per_instance}", "--kv-cache-dtype fp8"):
        assert flag in v.launch
    s = next(d for d in r.deployments if d.engine == "sglang")
    assert s.launch.startswith("python -m sglang.launch_server --model-path meta-llama/Llama-3.1-70B")
    assert f"--mem-fraction-static {s.memory_fraction:g}" in s.launch and "--context-length 8000" in s.launch
    t = next(d for d in r.deployments if d.engine == "trtllm")
    assert f"--tp_size {t.tp}" in t.launch and "--max_seq_len 8000" in t.launch
    llama = recommend(L8, users=4, prompt_tokens=3000, output_tokens=1000, gpus="L40S", engines="llama.cpp",
                      kv_dtype="q8_0").best
    assert "-c 16000 -np 4" in llama.launch.replace(str(llama.max_users_per_instance), "4") or \
        f"-c {4000 * llama.max_users_per_instance} -np {llama.max_users_per_instance}" in llama.launch
    assert "-ctk q8_0 -ctv q8_0" in llama.launch and "-fa on" in llama.launch


def test_user_text_is_shell_quoted(tmp_path):
    src = kvplan.load_model(L8)
    import shutil
    from kvplan.registry import list_models  # noqa: F401

    folder = tmp_path / "my model; rm -rf x"
    folder.mkdir()
    import importlib.resources as res
    cfg = next(p for p in (res.files("kvplan").parent / "model_specs").iterdir() if p.name == "meta-llama--Llama-3.1-8B")
    shutil.copy(cfg / "config.json", folder / "config.json")
    r = recommend(str(folder), users=1, prompt_tokens=100, output_tokens=10, gpus="H100")
    assert f"'{folder}'" in r.best.launch
    assert src.num_layers == 32


def test_prices_rank_by_cost_and_give_dollars_per_million_tokens():
    r = recommend("meta-llama/Llama-3.1-70B", users=100, prompt_tokens=7000, output_tokens=1000,
                  gpus=["H100", "H200"], prices={"H100": 2.0, "H200": 100.0})
    assert r.best.gpu == "H100-SXM"
    d = r.best
    # $/M output tokens = $/hour ÷ (output tokens/s × 3,600) × 10⁶
    assert d.usd_per_hour == pytest.approx(2.0 * d.num_gpus)
    assert d.usd_per_million_output_tokens == pytest.approx(
        d.usd_per_hour / (d.requests_per_s * 1000 * 3600) * 1e6, rel=1e-3)
    unpriced = recommend(L8, users=1, prompt_tokens=100, output_tokens=10, gpus="H100")
    assert unpriced.best.usd_per_hour is None and unpriced.best.usd_per_million_output_tokens is None


def test_an_sla_no_gpu_meets_is_a_result_with_the_smallest_change():
    r = recommend("meta-llama/Llama-3.1-70B", users=10, prompt_tokens=1000, output_tokens=100, gpus="H100",
                  tpot_ms=2)
    assert not r.fits and r.deployments == ()
    assert "tpot" in r.why_not
    # The fastest instance is TP=8: 70.55 B params × 2 B / 8 GPUs ≈ 17.6 GB per GPU at 2.51 TB/s
    # ≈ 7.0 ms, plus 2 all-reduces × 80 layers × 20 µs = 3.2 ms: ≈ 10.3 ms.
    assert r.smallest_change.startswith("relax tpot_ms to ")
    best = float(r.smallest_change.split("relax tpot_ms to ")[1].split()[0])
    assert 9 < best < 12 and "tp=8" in r.smallest_change
    r = recommend("meta-llama/Llama-3.1-70B", users=10, prompt_tokens=100000, output_tokens=100, gpus="L40S",
                  ttft_ms=100)
    assert not r.fits and "ttft" in r.why_not
    d = r.to_dict()
    assert d["deployments"] == [] and d["fits"] is False and d["smallest_change"]


def test_weights_that_do_not_fit_suggest_more_gpus_not_zero_token_requests():
    # Llama-3.1-405B in bf16 is about 811 GB of weights; one L40S has 48 GB: no request length helps.
    r = recommend("meta-llama/Llama-3.1-405B", users=10, prompt_tokens=1000, output_tokens=100, gpus="L40S",
                  max_tp=1, max_pp=1)
    assert not r.fits and r.rejected == {"weights": 1}
    assert r.smallest_change.startswith("use more GPUs per instance (max_tp / max_pp) or fp8 weights (best:")
    assert "at most 0 tokens" not in r.smallest_change
    # With a layout that passes the memory check but misses the SLA, the SLA change comes first.
    r = recommend("meta-llama/Llama-3.1-405B", users=10, prompt_tokens=1000, output_tokens=100, gpus="L40S",
                  max_tp=8, max_pp=4, tpot_ms=5)
    assert not r.fits and r.rejected["weights"] >= 1 and r.rejected["tpot"] >= 1
    assert r.changes[0].startswith("relax tpot_ms to ") and r.changes[-1].startswith("use more GPUs")


@pytest.mark.parametrize("kwargs, field", [
    (dict(users=10, prompt_tokens=-5, output_tokens=10), "prompt_tokens"),
    (dict(users=10, prompt_tokens=100, output_tokens=0), "output_tokens"),
    (dict(users=10, prompt_tokens=200_000, output_tokens=10), "prompt_tokens"),
    (dict(users=10, prompt_tokens=131_000, output_tokens=1000), "output_tokens"),
    (dict(users=10, request_rate=2, prompt_tokens=100, output_tokens=10), "users"),
    (dict(prompt_tokens=100, output_tokens=10), "users"),
    (dict(users=-1, prompt_tokens=100, output_tokens=10), "users"),
    (dict(request_rate=float("nan"), prompt_tokens=100, output_tokens=10), "request_rate"),
    (dict(users=1, prompt_tokens=100, output_tokens=10, prefix_tokens=200), "prefix_tokens"),
    (dict(users=1, prompt_tokens=100, output_tokens=10, tpot_ms=-1), "tpot_ms"),
    (dict(users=1, prompt_tokens=100, output_tokens=10, prompt_p95=50), "prompt_p95"),
    (dict(users=1, prompt_tokens=100, output_tokens=10, prompt_p95=1000), "prompt_p95"),
    (dict(users=1, prompt_tokens=100, output_tokens=10, max_model_len=50), "max_model_len"),
    (dict(users=1, prompt_tokens=100, output_tokens=10, bandwidth_efficiency=1.5), "bandwidth_efficiency"),
    (dict(users=1, prompt_tokens=100, output_tokens=10, prices={"H100": -2}), "prices"),
    (dict(users=1, lengths=[(100, -1)]), "lengths"),
])
def test_bad_input_is_a_typed_error_naming_the_field(kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        recommend(L8, gpus="H100", **kwargs)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_lognormal_p95_and_lengths_files(tmp_path):
    wl = make_workload(users=1, prompt_tokens=1000, output_tokens=200, prompt_p95=3000)
    assert wl.distribution == "lognormal (mean, p95)"
    assert abs(wl.prompt_tokens - 1000) / 1000 < 0.1  # 8 quantile points of the lognormal
    assert wl.prompt_p95 > 2000
    csv = tmp_path / "l.csv"
    csv.write_text("prompt_tokens,output_tokens,count,extra\n1000,100,18,x\n30000,100,2,y\n")
    js = tmp_path / "l.json"
    js.write_text(json.dumps({"requests": [{"prompt_tokens": 1000, "output_tokens": 100, "count": 18},
                                           {"prompt_tokens": 30000, "output_tokens": 100},
                                           {"prompt_tokens": 30000, "output_tokens": 100}]}))
    a, b = make_workload(users=1, lengths=str(csv)), make_workload(users=1, lengths=js)
    assert a.classes == b.classes and a.prompt_p95 == 30000
    bad = tmp_path / "bad.csv"
    bad.write_text("tokens\n5\n")
    with pytest.raises(InvalidInputError, match="prompt_tokens and output_tokens"):
        make_workload(users=1, lengths=str(bad))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "kvplan", *args], capture_output=True, text=True, timeout=120)


def test_cli_json_contract():
    out = _cli("recommend", L8, "--users", "20", "--prompt-tokens", "2k", "--output-tokens", "500", "--gpu", "H100",
               "--gpu", "L40S", "--kv-dtype", "any", "--price", "H100=2.5", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["fits"] is True and data["workload"]["users"] == 20
    for d in data["deployments"]:
        for key in ("gpu", "num_gpus", "tp", "pp", "replicas", "engine", "kv_dtype", "users", "binding",
                    "decode_tokens_per_s_per_user", "ttft_ms", "launch", "memory"):
            assert key in d
        assert isinstance(d["launch"], str) and d["launch"]
    h100 = next(d for d in data["deployments"] if d["gpu"] == "H100-SXM")
    assert h100["usd_per_hour"] == 2.5 * h100["num_gpus"]


def test_cli_errors_are_one_line():
    out = _cli("recommend", L8, "--users", "10", "--prompt-tokens", "100", "--output-tokens", "-3")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "output_tokens" in out.stderr
    out = _cli("recommend", L8, "--users", "10", "--prompt-tokens", "300k", "--output-tokens", "3")
    assert out.returncode == 2 and "maximum context" in out.stderr and out.stderr.count("\n") == 1
    out = _cli("recommend", L8, "--users", "10", "--prompt-tokens", "100", "--output-tokens", "3", "--tpot-ms", "0.01")
    assert out.returncode == 0 and "nothing fits" in out.stdout and "relax tpot_ms" in out.stdout


def test_kvplan_recommend_is_callable_either_way():
    import kvplan.recommend as module

    assert callable(kvplan.recommend) and callable(module)
    r = kvplan.recommend(L8, users=1, prompt_tokens=100, output_tokens=10, gpus="H100")
    assert r.best.num_gpus == 1 and json.dumps(r.to_dict())


def test_engine_version_is_passed_through():
    # vLLM before 0.21 took CUDA graphs out of the 1 − utilization headroom, 0.21 subtracts them from
    # the KV budget and defaults to utilization 0.92: the pinned release's plan is the one used.
    kw = dict(users=1, prompt_tokens=7000, output_tokens=1000, gpus="H100", max_tp=1, max_pp=1)
    old = recommend(L8, engines="vllm@0.19", **kw).best
    assert old.engine_version == "0.19.0"
    p = plan(L8, gpu="H100", max_model_len=8000, engine_version="0.19")
    assert old.max_users_per_instance == p.max_sequences
    assert old.memory.cuda_graph_bytes == p.cuda_graph_bytes
    assert f"--gpu-memory-utilization {p.gpu_memory_utilization:g}" in old.launch
    same = recommend(L8, engine_version="0.19", **kw).best
    assert same.to_dict() == old.to_dict()
    with pytest.raises(InvalidInputError) as err:
        recommend(L8, engines="vllm@0.19", engine_version="0.21", **kw)
    assert err.value.field == "engine_version"


def test_estimate_latency_is_the_roofline_with_efficiencies():
    # One user, 1,000 + 200 tokens, Llama-3.1-8B on one H100: live context 1,100 tokens = 69 blocks =
    # 144,703,488 B; step = (16,094,076,928 + 144,703,488) / 2.5125e12 = 6.4632 ms (memory-bound).
    lat = kvplan.recommend.estimate_latency(L8, gpu="H100", users=1, prompt_tokens=1000, output_tokens=200)
    assert lat.step_ms == pytest.approx((W8 + 69 * MIB2) / BW * 1e3, abs=1e-3)
    assert lat.prefill_ms == pytest.approx(prefill_s(1000) * 1e3, abs=1e-3)
    assert lat.ttft_ms == pytest.approx(lat.prefill_ms + lat.step_ms, abs=1e-3)
    # TP=2 adds 2 all-reduces per layer: 2 × 32 × 20 µs = 1.28 ms per step.
    lat2 = kvplan.recommend.estimate_latency(L8, gpu="H100", users=1, prompt_tokens=1000, output_tokens=200, tp=2,
                                             allreduce_us=20)
    assert lat2.step_ms > 1.28 and lat2.step_ms - 1.28 < lat.step_ms
    halved = kvplan.recommend.estimate_latency(L8, gpu="H100", users=1, prompt_tokens=1000, output_tokens=200,
                                               bandwidth_efficiency=0.375)
    assert halved.step_ms == pytest.approx(2 * lat.step_ms, rel=1e-3)


def test_model_arch_hash_is_memoised_and_consistent():
    a = kvplan.load_model(L8)
    import dataclasses
    b = dataclasses.replace(a)
    assert a == b and hash(a) == hash(b) and hash(a) == hash(a)
    c = dataclasses.replace(a, model_id="other")
    assert c != a


def test_options_for_one_engine_reach_only_that_engine():
    # SGLang's dp_attention and vLLM's block_size are options the other engine does not take: given per
    # engine, each engine's capacity is its own plan() with them. TP 1 cannot host a DP-attention size
    # of 2 (it must divide tp): that size is skipped, not an error.
    kw = dict(users=1, prompt_tokens=7000, output_tokens=1000, gpus="H100", max_tp=2, max_pp=1)
    r = recommend(L8, engines=["vllm", "sglang"], **kw,
                  options_by_engine={"sglang": {"dp_attention": 2}, "vllm": {"block_size": 32}})
    by = {d.engine: d for d in r.deployments}
    sgl = plan(L8, gpu="H100", tp=2, max_model_len=8000, engine="sglang", dp_attention=2)
    vll = plan(L8, gpu="H100", tp=1, max_model_len=8000, engine="vllm", block_size=32)
    assert (by["sglang"].tp, by["sglang"].max_users_per_instance) == (2, sgl.max_sequences)
    assert (by["vllm"].tp, by["vllm"].max_users_per_instance) == (1, vll.max_sequences)
    assert vll.block_size == 32
    # ... and launch with them: the options become the engine's own flags.
    assert by["sglang"].launch.endswith(" --enable-dp-attention --dp-size 2")
    assert by["vllm"].launch.endswith(" --block-size 32")
    with pytest.raises(InvalidInputError) as err:
        recommend(L8, engines="vllm", **kw, options_by_engine={"sglang": {"dp_attention": 2}})
    assert err.value.field == "options_by_engine"


def test_max_num_seqs_given_caps_the_users_per_instance():
    # 100 users, at most 16 sequences per vLLM instance: 7 replicas (ceil(100 / 16)), each launched
    # with --max-num-seqs 16, the cap named as the limit.
    r = recommend(L8, users=100, prompt_tokens=7000, output_tokens=1000, gpus="H100", max_tp=1, max_pp=1,
                  max_num_seqs=16)
    d = r.best
    assert (d.replicas, d.max_users_per_instance, d.binding) == (7, 16, "max_num_seqs")
    assert "--max-num-seqs 16" in d.launch


def test_engine_options_become_launch_flags():
    from kvplan.launch import option_flags, unflagged_note
    assert option_flags("vllm", {"block_size": 32, "max_loras": 4, "max_lora_rank": 64,
                                 "limit_mm_per_prompt": "image=0,video=0", "kv_memory": 1 << 34}) == (
        "--block-size 32 --enable-lora --max-loras 4 --max-lora-rank 64 --limit-mm-per-prompt "
        "'{\"image\":0,\"video\":0}'")
    assert option_flags("sglang", {"block_size": 64, "dp_attention": 2, "max_loras": 8}) == (
        "--page-size 64 --enable-dp-attention --dp-size 2 --enable-lora --max-loras-per-batch 8")
    assert option_flags("llama.cpp", {"ubatch": 256, "swa_full": True}) == "-ub 256 --swa-full"
    assert option_flags("vllm", {}) == "" and unflagged_note("vllm", {"block_size": 16}) is None
    # Speculative decoding's flags name a draft checkpoint kvplan does not know: said, not guessed.
    assert "speculative decoding" in unflagged_note("vllm", {"speculative": "eagle", "num_speculative_tokens": 3})
    r = recommend(L8, users=1, prompt_tokens=7000, output_tokens=1000, gpus="H100", max_tp=1, max_pp=1,
                  speculative="eagle")
    assert any("speculative decoding" in n for n in r.best.notes) and "speculative" not in r.best.launch


def test_a_kv_memory_given_never_picks_a_layout_it_cannot_fit():
    # 30 GiB of KV per GPU replaces the budget, but Llama-3.1-70B's 141 GB of bf16 weights leave no
    # room for it on one or two H100s: the answer starts at TP 4, where weights + 30 GiB fit.
    r = recommend("meta-llama/Llama-3.1-70B", users=100, prompt_tokens=7000, output_tokens=1000, gpus="H100",
                  kv_memory="30GiB")
    for d in r.deployments:
        p = plan("meta-llama/Llama-3.1-70B", gpu="H100", tp=d.tp, pp=d.pp, max_model_len=8000, kv_memory="30GiB")
        assert p.free_bytes >= 0, (d.tp, d.pp)
    assert r.best.tp * r.best.pp >= 4
