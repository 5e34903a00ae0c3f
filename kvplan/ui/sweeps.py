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
from kvplan.engines import get_engine
from kvplan.engines.common import check_tp
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


TP_SIZES = (1, 2, 4, 8, 16, 32, 64)
# What each engine needs to run past the model's max_position_embeddings (its own override).
LONG_CONTEXT_OVERRIDE = {
    "vllm": "vLLM refuses it unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1",
    "sglang": "SGLang refuses it unless SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1",
    "llama.cpp": "llama.cpp starts with a warning (n_ctx_per_seq > n_ctx_train)",
    "trtllm": "TensorRT-LLM needs max_seq_len set past the config",
    "transformers": "transformers runs it, with quality past the trained length unknown",
    "naive": "the textbook formula has no limit",
}


def base_engine(engine: str) -> str:
    """"vllm@0.19" -> "vllm" (pages pass the sidebar's engine with its version)."""
    return str(engine).partition("@")[0]


def layout(engine: str, gpus: int) -> dict[str, int]:
    """How `engine` splits one instance over `gpus` GPUs: tensor parallel, except llama.cpp, which
    splits layers (its `--split-mode layer`, kvplan's pp)."""
    return {"tp": 1, "pp": gpus} if base_engine(engine) == "llama.cpp" else {"tp": gpus, "pp": 1}


def tp_choices(arch: ModelArch, *, max_tp: int = 64) -> list[int]:
    """Tensor-parallel sizes the engines can shard this model with (powers of two up to `max_tp`)."""
    out = []
    for tp in TP_SIZES:
        if tp > max_tp:
            break
        try:
            check_tp(arch, tp)
        except KvplanError:
            continue
        out.append(tp)
    return out or [1]


def kv_dtype_choices(engine: str) -> list[str]:
    """KV cache dtypes `engine` can store ("auto" = the model's dtype first)."""
    return ["auto", *get_engine(engine).KV_DTYPES]


def context_limit(arch: ModelArch, context_len: int, *, engine: str, allow_beyond: bool) -> tuple[int, str | None]:
    """(tokens to size, warning or None): past the model's maximum context the model's maximum is
    used unless `allow_beyond` (the override every engine offers in some form; the warning names it)."""
    most = arch.max_position_embeddings
    if not most or context_len <= most:
        return context_len, None
    how = LONG_CONTEXT_OVERRIDE.get(base_engine(engine), "engines need an explicit override")
    if allow_beyond:
        return context_len, (f"{context_len:,} tokens is beyond the model's maximum context ({most:,}); sized "
                             f"anyway as asked: {how}, and quality past the trained length is unknown.")
    return most, (f"{context_len:,} tokens is beyond the model's maximum context ({most:,}): sizing {most:,}. "
                  f"Tick \"Allow beyond the model's maximum\" to size it anyway ({how}).")


def merge_identical_series(rows: list[dict[str, Any]], *, key: str = "series",
                           value: str = "kv_bytes") -> list[dict[str, Any]]:
    """Series whose values are identical at every x drawn once, named "a = b" (identical lines would
    hide each other on a chart)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r[key], []).append(r)
    groups: dict[tuple, list[str]] = {}
    for name, rs in by.items():
        groups.setdefault(tuple((r["context_len"], r[value]) for r in rs), []).append(name)
    out = []
    for names in groups.values():
        label = " = ".join(names)
        out += [{**r, key: label} for r in by[names[0]]]
    return out


def split(engine: str, tp: int, pp: int = 1) -> dict[str, int]:
    """`tp` × `pp` GPUs per instance as `engine` uses them (llama.cpp: layers, see `layout`)."""
    if base_engine(engine) == "llama.cpp" and tp > 1:
        return {"tp": 1, "pp": tp * pp}
    return {"tp": tp, "pp": pp}


def _err(label: str, err: KvplanError) -> str:
    return f"{label}: {err}"


Options = tuple  # ((engine, ((name, value), ...)), ...): each engine's own options, hashable (a cache key)


def engine_options(options: Options | None, engine: str) -> dict[str, Any]:
    """`engine`'s options out of `options` (none when it has no entry)."""
    for name, items in options or ():
        if name == engine:
            return dict(items)
    return {}


def size_by_kind(arch: ModelArch, contexts: list[int], *, engine: str, kv_dtype: str,
                 tp: int = 1, pp: int = 1, batch: int = 1, options: Options | None = None) -> Table:
    """Per-layer-kind KV bytes (`batch` sequences, most-loaded GPU) at each context: the stacked chart.
    `options`: each engine's own options (`engine_options`), as `kvplan.kv_cache` takes them."""
    out = Table()
    try:
        ests = kvplan.sweep(arch, context_lens=contexts, engine=engine, kv_dtype=kv_dtype, batch=batch,
                            **split(engine, tp, pp), **engine_options(options, engine))
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
               tp: int = 1, pp: int = 1, batch: int = 1, options: Options | None = None) -> Table:
    """Total KV bytes of `batch` sequences at each context, one series per (engine, dtype) the engine
    can store (other pairs are skipped: `kv_dtype_choices`)."""
    out = Table()
    for engine in engines:
        for dtype in kv_dtypes:
            if dtype not in kv_dtype_choices(engine):
                continue
            try:
                ests = kvplan.sweep(arch, context_lens=contexts, engine=engine, kv_dtype=dtype, batch=batch,
                                    **split(engine, tp, pp), **engine_options(options, engine))
            except KvplanError as err:
                out.errors.append(_err(f"{engine} / {dtype}", err))
                continue
            for ctx, est in zip(contexts, ests):
                out.rows.append({"series": f"{engine} · {est.kv_dtype}", "engine": engine,
                                 "kv_dtype": est.kv_dtype, "context_len": ctx, "kv_bytes": est.kv_bytes})
    return out


def size_at(arch: ModelArch, context_len: int, *, engines: list[str], kv_dtypes: list[str],
            batch: int = 1, tp: int = 1, pp: int = 1,
            options: Options | None = None) -> tuple[Table, dict[tuple[str, str], Any]]:
    """One row per (engine, dtype) at `context_len`: bytes per token, KV, K/V/state split.

    Also returns the KVEstimate objects by (engine, requested dtype), for the "show the math" panel.
    """
    out, ests = Table(), {}
    for engine in engines:
        for dtype in kv_dtypes:
            if dtype not in kv_dtype_choices(engine):
                continue
            try:
                est = kvplan.kv_cache(arch, context_len=context_len, batch=batch, engine=engine,
                                      kv_dtype=dtype, **split(engine, tp, pp), **engine_options(options, engine))
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


# Engines whose memory knob is a fraction of the GPU; the others use all memory (llama.cpp, HF, naive).
FRACTION_ENGINES = ("vllm", "sglang", "trtllm")


def same_fraction_gpu(engine: str, *, gpu: str | None, gpu_memory: int | None, gpu_memory_bytes: int | None,
                      fraction: float) -> dict[str, Any]:
    """`kvplan.plan` arguments giving `engine` the same `fraction` of the GPU as every other engine:
    the engine's own knob where it has one, else a GPU of `fraction` × its memory."""
    if base_engine(engine) in FRACTION_ENGINES:
        where = {"gpu": gpu} if gpu else {"gpu_memory": gpu_memory}
        return {**where, "gpu_memory_utilization": fraction}
    total = gpu_memory_bytes or gpu_memory
    if not total and gpu:
        from kvplan.gpus import get_gpu
        total = get_gpu(gpu).memory_bytes
    return {"gpu_memory": int((total or 0) * fraction)}


def fitting_plan(arch: ModelArch, *, context_len: int, max_tp: int = 8, plan_fn=None, **plan_kwargs: Any):
    """The plan at the smallest TP (of `tp_choices`, up to `max_tp`) where one `context_len` request
    fits, on tp GPUs; the TP-`max_tp` plan (not fitting) if none does."""
    plan_fn = plan_fn or kvplan.plan
    last = None
    engine = plan_kwargs.get("engine", "vllm")
    sizes = [n for n in TP_SIZES if n <= max_tp] if base_engine(engine) == "llama.cpp" \
        else tp_choices(arch, max_tp=max_tp)
    for n in sizes:
        last = plan_fn(arch, max_model_len=context_len, num_gpus=n, **layout(engine, n), **plan_kwargs)
        if last.max_sequences >= 1:
            return last
    return last


def compare_models(archs: list[ModelArch], *, context_len: int, engines: list[str], kv_dtype: str,
                   gpu_label: str | None = None, gpu: str | None = None, gpu_memory: int | None = None,
                   gpu_memory_bytes: int | None = None, fraction: float = 0.9, plan_fn=None,
                   options: Options | None = None, plan_options: Options | None = None) -> Table:
    """Models side by side per engine: bytes per token, KV at `context_len`, and, when a GPU is given,
    users per GPU at the smallest TP that fits one request, every engine given the same `fraction` of
    the GPU (`same_fraction_gpu`). A dtype an engine cannot store is skipped for that engine.
    `options` / `plan_options`: each engine's options for `kvplan.kv_cache` / `kvplan.plan`."""
    out = Table()
    has_gpu = bool(gpu or gpu_memory)
    for arch in archs:
        for engine in engines:
            dtype = kv_dtype if kv_dtype in kv_dtype_choices(engine) else "auto"
            try:
                est = kvplan.kv_cache(arch, context_len=context_len, engine=engine, kv_dtype=dtype,
                                      **engine_options(options, engine))
            except KvplanError as err:
                out.errors.append(_err(f"{arch.model_id} / {engine}", err))
                continue
            row = {"model": arch.model_id, "engine": engine, "kv_dtype": est.kv_dtype,
                   "context_len": context_len, "bytes_per_token": est.bytes_per_token,
                   "kv_bytes": est.kv_bytes, "gpu": gpu_label, "tp": None, "users": None,
                   "users_per_gpu": None, "fits": None}
            if has_gpu:
                try:
                    # The comparison is of KV memory at one context for every model: vLLM's refusal of a
                    # max_model_len above the model's maximum is not what is compared here.
                    p = fitting_plan(arch, context_len=context_len, engine=engine, kv_dtype=dtype, plan_fn=plan_fn,
                                     allow_long_max_model_len=True, **engine_options(plan_options, engine),
                                     **same_fraction_gpu(engine, gpu=gpu, gpu_memory=gpu_memory,
                                                         gpu_memory_bytes=gpu_memory_bytes, fraction=fraction))
                    fits = p.max_sequences >= 1
                    row.update(tp=p.tp * p.pp, users=p.total_sequences if fits else 0,
                               users_per_gpu=p.users_per_gpu if fits else 0.0, fits=fits)
                except KvplanError as err:
                    row["fits"] = False
                    out.errors.append(_err(f"{arch.model_id} / {engine} on {gpu_label}", err))
            out.rows.append(row)
    return out


def users_vs_context(arch: ModelArch, contexts: list[int], *, gpus: dict[str, dict[str, Any]], plan_fn=None,
                     **plan_kwargs: Any) -> Table:
    """Concurrent full-length users at each context, one series per GPU choice.

    `gpus` maps a label to the GPU arguments of `plan_fn` (`{"gpu": "H100-SXM"}` or `{"gpu_memory": N}`).
    `users` is whole `context_len`-token sequences the whole deployment runs at once (an int: the
    headline number); `users_per_gpu` is the engine's fractional concurrency per GPU; a context that
    does not fit (or weights that alone overflow) has 0 users.
    """
    plan_fn = plan_fn or kvplan.plan
    out = Table()
    for gpu, gpu_args in gpus.items():
        for ctx in contexts:
            try:
                p = plan_fn(arch, max_model_len=ctx, **gpu_args, **plan_kwargs)
            except DoesNotFitError:
                out.rows.append({"gpu": gpu, "context_len": ctx, "users": 0, "users_per_gpu": 0.0})
                continue
            except KvplanError as err:
                out.errors.append(_err(gpu, err))
                break
            fits = p.max_sequences >= 1
            out.rows.append({"gpu": gpu, "context_len": ctx, "users": p.total_sequences if fits else 0,
                             "users_per_gpu": p.users_per_gpu if fits else 0.0})
    return out


def longest_fitting(rows: list[dict[str, Any]], *, users: int = 1) -> dict[str, int]:
    """Per GPU series, the longest swept context at which at least `users` (at least 1) fit."""
    need = max(1, users)
    out: dict[str, int] = {}
    for r in rows:
        if r["users"] >= need and r["context_len"] > out.get(r["gpu"], 0):
            out[r["gpu"]] = r["context_len"]
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
                   kv_dtype: str, tp: int = 1, pp: int = 1, options: Options | None = None) -> Table:
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
            kv = kvplan.kv_cache(arch, context_len=prompt_len + n, engine=engine, kv_dtype=kv_dtype,
                                 **split(engine, tp, pp), **engine_options(options, engine)).kv_bytes
        except KvplanError as err:
            out.errors.append(str(err))
            return out
        out.rows.append({"generated_tokens": n, "tokens_projected_without_cache": without,
                         "tokens_projected_with_cache": with_cache,
                         "kv_flops_without_cache": without * per_tok,
                         "kv_flops_with_cache": with_cache * per_tok, "cache_bytes": kv})
    return out


# --- Validation reports -----------------------------------------------------------------------

MAX_REPORT_INT = 1 << 62  # bytes and tokens in a report are below 2^62; beyond is a broken report


def _int_or_none(value: Any) -> int | None:
    """A report's number as an int, None when it is not one or is out of range (10**400, 1e308)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and abs(value) < MAX_REPORT_INT:
        value = int(value)
    if isinstance(value, int) and abs(value) < MAX_REPORT_INT:
        return value
    return None


def _report_text(value: Any, limit: int = 120) -> str:
    """A report's text field for display: strings clipped, numbers only when small, else "?"."""
    if isinstance(value, str):
        return value[:limit] or "?"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e30:
        return str(value)
    return "?"


def device_label(report: dict[str, Any]) -> str:
    """Where a validate report was measured, as a person would say it: "CPU (x86_64)" for a CPU run
    (which measures tensor bytes, not a GPU allocator), the GPU's name for a CUDA run."""
    device = _report_text(report.get("device")).lower()
    name = _report_text(report.get("device_name"))
    if device.startswith("cpu"):
        return f"CPU ({name})" if name != "?" else "CPU"
    if device.startswith("cuda"):
        return name if name != "?" else "CUDA GPU"
    return device if device != "?" else "unknown device"


def _float_or_none(value: Any, limit: float = 1e12) -> float | None:
    """A report's measurement as a float, None when it is not a finite number below `limit`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and abs(value) >= MAX_REPORT_INT:
        return None
    value = float(value)
    return value if math.isfinite(value) and abs(value) < limit else None


def environment_label(report: dict[str, Any]) -> str:
    """The software a GPU report was measured with: driver, CUDA, torch, transformers (what is given)."""
    parts = [f"{label} {_report_text(report.get(key), 40)}" for key, label in
             (("driver_version", "driver"), ("cuda_version", "CUDA"), ("torch_version", "torch"),
              ("transformers_version", "transformers")) if report.get(key) is not None]
    return ", ".join(parts)


def decode_rows(report: Any, name: str) -> list[dict[str, Any]]:
    """A GPU report's decode reads: µs per step (attention over the paged cache) beside the bandwidth
    roofline, and the share of peak bandwidth reached. Nothing for a CPU report (no roofline there); rows
    with a malformed number are left out."""
    paged = report.get("paged") if isinstance(report, dict) else None
    decode = paged.get("decode") if isinstance(paged, dict) else None
    if not isinstance(decode, list):
        return []
    device = device_label(report)
    if device.startswith("CPU"):
        return []
    rows = []
    for d in decode[:1000]:
        if not isinstance(d, dict):
            continue
        ctx, batch = _int_or_none(d.get("context_len")), _int_or_none(d.get("batch"))
        ms, roof = _float_or_none(d.get("ms_per_step")), _float_or_none(d.get("roofline_ms"))
        if ctx is None or ms is None:
            continue
        rows.append({"report": name, "model": _report_text(report.get("model")), "device": device,
                     "context_len": ctx, "batch": batch or 1, "us_per_step": round(1000 * ms),
                     "roofline_us": None if roof is None else round(1000 * roof),
                     "peak_pct": 100 * roof / ms if roof and ms > 0 else None})
    return rows


def generation_rows(report: Any, name: str) -> list[dict[str, Any]]:
    """A report's generation speed with and without the cache (`kvplan validate --speed`), or no row."""
    g = report.get("generation") if isinstance(report, dict) else None
    if not isinstance(g, dict):
        return []
    cache, no_cache = _float_or_none(g.get("tokens_per_s_cache")), _float_or_none(g.get("tokens_per_s_no_cache"))
    if cache is None or no_cache is None or no_cache <= 0:
        return []
    return [{"report": name, "model": _report_text(report.get("model")), "device": device_label(report),
             "prompt_len": _int_or_none(g.get("prompt_len")), "new_tokens": _int_or_none(g.get("new_tokens")),
             "tokens_per_s_cache": cache, "tokens_per_s_no_cache": no_cache, "speedup": cache / no_cache}]


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
        given = [r.get("predicted_bytes"), r.get("measured_bytes")]
        broken = any(v is not None and n is None for v, n in zip(given, (pred, meas)))
        if ctx is None or broken or (pred is None and meas is None):
            out.errors.append(f"{name}: results[{i}] lacks a context_len / predicted_bytes / measured_bytes "
                              f"that is a whole number below 2^62")
            continue
        err = None if pred is None or not meas else round(100 * (pred - meas) / meas, 3)
        out.rows.append({"report": name, "model": _report_text(report.get("model")),
                         "engine": _report_text(report.get("engine")), "device": device_label(report),
                         "context_len": ctx, "batch": _int_or_none(r.get("batch")) or 1,
                         "predicted_bytes": pred, "measured_bytes": meas, "error_pct": err})
    return out
