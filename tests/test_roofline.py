"""Roofline: the seeds' 10 GB / 3.35 TB/s example, and Llama-3.1-8B on one H100 vs measured decode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvplan import load_model
from kvplan.gpus import get_gpu
from kvplan.planner import plan
from kvplan.roofline import (attention_flops_per_token, decode_roofline, expected_expert_fraction,
                             prefill_time_s, step_time_s)

REF = json.loads((Path(__file__).parent / "golden" / "reference_figures.json").read_text())


def test_seed_example_10gb_kv_on_h100_is_3ms():
    h100 = get_gpu("H100")
    assert h100.bandwidth_bytes_per_s == 3_350_000_000_000
    assert step_time_s(10 * 10**9, 0, h100.bandwidth_bytes_per_s, h100.bf16_dense_flops) * 1e3 == \
        pytest.approx(2.985, abs=0.001)
    assert step_time_s(0, 989e12, 0, 989 * 10**12) == pytest.approx(1.0)  # compute term alone
    assert step_time_s(123, 456, 0, 0) == 0.0  # both rates unknown


def _measured(batch: int) -> dict:
    return next(r for r in REF["decode_throughput"] if r["model"] == "meta-llama/Llama-3.1-8B-Instruct"
                and r["gpu"].startswith("H100") and r["batch"] == batch)


@pytest.mark.parametrize("batch", [1, 16, 64])
def test_llama8b_h100_roofline_bounds_measured(batch):
    """The roofline is an upper bound on decode speed: measured TPOT is slower, and at batch 1 within
    the usual 60-85 % of peak bandwidth (yobitelcomm concurrency sweep, vLLM 0.21.0, H100 80GB)."""
    measured = _measured(batch)
    p = plan("meta-llama/Llama-3.1-8B-Instruct", gpu="H100", max_model_len=8192, decode_batch=batch,
             decode_context=1024)
    assert p.decode_bound == "memory"
    assert p.decode_ms_per_step < measured["tpot_p50_ms"], measured["source"]
    assert p.decode_tokens_per_s_per_gpu > measured["tokens_per_s"]
    if batch == 1:
        # 16.06 GB of weights + 134 MB of KV at 3.35 TB/s = 4.83 ms; measured 6.48 ms (75 % of peak).
        assert p.decode_ms_per_step == pytest.approx(4.834, abs=0.01)
        assert 0.6 < p.decode_ms_per_step / measured["tpot_p50_ms"] < 0.85


def test_batch64_reads_kv_too():
    b1 = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, decode_batch=1, decode_context=1024)
    b64 = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, decode_batch=64, decode_context=1024)
    kv64 = 64 * 1024 * 131072  # 128 KiB per token
    assert b64.decode_ms_per_step == pytest.approx((16060522496 + kv64) / 3.35e12 * 1e3, rel=1e-6)
    assert b64.decode_tokens_per_s_per_gpu > 40 * b1.decode_tokens_per_s_per_gpu


def test_compute_bound_at_huge_batch_and_prefill():
    arch = load_model("meta-llama/Llama-3.1-8B")
    r = decode_roofline(batch=4096, context_len=16, dense_weight_bytes=16060522496, expert_weight_bytes=0,
                        kv_bytes=4096 * 16 * 131072, active_params=8030261248,
                        attention_flops=attention_flops_per_token(arch, 16), num_experts=0, top_k=0, tp=1, pp=1,
                        bandwidth_bytes_per_s=3_350_000_000_000, peak_flops=989 * 10**12)
    assert r.bound == "compute"
    # TTFT of 8192 tokens: (2·8.03e9·8192 + causal attention 1.76e13) / 989e12 ≈ 151 ms.
    ttft = prefill_time_s(arch, prompt_len=8192, active_params=8030261248, weight_bytes=16060522496, tp=1, pp=1,
                          bandwidth_bytes_per_s=3_350_000_000_000, peak_flops=989 * 10**12)
    assert ttft * 1e3 == pytest.approx(150.8, abs=0.5)
    tp2 = prefill_time_s(arch, prompt_len=8192, active_params=8030261248, weight_bytes=16060522496 // 2, tp=2,
                         pp=1, bandwidth_bytes_per_s=3_350_000_000_000, peak_flops=989 * 10**12)
    assert tp2 == pytest.approx(ttft / 2)


def test_moe_reads_active_experts_only():
    assert expected_expert_fraction(128, 4, 1) == pytest.approx(4 / 128)
    assert expected_expert_fraction(128, 4, 512) > 0.99
    assert expected_expert_fraction(0, 0, 8) == 1.0
    b1 = plan("openai/gpt-oss-120b", gpu="H200", max_model_len=8192, decode_batch=1, decode_context=1024)
    b256 = plan("openai/gpt-oss-120b", gpu="H200", max_model_len=8192, decode_batch=256, decode_context=1024)
    # Batch 1 reads ~5 % of the 65 GB of weights; batch 256 touches nearly every expert.
    assert b1.decode_ms_per_step < 0.25 * b256.decode_ms_per_step


def test_sliding_layers_cap_attention_flops():
    gemma = load_model("google/gemma-2-9b")
    # 21 global layers grow with the context; the 21 sliding (4096) layers do not.
    grow = attention_flops_per_token(gemma, 100_000) - attention_flops_per_token(gemma, 50_000)
    assert grow == 21 * 2 * 16 * (256 + 256) * 50_000
    assert attention_flops_per_token(gemma, 4096) == 42 * 2 * 16 * 512 * 4096
