"""Bandwidth/compute roofline for decode steps and prefill (TTFT), per GPU.

A decode step reads every weight the step touches and the whole batch's KV cache once, and does
about 2 FLOPs per active parameter per token plus the attention FLOPs, so

    step time ≈ max(bytes read / bandwidth, FLOPs / peak FLOP/s)

Prefill of a P-token prompt is compute-bound: 2·active·P FLOPs plus causal attention (P²/2 per layer).
These are *peak* figures: real engines reach roughly 60-85 % of HBM bandwidth at small batch (the
README table compares with measured vLLM/SGLang numbers). This module knows nothing of engines'
allocation rules or budgets; the planner gives it the bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kvplan.layers import MLA, ChunkedLocal, FullAttention, ModelArch, SlidingWindow

__all__ = ["step_time_s", "Roofline", "decode_roofline", "prefill_time_s", "attention_flops_per_token",
           "expected_expert_fraction"]


def step_time_s(bytes_read: int, flops: float, bandwidth_bytes_per_s: int, peak_flops: int) -> float:
    """max(bytes / bandwidth, FLOPs / peak), in seconds; a 0 (unknown) rate drops its term.

    >>> round(step_time_s(10 * 10**9, 0, 3_350_000_000_000, 0) * 1e3, 2)  # 10 GB of KV on an H100
    2.99
    """
    memory = bytes_read / bandwidth_bytes_per_s if bandwidth_bytes_per_s else 0.0
    compute = flops / peak_flops if peak_flops else 0.0
    return max(memory, compute)


@functools.lru_cache(maxsize=1024)
def attention_flops_per_token(arch: ModelArch, context_len: int) -> int:
    """FLOPs of QKᵀ and PV for one new token attending to `context_len` cached tokens (all layers).

    Memoised: a recommendation asks for the same few lengths on every candidate layout."""
    heads = arch.weight_dims.num_attention_heads
    total = 0
    for spec in arch.layers:
        if isinstance(spec, MLA):
            # Absorbed MLA attends in the latent space: scores over kv_lora+rope, values over kv_lora.
            total += 2 * spec.num_heads * (2 * spec.kv_lora_rank + spec.rope_dim) * context_len
        elif isinstance(spec, FullAttention):
            seen = context_len
            if isinstance(spec, SlidingWindow):
                seen = min(context_len, spec.window)
            elif isinstance(spec, ChunkedLocal):
                seen = min(context_len, spec.chunk)
            total += 2 * heads * (spec.head_dim + spec.head_dim_v) * seen
    return total


def expected_expert_fraction(num_experts: int, top_k: int, batch: int) -> float:
    """Expected share of routed experts a batch touches (uniform routing): 1 − (1 − k/E)^B."""
    if not num_experts:
        return 1.0
    return 1.0 - (1.0 - top_k / num_experts) ** batch


@dataclass(frozen=True)
class Roofline:
    """One decode step on one GPU of the layout, and the rates it implies."""

    batch: int
    context_len: int
    bytes_read: int  # per GPU per step: weights touched + the batch's KV
    flops: float  # per GPU per step
    step_ms: float  # one token for every sequence, through all pipeline stages
    tokens_per_s_per_user: float
    tokens_per_s_per_gpu: float
    bound: str  # "memory" | "compute" | "unknown"


def decode_roofline(*, batch: int, context_len: int, dense_weight_bytes: int, expert_weight_bytes: int,
                    kv_bytes: int, active_params: int, attention_flops: int, num_experts: int, top_k: int,
                    tp: int, pp: int, bandwidth_bytes_per_s: int, peak_flops: int) -> Roofline:
    """Decode roofline per GPU. Weight and KV bytes are per GPU (one stage's share under PP);
    `active_params` and `attention_flops` are whole-model, per token. A token crosses the `pp` stages
    one after another, so the step time is `pp` stage times; tokens/s per GPU divides by tp·pp."""
    fraction = expected_expert_fraction(num_experts, top_k, batch)
    bytes_read = dense_weight_bytes + int(expert_weight_bytes * fraction) + kv_bytes
    flops = batch * (2 * active_params + attention_flops) / (tp * pp)
    stage_s = step_time_s(bytes_read, flops, bandwidth_bytes_per_s, peak_flops)
    if not stage_s:
        return Roofline(batch, context_len, bytes_read, flops, 0.0, 0.0, 0.0, "unknown")
    step_s = stage_s * pp
    memory_s = bytes_read / bandwidth_bytes_per_s if bandwidth_bytes_per_s else 0.0
    bound = "memory" if memory_s >= stage_s else "compute"
    return Roofline(batch, context_len, bytes_read, flops, step_s * 1e3, 1.0 / step_s,
                    batch / step_s / (tp * pp), bound)


def prefill_time_s(arch: ModelArch, *, prompt_len: int, active_params: int, weight_bytes: int, tp: int,
                   pp: int, bandwidth_bytes_per_s: int, peak_flops: int) -> float:
    """TTFT lower bound for one `prompt_len`-token prompt: all stages in turn, each compute-bound
    (or reading its weights once, if that is slower)."""
    # Causal attention: token i attends to i tokens, so Σ attention_flops(i) ≈ attention_flops(P)·P/2
    # for full layers (sliding layers are capped by the window inside attention_flops_per_token).
    attention = attention_flops_per_token(arch, prompt_len) * prompt_len // 2
    flops = (2 * active_params * prompt_len + attention) / tp
    return pp * step_time_s(weight_bytes, flops / pp, bandwidth_bytes_per_s, peak_flops)
