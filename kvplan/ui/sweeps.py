"""Tables the pages draw: core results swept over contexts, engines, dtypes, models and GPUs.

Pure (no streamlit, no plotly): every number comes from `kvplan.kv_cache` / `kvplan.plan`; this module
only arranges them into rows (lists of dicts) that become charts, tables and CSV/JSON downloads.
A row that the core rejects (an engine that cannot store a dtype, a TP that does not divide) becomes
an entry in `errors` instead of failing the whole table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import kvplan
from kvplan.errors import DoesNotFitError, KvplanError
from kvplan.layers import MLA, FullAttention, ModelArch

MIN_CONTEXT = 1024
DEFAULT_MAX_CONTEXT = 131072
KIND_LABELS = {"full": "full attention", "sliding": "sliding window", "chunked": "chunked local",
               "mla": "latent (MLA)", "state": "recurrent state", "padding": "page padding"}


@dataclass
class Table:
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def context_grid(max_context: int, *, min_context: int = MIN_CONTEXT, points: int = 48) -> list[int]:
    """Log-spaced token counts from `min_context` to `max_context`, both included, powers of two kept."""
    hi = max(max_context, min_context)
    lo = min(min_context, hi)
    grid = {lo, hi}
    if hi > lo:
        step = (math.log(hi) - math.log(lo)) / (points - 1)
        grid.update(int(round(math.exp(math.log(lo) + i * step))) for i in range(points))
    p = 1
    while p <= hi:
        if p >= lo:
            grid.add(p)
        p *= 2
    return sorted(grid)


def max_context(arch: ModelArch, context_len: int = 0) -> int:
    """The sweep's right end: the model's max context (or 128k if unknown), at least `context_len`."""
    return max(arch.max_position_embeddings or DEFAULT_MAX_CONTEXT, context_len, MIN_CONTEXT)


def _err(label: str, err: KvplanError) -> str:
    return f"{label}: {err}"


def size_by_kind(arch: ModelArch, contexts: list[int], *, engine: str, kv_dtype: str,
                 tp: int = 1, pp: int = 1) -> Table:
    """Per-layer-kind KV bytes (one sequence, most-loaded GPU) at each context: the stacked chart."""
    out = Table()
    try:
        ests = kvplan.sweep(arch, context_lens=contexts, engine=engine, kv_dtype=kv_dtype, tp=tp, pp=pp)
    except KvplanError as err:
        out.errors.append(_err(f"{engine} / {kv_dtype}", err))
        return out
    for ctx, est in zip(contexts, ests):
        for kb in est.breakdown:
            out.rows.append({"context_len": ctx, "kind": KIND_LABELS.get(kb.kind, kb.kind),
                             "num_layers": kb.num_layers, "tokens_per_seq": kb.tokens_per_seq,
                             "bytes": kb.bytes})
    return out


def size_lines(arch: ModelArch, contexts: list[int], *, engines: list[str], kv_dtypes: list[str],
               tp: int = 1, pp: int = 1) -> Table:
    """Total KV bytes per sequence at each context, one series per (engine, dtype)."""
    out = Table()
    for engine in engines:
        for dtype in kv_dtypes:
            try:
                ests = kvplan.sweep(arch, context_lens=contexts, engine=engine, kv_dtype=dtype, tp=tp, pp=pp)
            except KvplanError as err:
                out.errors.append(_err(f"{engine} / {dtype}", err))
                continue
            for ctx, est in zip(contexts, ests):
                out.rows.append({"series": f"{engine} · {est.kv_dtype}", "engine": engine,
                                 "kv_dtype": est.kv_dtype, "context_len": ctx, "kv_bytes": est.kv_bytes})
    return out


def size_at(arch: ModelArch, context_len: int, *, engines: list[str], kv_dtypes: list[str],
            batch: int = 1, tp: int = 1, pp: int = 1) -> tuple[Table, dict[tuple[str, str], Any]]:
    """One row per (engine, dtype) at `context_len`: bytes per token, KV, K/V/state split.

    Also returns the KVEstimate objects by (engine, requested dtype), for the "show the math" panel.
    """
    out, ests = Table(), {}
    for engine in engines:
        for dtype in kv_dtypes:
            try:
                est = kvplan.kv_cache(arch, context_len=context_len, batch=batch, engine=engine,
                                      kv_dtype=dtype, tp=tp, pp=pp)
            except KvplanError as err:
                out.errors.append(_err(f"{engine} / {dtype}", err))
                continue
            ests[(engine, dtype)] = est
            out.rows.append({"engine": engine, "kv_dtype": est.kv_dtype, "context_len": context_len,
                             "batch": batch, "bytes_per_token": est.bytes_per_token,
                             "kv_bytes": est.kv_bytes, "k_bytes": est.k_bytes, "v_bytes": est.v_bytes,
                             "state_bytes": est.state_bytes, "block_size": est.block_size,
                             "notes": "; ".join(est.notes)})
    return out, ests


def compare_models(archs: list[ModelArch], *, context_len: int, engines: list[str], kv_dtype: str,
                   gpu_label: str | None = None, plan_fn=None, **plan_kwargs: Any) -> Table:
    """Models side by side per engine: bytes per token, KV at `context_len`, users per GPU.

    `plan_fn` is `kvplan.plan` when the planner is available (without it users per GPU stays empty);
    `plan_kwargs` carry the GPU (`gpu=` or `gpu_memory=`); `gpu_label` names it in the rows.
    """
    out = Table()
    for arch in archs:
        for engine in engines:
            try:
                est = kvplan.kv_cache(arch, context_len=context_len, engine=engine, kv_dtype=kv_dtype)
            except KvplanError as err:
                out.errors.append(_err(f"{arch.model_id} / {engine}", err))
                continue
            row = {"model": arch.model_id, "engine": engine, "kv_dtype": est.kv_dtype,
                   "context_len": context_len, "bytes_per_token": est.bytes_per_token,
                   "kv_bytes": est.kv_bytes, "gpu": gpu_label, "users_per_gpu": None, "fits": None}
            if plan_fn is not None:
                try:
                    p = plan_fn(arch, max_model_len=context_len, engine=engine, kv_dtype=kv_dtype,
                                **plan_kwargs)
                    row["users_per_gpu"] = p.users_per_gpu
                    row["fits"] = p.fits
                except KvplanError as err:
                    row["fits"] = False
                    out.errors.append(_err(f"{arch.model_id} / {engine} on {gpu_label}", err))
            out.rows.append(row)
    return out


def users_vs_context(arch: ModelArch, contexts: list[int], *, gpus: dict[str, dict[str, Any]], plan_fn,
                     **plan_kwargs: Any) -> Table:
    """Concurrent full-length users per GPU at each context, one series per GPU choice.

    `gpus` maps a label to the GPU arguments of `plan_fn` (`{"gpu": "H100-SXM"}` or `{"gpu_memory": N}`).
    """
    out = Table()
    for gpu, gpu_args in gpus.items():
        for ctx in contexts:
            try:
                p = plan_fn(arch, max_model_len=ctx, **gpu_args, **plan_kwargs)
            except DoesNotFitError:
                # Past the longest context that fits (or the weights alone overflow): 0 users.
                out.rows.append({"gpu": gpu, "context_len": ctx, "users_per_gpu": 0.0})
                continue
            except KvplanError as err:
                out.errors.append(_err(gpu, err))
                break
            out.rows.append({"gpu": gpu, "context_len": ctx, "users_per_gpu": p.users_per_gpu})
    return out


def memory_rows(plan: Any, gpu: str) -> list[dict[str, Any]]:
    """A plan's per-GPU memory split: weights / KV / activations / overhead / free (bytes)."""
    overhead = (getattr(plan, "non_torch_bytes", 0) or 0) + (getattr(plan, "cuda_graph_bytes", 0) or 0)
    parts = [("weights", plan.weights_bytes), ("KV cache", plan.kv_budget_bytes),
             ("activations", plan.activation_bytes), ("overhead", overhead), ("free", plan.free_bytes)]
    return [{"gpu": gpu, "part": name, "bytes": int(max(value or 0, 0))} for name, value in parts]


# --- Why a KV cache ---------------------------------------------------------------------------

def kv_projection_flops_per_token(arch: ModelArch) -> int:
    """FLOPs to compute one token's cached K/V (or MLA latent) over all layers: 2·hidden·width each.

    Recurrent-state and shared layers project nothing into a cache and are left out.
    """
    hidden = arch.weight_dims.hidden_size
    total = 0
    for spec in arch.layers:
        if isinstance(spec, FullAttention):
            total += 2 * hidden * spec.elems_per_token()
        elif isinstance(spec, MLA):
            total += 2 * hidden * spec.latent_dim
    return total


def cache_tradeoff(arch: ModelArch, *, prompt_len: int, gen_lens: list[int], engine: str,
                   kv_dtype: str) -> Table:
    """K/V projection work over a generation without a cache (O(n²)) and with one (O(n)), and the
    bytes the cache costs, after each number of generated tokens.

    Without a cache every step re-projects the whole sequence so far: Σ_{t=1..n} (p + t) tokens.
    With one, each token is projected once: p + n tokens.
    """
    out = Table()
    per_tok = kv_projection_flops_per_token(arch)
    for n in gen_lens:
        without = n * prompt_len + n * (n + 1) // 2
        with_cache = prompt_len + n
        try:
            kv = kvplan.kv_cache(arch, context_len=prompt_len + n, engine=engine, kv_dtype=kv_dtype).kv_bytes
        except KvplanError as err:
            out.errors.append(str(err))
            return out
        out.rows.append({"generated_tokens": n, "tokens_projected_without_cache": without,
                         "tokens_projected_with_cache": with_cache,
                         "kv_flops_without_cache": without * per_tok,
                         "kv_flops_with_cache": with_cache * per_tok, "cache_bytes": kv})
    return out


# --- Validation reports -----------------------------------------------------------------------

def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def validation_rows(report: Any, name: str) -> Table:
    """Rows (predicted vs measured, error %) from a `kvplan validate` report dict.

    The report holds `model`, `engine`, `device` and `results: [{context_len, predicted_bytes,
    measured_bytes, ...}]`; the error is recomputed here as (predicted − measured) / measured, so it
    does not depend on how the report stored it. Malformed reports and entries become `errors`.
    """
    out = Table()
    if not isinstance(report, dict):
        out.errors.append(f"{name}: expected a JSON object with a `results` list")
        return out
    results = report.get("results")
    if not isinstance(results, list) or not results:
        out.errors.append(f"{name}: no `results` list (is this a `kvplan validate --out` report?)")
        return out
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            out.errors.append(f"{name}: results[{i}] is not an object")
            continue
        ctx = _int_or_none(r.get("context_len", r.get("num_tokens")))
        pred, meas = _int_or_none(r.get("predicted_bytes")), _int_or_none(r.get("measured_bytes"))
        if ctx is None or (pred is None and meas is None):
            out.errors.append(f"{name}: results[{i}] lacks context_len / predicted_bytes / measured_bytes")
            continue
        err = None if pred is None or not meas else round(100 * (pred - meas) / meas, 3)
        out.rows.append({"report": name, "model": str(report.get("model", "?")),
                         "engine": str(report.get("engine", "?")), "device": str(report.get("device", "?")),
                         "context_len": ctx, "batch": _int_or_none(r.get("batch")) or 1,
                         "predicted_bytes": pred, "measured_bytes": meas, "error_pct": err})
    return out
