"""Run kvplan with the settings a log shows and compare, quantity by quantity, with what the log printed.

`within_precision` means kvplan's value rounds to what the engine printed: a number printed with two
decimals ("58.11 GiB") is known to ±0.005 of its unit. Counts the engine derives from a rounded
budget (blocks, tokens, concurrency) are within precision when the logged count lies between kvplan's
counts at the two ends of the budget's interval; when the log also prints the exact block count,
`exact_given_blocks` says whether kvplan reproduces tokens and concurrency from it exactly.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from kvplan.errors import KvplanError, LogParseError
from kvplan.explain.logtext import Logged, ParsedLog
from kvplan.units import GiB, fmt_bytes

_UNIT_OUT = {"tokens": "tokens", "blocks": "blocks", "x": "x", "cells": "cells", "layers": "layers",
             "requests": "requests"}


@dataclass(frozen=True)
class Quantity:
    """One quantity the log states: logged vs kvplan (bytes are ints; `unit` says which)."""

    name: str
    logged: float | int
    predicted: float | int | None
    unit: str
    within_precision: bool | None
    difference: float | int | None
    precision: float | int
    printed: str
    rank: str | None = None
    cache: str | None = None
    rule: str = ""
    exact_given_blocks: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("rank", "cache", "exact_given_blocks"):
            if d[key] is None:
                del d[key]
        return d


@dataclass(frozen=True)
class Explanation:
    """What `explain` read from a log and how kvplan's numbers compare. `to_dict()` is the JSON contract."""

    engine: str
    engine_variant: str
    engine_version: str | None
    model: str | None
    model_source: str
    settings: dict[str, Any]
    fits: bool | None
    failure: str | None
    failure_kind: str | None
    quantities: tuple[Quantity, ...]
    context_limit: str = ""
    more_users: tuple[dict[str, Any], ...] = ()
    memory: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    attention: str | None = None  # dense | sliding | mla | hybrid: the model's attention, for accuracy tables
    end_to_end: dict[str, Any] = field(default_factory=dict)  # kvplan's own budget and what it holds, no log input

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "attention": self.attention, "end_to_end": dict(self.end_to_end), "engine_variant": self.engine_variant, "engine_version": self.engine_version,
                "model": self.model, "model_source": self.model_source, "settings": dict(self.settings),
                "fits": self.fits, "failure": self.failure, "failure_kind": self.failure_kind,
                "quantities": [q.to_dict() for q in self.quantities], "context_limit": self.context_limit,
                "more_users": [dict(m) for m in self.more_users], "memory": [dict(m) for m in self.memory],
                "notes": list(self.notes)}

    def quantity(self, name: str, rank: str | None = None, cache: str | None = None) -> Quantity | None:
        for q in self.quantities:
            if q.name == name and (rank is None or q.rank == rank) and (cache is None or q.cache == cache):
                return q
        return None


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    m = re.match(r"v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?", str(text))
    if not m:
        return None
    return tuple(int(g or 0) for g in m.groups())


def _printed(q: Logged) -> str:
    value = f"{q.value:,.{q.decimals}f}"
    return f"{value} {q.unit}" if q.unit not in ("x",) else f"{value}x"


def _weights_rows(ctx, p, arch, tp: int, pp: int, rule: str) -> None:
    """A row for each logged weights figure, against the checkpoint's weights split over TP/PP."""
    from kvplan.weights import weights_bytes

    for q in p.all("weights_bytes"):
        try:
            w = weights_bytes(arch, "auto", tp, pp)
        except KvplanError:
            w = None
        ctx.rows.append(_bytes_row("weights_bytes", q, w, rule))


def _bytes_row(name: str, q: Logged, predicted: int | None, rule: str, cache: str | None = None) -> Quantity:
    logged = q.to_bytes()
    lo, hi = q.byte_interval()
    ok = None if predicted is None else bool(lo - 1 <= predicted <= hi + 1)
    return Quantity(name, logged, predicted, "bytes", ok, None if predicted is None else predicted - logged,
                    (hi - lo) // 2, _printed(q), q.rank or None, cache, rule)


def _count_row(name: str, q: Logged, predicted, lo, hi, rule: str, exact: bool | None = None,
               cache: str | None = None) -> Quantity:
    logged: float | int = q.value if q.unit == "x" else int(q.value)
    if predicted is None:
        ok = None
    elif lo is None:
        ok = bool(abs(predicted - logged) <= q.half_step + 1e-9)
    else:
        ok = bool(min(lo, hi) - q.half_step - 1e-9 <= logged <= max(lo, hi) + q.half_step + 1e-9)
    diff = None if predicted is None else (round(predicted - logged, 4) if isinstance(predicted, float)
                                           else predicted - logged)
    return Quantity(name, logged, predicted, _UNIT_OUT.get(q.unit, q.unit), ok, diff, q.half_step, _printed(q),
                    q.rank or None, cache, rule, exact)


@dataclass
class Context:
    parsed: ParsedLog
    arch: Any
    model_source: str
    rows: list[Quantity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    more_users: list[dict[str, Any]] = field(default_factory=list)
    context_limit: str = ""
    end_to_end: dict[str, Any] = field(default_factory=dict)


# --- vLLM ---------------------------------------------------------------------------------------------------
def _vllm_dtype(s: dict) -> str:
    kv = str(s.get("kv_cache_dtype") or "auto").lower()
    if kv != "auto":
        return kv
    dt = str(s.get("dtype") or "auto").lower().replace("torch.", "")
    return {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}.get(dt, "auto")


def _vllm_weights_dtype(s: dict) -> str:
    q = str(s.get("quantization") or "none").lower()
    if q in ("compressed-tensors", "compressed_tensors"):
        # llm-compressor checkpoints name their scheme (RedHatAI/...-quantized.w8a8, -w4a16, -FP8-dynamic)
        name = str(s.get("model") or "").lower()
        return "int4" if "w4a16" in name else "int8" if "w8a8" in name else "fp8" if "fp8" in name else "auto"
    found = {"fp8": "fp8", "mxfp4": "mxfp4", "awq": "awq", "gptq": "gptq", "awq_marlin": "awq",
             "gptq_marlin": "gptq"}.get(q)
    if found:
        return found
    # unquantized: --dtype casts the checkpoint (float32 doubles the weights)
    dt = str(s.get("dtype") or "auto").lower().replace("torch.", "")
    return {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}.get(dt, "auto")


_BACKEND_BLOCK = {"FLASHMLA": 64, "CUTLASS_MLA": 128, "FLASH_ATTN_MLA": 16, "TRITON_MLA": 16}


def _vllm(ctx: Context) -> None:
    from kvplan.api import capacity, kv_cache
    from kvplan.planner import VLLM_CUDA_GRAPH, plan

    p, arch, s = ctx.parsed, ctx.arch, ctx.parsed.settings
    ver = version_tuple(p.engine_version)
    tp = int(s.get("tensor_parallel_size") or 1)
    pp = int(s.get("pipeline_parallel_size") or 1)
    length = int(s.get("max_model_len") or arch.max_position_embeddings or 0)
    if not length:
        raise LogParseError("vllm", "no max_model_len in the log and none in the config", missing=("max_model_len",))
    kv_dtype = _vllm_dtype(s)
    # The release's rules come from the vLLM profile's version table (kvplan versions vllm): the tokens
    # line, the activation fit, non-torch memory, CUDA graphs in the budget. A V0 log without a version
    # gets 0.7.3's rules (the last release with V0 as the default engine).
    version = _engine_version(ctx, "vllm", p.engine_version or ("0.7.3" if p.variant == "V0" else None))
    from kvplan.engines import resolve_engine

    mod, ver = resolve_engine("vllm", version)
    graphs_in_budget = s.get("estimate_cudagraphs")
    if graphs_in_budget is None:
        graphs_in_budget = bool(mod.VERSIONS.value("cuda_graphs_in_budget", ver))
    rule_tokens = mod.VERSIONS.value("kv_tokens_rule", ver)
    fit = mod.VERSIONS.value("activation_profile", ver)
    opts: dict[str, Any] = {}
    if s.get("block_size"):
        opts["block_size"] = int(s["block_size"])
    elif s.get("attention_backend") in _BACKEND_BLOCK:
        # the backend the log names fixes the block size (ENGINE_KV_SPEC A.5): FlashMLA 64, CUTLASS MLA 128;
        # FlashAttention-MLA and Triton MLA take vLLM's default 16 (llm-d v0.19 DeepSeek-V2-Lite: 94,097 × 16)
        opts["block_size"] = _BACKEND_BLOCK[s["attention_backend"]]
    ctx.notes.append(f"vLLM {p.variant}, rules of {ver}{'' if p.engine_version else ' (version not in the log)'}: "
                     f"tokens line '{rule_tokens}', activation fit {fit}, CUDA graphs "
                     f"{'in' if graphs_in_budget else 'outside'} the KV budget")
    cap_args = dict(max_model_len=length, engine="vllm", kv_dtype=kv_dtype, tp=tp, pp=pp, engine_version=str(ver),
                    **opts)

    total_q = p.first("total_memory_bytes")
    util = s.get("gpu_memory_utilization")
    pl = None
    if total_q is not None:
        total = total_q.to_bytes()
        big = total >= 70 * GiB
        try:
            pl = plan(arch, gpu_memory=total, tp=tp, pp=pp, max_model_len=length, engine="vllm", kv_dtype=kv_dtype,
                      weights_dtype=_vllm_weights_dtype(s), gpu_memory_utilization=float(util or 0.9),
                      cuda_graph_bytes=None if graphs_in_budget else 0, engine_version=str(ver),
                      max_num_seqs=int(s.get("max_num_seqs") or (1024 if big else 256)),
                      **({"max_num_batched_tokens": int(s["max_num_batched_tokens"])}
                         if s.get("max_num_batched_tokens") else {}), **opts)
        except KvplanError as err:
            ctx.notes.append(f"kvplan could not plan the deployment: {err}")
    if pl is not None:
        ctx.end_to_end = {"kv_budget_bytes": pl.kv_budget_bytes, "num_blocks": pl.num_blocks,
                          "kv_tokens": pl.kv_tokens, "max_concurrency": round(pl.max_concurrency, 2),
                          "weights_bytes": pl.weights_bytes}
    else:
        from kvplan.weights import weights_bytes

        if total_q is None:
            ctx.notes.append("the log does not print the GPU's total memory: only weights and the KV side are "
                             "predicted")
        try:
            w = weights_bytes(arch, _vllm_weights_dtype(s), tp, pp)
        except KvplanError:
            w = None
    rules = {
        "weights_bytes": "checkpoint dtype/quantization (log: quantization=%s) and the TP/PP split; vLLM also "
                         "counts the RoPE cache" % s.get("quantization", "none"),
        "activation_bytes": f"fit '{fit}' of the profiled peak: max_num_seqs (sampler) and max_num_batched_tokens",
        "non_torch_bytes": "non-torch memory by release and TP (version rules non_torch_tp1 / non_torch_tp: custom "
                           "all-reduce buffers at TP>1)",
        "cuda_graph_bytes": "cudagraph capture sizes (max_cudagraph_capture_size) and mode; kvplan uses 0.84 GiB",
        "kv_budget_bytes": "total × gpu_memory_utilization − weights − activation − non-torch"
                           + (" − CUDA graphs" if graphs_in_budget else ""),
    }
    if pl is not None:
        predicted = {"weights_bytes": pl.weights_bytes, "activation_bytes": pl.activation_bytes,
                     "non_torch_bytes": pl.non_torch_bytes,
                     "cuda_graph_bytes": pl.cuda_graph_bytes if graphs_in_budget else VLLM_CUDA_GRAPH,
                     "kv_budget_bytes": pl.kv_budget_bytes}
    else:
        predicted = {"weights_bytes": w}
    for name in ("weights_bytes", "activation_bytes", "non_torch_bytes", "cuda_graph_bytes", "kv_budget_bytes"):
        for q in p.all(name):
            ctx.rows.append(_bytes_row(name, q, predicted.get(name), rules[name]))

    # Per-rank budgets: a rank prints "Available KV cache memory" (rank 0 only, at INFO) or its requested
    # memory and "Total non KV cache memory"; vLLM sizes the pool by the tightest rank.
    budgets: dict[str, tuple[int, int]] = {}
    for q in p.all("kv_budget_bytes"):
        budgets[q.rank] = q.byte_interval()
    req = {q.rank: q for q in p.all("requested_bytes")}
    for q in p.all("non_kv_bytes"):
        if q.rank not in budgets and q.rank in req:
            r_lo, r_hi = req[q.rank].byte_interval()
            n_lo, n_hi = q.byte_interval()
            budgets[q.rank] = (r_lo - n_hi, r_hi - n_lo)
    blocks_q, tokens_q, conc_q = p.first("num_blocks"), p.first("kv_tokens"), p.first("max_concurrency")
    if budgets:
        lo_hi = _binding_blocks(arch, budgets, tp, pp, kv_dtype, opts)
        if len(budgets) > 1:
            ctx.notes.append(f"{len(budgets)} ranks: vLLM sizes the block pool by the tightest rank "
                             "(each rank's budget over its own stage's bytes per block)")
        lo = lo_hi[0] * lo_hi[2]
        hi = lo_hi[1] * lo_hi[2]
        if hi > 0:
            c_lo = capacity(arch, kv_memory=max(0, lo), **cap_args)
            c_hi = capacity(arch, kv_memory=max(0, hi), **cap_args)
            c_mid = capacity(arch, kv_memory=max(0, (lo_hi[0] + lo_hi[1]) // 2 * lo_hi[2]), **cap_args)
            exact = None
            if blocks_q is not None:
                exact = capacity(arch, kv_memory=int(blocks_q.value) * c_mid.bytes_per_block, **cap_args)
                ctx.rows.append(_count_row("num_blocks", blocks_q, c_mid.num_blocks, c_lo.num_blocks, c_hi.num_blocks,
                                           f"KV budget ÷ {c_mid.bytes_per_block:,} B per block (block_size, "
                                           "KV dtype, layers and KV heads per rank)"))
            if tokens_q is not None:
                ex = None if exact is None else exact.kv_tokens == int(tokens_q.value)
                ctx.rows.append(_count_row("kv_tokens", tokens_q, c_mid.kv_tokens, c_lo.kv_tokens, c_hi.kv_tokens,
                                           f"version rule '{rule_tokens}' (blocks·block_size vs int(concurrency·len))",
                                           ex))
            if conc_q is not None:
                ex = None if exact is None else round(exact.max_concurrency, 2) == conc_q.value
                ctx.rows.append(_count_row("max_concurrency", conc_q, round(c_mid.max_concurrency, 2),
                                           round(c_lo.max_concurrency, 2), round(c_hi.max_concurrency, 2),
                                           "blocks per max_model_len request (sliding windows, hybrid groups)", ex))
    elif tokens_q is not None and blocks_q is None:
        ctx.notes.append("no KV budget in the log: blocks and concurrency are not predicted")
    need_q = p.first("kv_needed_bytes")
    if need_q is not None:
        one = kv_cache(arch, context_len=length, engine="vllm", kv_dtype=kv_dtype, tp=tp, pp=pp,
                       engine_version=str(ver), **opts)
        ctx.rows.append(_bytes_row("kv_needed_bytes", need_q, one.kv_bytes,
                                   "KV of one max_model_len request (vLLM max_memory_usage_bytes)"))
    fit_q = p.first("max_model_len_fits")
    if fit_q is not None and budgets:
        from kvplan.engines.common import largest_true

        lo = min(b[0] for b in budgets.values())
        hi = min(b[1] for b in budgets.values())

        def longest(budget: int) -> int:
            return largest_true(1, length, lambda n: capacity(arch, kv_memory=max(0, budget),
                                                              **{**cap_args, "max_model_len": n}).num_blocks
                                >= capacity(arch, kv_memory=0, **{**cap_args, "max_model_len": n}).blocks_per_request)
        a, b = longest(lo), longest(hi)
        ctx.rows.append(_count_row("max_model_len_fits", fit_q, longest((lo + hi) // 2), a, b,
                                   "vLLM's binary search over lengths whose blocks fit the budget"))
    _vllm_answers(ctx, pl, length, kv_dtype, cap_args, budgets, total_q, util)


def _engine_version(ctx: Context, engine: str, text: str | None) -> str | None:
    """The log's version if kvplan's table for `engine` can take it, else None (newest rules) and a note."""
    if not text:
        return None
    from kvplan.engines import resolve_engine

    try:
        return str(resolve_engine(engine, text)[1])
    except KvplanError as err:
        ctx.notes.append(f"engine version {text!r} not modelled ({err}); the newest rules are used")
        return None


def _stage_of(rank: str, tp: int) -> int:
    m = re.search(r"PP(\d{1,4})", rank)
    if m:
        return int(m.group(1))
    m = re.search(r"rank=(\d{1,5})", rank)
    return int(m.group(1)) // max(1, tp) if m else 0


def _binding_blocks(arch, budgets: dict[str, tuple[int, int]], tp: int, pp: int, kv_dtype: str,
                    opts: dict) -> tuple[int, int, int]:
    """(blocks at the low end, at the high end, bytes per block of the largest stage): vLLM takes the
    minimum over ranks of each rank's budget ÷ its own stage's page (pipeline stages can hold different
    layer counts: DeepSeek-V2-Lite's 27 layers split 14/13)."""
    pages = _stage_pages(arch, tp, pp, kv_dtype, opts)

    def blocks(end: int) -> int:
        return min(b[end] // pages[min(_stage_of(r, tp), len(pages) - 1)] for r, b in budgets.items())
    return max(0, blocks(0)), max(0, blocks(1)), max(pages)


def _stage_pages(arch, tp: int, pp: int, kv_dtype: str, opts: dict) -> list[int]:
    from kvplan.engines import vllm as profile
    from kvplan.engines.common import grouped_stages, make_options, make_request, resolve_kv_dtype

    dtype = resolve_kv_dtype("vllm", kv_dtype, arch.dtype, profile.KV_DTYPES, auto_fp32_as="bf16")
    req = make_request(16, 1, dtype, tp, pp)
    o = make_options(profile.Options, "vllm", dict(opts))
    return [max(1, profile._layout(stage, req, o, arch.dtype).bytes_per_block) for stage in grouped_stages(arch, pp)]


def _vllm_answers(ctx: Context, pl, length, kv_dtype, cap_args, budgets, total_q, util) -> None:
    from kvplan.api import capacity

    p, s = ctx.parsed, ctx.parsed.settings
    if budgets:
        mid = (min(b[0] for b in budgets.values()) + min(b[1] for b in budgets.values())) // 2
    elif pl is not None:
        mid = pl.kv_budget_bytes
    else:
        mid = None
    src = "--max-model-len" if "max_model_len" in s else "the model's max_position_embeddings"
    if mid is not None and mid > 0:
        cap = capacity(ctx.arch, kv_memory=mid, **cap_args)
        if cap.num_blocks < cap.blocks_per_request:
            ctx.context_limit = (f"the KV budget ({fmt_bytes(mid)}) cannot hold one {length:,}-token request "
                                 f"({cap.blocks_per_request:,} blocks needed, {cap.num_blocks:,} fit): lower "
                                 "--max-model-len or free memory")
        else:
            ctx.context_limit = (f"max_model_len {length:,} (from {src}); the KV pool holds {cap.kv_tokens:,} tokens, "
                                 f"{cap.max_concurrency:.2f}× that")
        base = cap.max_concurrency
        alts = []
        if kv_dtype not in ("fp8", "fp8_e4m3", "fp8_e5m2", "nvfp4"):
            c = capacity(ctx.arch, kv_memory=mid, **{**cap_args, "kv_dtype": "fp8"})
            alts.append({"flag": "--kv-cache-dtype fp8", "max_concurrency": round(c.max_concurrency, 2)})
        if length >= 2048:
            c = capacity(ctx.arch, kv_memory=mid, **{**cap_args, "max_model_len": length // 2})
            alts.append({"flag": f"--max-model-len {length // 2}", "max_concurrency": round(c.max_concurrency, 2),
                         "note": "concurrency counted at the shorter length"})
        if total_q is not None and util is not None and float(util) < 0.95:
            extra = int(total_q.to_bytes() * (0.95 - float(util)))
            c = capacity(ctx.arch, kv_memory=mid + extra, **cap_args)
            alts.append({"flag": "--gpu-memory-utilization 0.95", "max_concurrency": round(c.max_concurrency, 2)})
        if pl is not None and pl.tp < 8:
            alts.append({"flag": f"--tensor-parallel-size {pl.tp * 2}",
                         "note": "twice the GPUs: weights and KV heads split further (run `kvplan plan`)"})
        for a in alts:
            if "max_concurrency" in a:
                a["gain"] = round(a["max_concurrency"] / base, 2) if base else None
        ctx.more_users = alts
    elif mid is not None:
        ctx.context_limit = (f"no KV budget at all ({fmt_bytes(mid)}): weights and overheads exceed "
                             f"gpu_memory_utilization × total")
    fit_q, need_q = p.first("max_model_len_fits"), p.first("kv_needed_bytes")
    if need_q is not None:
        longest = next((q.predicted for q in ctx.rows if q.name == "max_model_len_fits"), None)
        ctx.context_limit = (f"max_model_len {length:,} ({src}) needs {_printed(need_q)} of KV for one request, more "
                             f"than the budget" + (f"; the longest that fits is {int(fit_q.value):,} tokens (logged)"
                                                   if fit_q is not None else "")
                             + (f", {longest:,} by kvplan" if longest else "")
                             + ": lower --max-model-len, raise --gpu-memory-utilization, or use fp8 KV")
    rows = []
    for label, name in (("total GPU memory", "total_memory_bytes"), ("requested (total × utilization)", "requested_bytes"),
                        ("weights", "weights_bytes"), ("activation peak", "activation_bytes"),
                        ("non-torch", "non_torch_bytes"), ("CUDA graphs (estimate)", "cuda_graph_bytes"),
                        ("KV cache", "kv_budget_bytes")):
        q = p.first(name)
        pred = None
        if pl is not None:
            pred = {"weights_bytes": pl.weights_bytes, "activation_bytes": pl.activation_bytes,
                    "non_torch_bytes": pl.non_torch_bytes, "kv_budget_bytes": pl.kv_budget_bytes,
                    "requested_bytes": pl.requested_bytes, "total_memory_bytes": pl.gpu_memory_bytes}.get(name)
        if q is not None or pred is not None:
            rows.append({"part": label, "logged_bytes": None if q is None else q.to_bytes(), "predicted_bytes": pred})
    ctx.memory = rows


# --- SGLang ---------------------------------------------------------------------------------------------------
def _sglang(ctx: Context) -> None:
    from kvplan.api import kv_cache

    p, arch, s = ctx.parsed, ctx.arch, ctx.parsed.settings
    tp = int(s.get("tp_size") or 1)
    pp = int(s.get("pp_size") or 1)
    dp = int(s.get("dp_size") or 1) if s.get("enable_dp_attention") else 1
    page = int(s.get("page_size") or 1)
    kv_dtype = str(s.get("kv_cache_dtype") or "auto")
    kv_dtype = {"fp8_e4m3": "fp8", "fp8_e5m2": "fp8_e5m2"}.get(kv_dtype, kv_dtype)
    opts = {"dp_attention": dp} if dp > 1 else {}
    tokens = p.first("kv_tokens") or p.first("max_total_num_tokens")
    _weights_rows(ctx, p, arch, tp, pp, "checkpoint dtype/quantization and TP split")
    est = None
    if tokens is not None:
        n = int(tokens.value)
        # The pool allocates N + page_size rows: slot 0 is a padded dummy (B.4).
        est = kv_cache(arch, context_len=n + page, engine="sglang", kv_dtype=kv_dtype, tp=tp, pp=pp, **opts)
        for name, value, rule in (("k_bytes", est.k_bytes, "KV heads per rank × head_dim × layers × (#tokens + page)"),
                                  ("v_bytes", est.v_bytes, "as K, with head_dim_v"),
                                  ("kv_bytes", est.kv_bytes, "MLA latent (kv_lora_rank + rope) × layers × tokens")):
            for q in p.all(name):
                ctx.rows.append(_bytes_row(name, q, value, rule))
    # Token capacity from the budget SGLang logged (B.2): rest = avail after weights − avail at load begin ×
    # (1 − mem_fraction_static); tokens = rest // cell size.
    begin, after, mfs = p.first("load_begin_free_bytes"), p.first("weights_free_after_bytes"), s.get("mem_fraction_static")
    cell = est.bytes_per_token if est is not None else None
    if tokens is not None and begin and after and mfs and cell and est.state_bytes == 0 and \
            all(r.kind in ("full", "mla") for r in est.breakdown):
        a_lo, a_hi = after.byte_interval()
        b_lo, b_hi = begin.byte_interval()
        f = float(mfs)
        lo = int(a_lo - b_hi * (1 - f)) // cell
        hi = int(a_hi - b_lo * (1 - f)) // cell
        mid = int(after.to_bytes() - begin.to_bytes() * (1 - f)) // cell
        if page > 1:
            lo, hi, mid = (x // page * page for x in (lo, hi, mid))
        if s.get("max_total_tokens"):
            cap = int(s["max_total_tokens"])
            lo, hi, mid = min(lo, cap), min(hi, cap), min(mid, cap)
        for q in (p.all("kv_tokens") or p.all("max_total_num_tokens"))[:1]:
            ctx.rows.append(_count_row("kv_tokens", q, mid, lo, hi,
                                       f"mem_fraction_static {f}: (avail after weights − avail at start × "
                                       f"{1 - f:.3f}) ÷ {cell:,} B per token"))
        ctx.context_limit = (f"context_len {s.get('context_length', arch.max_position_embeddings):,}; the pool holds "
                             f"{int(tokens.value):,} tokens")
        ctx.more_users = [{"flag": f"--mem-fraction-static {min(0.95, round(f + 0.03, 2))}",
                           "kv_tokens": int(after.to_bytes() - begin.to_bytes() * (1 - min(0.95, f + 0.03))) // cell}]
        if kv_dtype == "auto":
            fp8 = kv_cache(arch, context_len=1024, engine="sglang", kv_dtype="fp8_e4m3", tp=tp, pp=pp, **opts)
            ctx.more_users.append({"flag": "--kv-cache-dtype fp8_e4m3",
                                   "kv_tokens": mid * cell // max(1, fp8.bytes_per_token)})
    for q in p.all("cuda_graph_bytes"):
        ctx.rows.append(_bytes_row("cuda_graph_bytes", q, None,
                                   "not modelled: SGLang's CUDA graphs live in the 1 − mem_fraction_static share"))
    for q in p.all("max_running_requests"):
        ctx.rows.append(_count_row("max_running_requests", q, None, None, None, "not modelled"))
    ctx.memory = [{"part": label, "logged_bytes": q.to_bytes(), "predicted_bytes": None}
                  for label, name in (("free at load begin", "load_begin_free_bytes"), ("weights", "weights_bytes"),
                                      ("free after weights", "weights_free_after_bytes"),
                                      ("free after KV pool", "pool_end_free_bytes"), ("CUDA graphs", "cuda_graph_bytes"))
                  for q in p.all(name)[:1]]


# --- llama.cpp ------------------------------------------------------------------------------------------------
_GGML_TYPES = {"f16": "fp16", "bf16": "bf16", "f32": "fp32"}


def _llamacpp(ctx: Context) -> None:
    from kvplan.api import kv_cache

    p, arch, s = ctx.parsed, ctx.arch, ctx.parsed.settings
    n_ctx = s.get("n_ctx")
    cells = [q for q in p.all("cells") if q.rank in ("", "non-SWA", "MLA")]
    if not isinstance(n_ctx, int):
        n_ctx = int(cells[0].value) if cells else None
    if not n_ctx:
        raise LogParseError("llama.cpp", "the log has no n_ctx (llama_context: n_ctx = N) nor cache cell count",
                            missing=("n_ctx",))
    n_seq = int(s.get("n_seq_max") or 1)
    unified = bool(s.get("kv_unified")) or n_seq == 1
    per_seq = s.get("n_ctx_per_seq") if isinstance(s.get("n_ctx_per_seq"), int) else (n_ctx if unified else n_ctx // n_seq)
    type_k = str(s.get("type_k") or "f16")
    type_v = str(s.get("type_v") or type_k)
    k = _GGML_TYPES.get(type_k, type_k)
    v = _GGML_TYPES.get(type_v, type_v)
    # n_ctx as logged is already padded: 256 on current builds, 32 on older ones without flash attention.
    pad = 256 if n_ctx % 256 == 0 else 32 if n_ctx % 32 == 0 else 1
    opts: dict[str, Any] = {"parallel": n_seq, "kv_unified": unified, "ctx_pad": pad}
    if isinstance(s.get("n_ubatch"), int):
        opts["ubatch"] = s["n_ubatch"]
    if v != k:
        opts["type_v"] = v
    if s.get("swa_full") is True:
        opts["swa_full"] = True
    # the build's rules (iSWA from b5440, MLA layouts) and the ik_llama.cpp fork's (no iSWA cache) come from
    # the llama.cpp profile's version table
    version = _engine_version(ctx, "llama.cpp", "ik" if p.variant == "ik_llama.cpp" else p.engine_version)
    try:
        est = kv_cache(arch, context_len=per_seq, engine="llama.cpp", kv_dtype=k, engine_version=version, **opts)
    except KvplanError as err:
        ctx.notes.append(f"kvplan could not size this cache: {err}")
        est = None
    ctx.notes.append(f"llama.cpp {p.variant}: n_ctx {n_ctx:,} ({n_seq} slot(s), "
                     f"{'unified' if unified else 'per-slot streams'}), K {type_k}, V {type_v}, pad {pad}")
    rows = {r.kind: r for r in est.breakdown} if est else {}
    rule = "n_ctx × layers × KV heads × head_dim × K/V type (block sizes of quantized types)"
    for q in p.logged:
        if q.name not in ("kv_bytes", "k_bytes", "v_bytes", "cells", "layers", "latent_bytes", "rope_bytes"):
            continue
        cache = q.rank
        if est is None:
            pred = None
        elif cache in ("", "MLA"):
            pred = {"kv_bytes": est.kv_bytes, "k_bytes": est.k_bytes, "v_bytes": est.v_bytes,
                    "cells": max((r.tokens_per_seq for r in est.breakdown), default=None),
                    "layers": sum(r.num_layers for r in est.breakdown),
                    "latent_bytes": est.kv_bytes * 512 // 576 if cache == "MLA" else None,
                    "rope_bytes": est.kv_bytes * 64 // 576 if cache == "MLA" else None}[q.name]
            if cache == "MLA" and q.name in ("latent_bytes", "rope_bytes"):
                mla = next((sp for sp in arch.layers if hasattr(sp, "kv_lora_rank")), None)
                if mla is not None:
                    part = mla.kv_lora_rank if q.name == "latent_bytes" else mla.rope_dim
                    pred = est.kv_bytes * part // (mla.kv_lora_rank + mla.rope_dim)
        else:
            row = rows.get("full" if cache == "non-SWA" else "sliding")
            pred = None if row is None else {"kv_bytes": row.bytes, "k_bytes": row.k_bytes, "v_bytes": row.v_bytes,
                                             "cells": row.tokens_per_seq, "layers": row.num_layers}[q.name]
        label = cache or None
        if q.unit in ("cells", "layers"):
            ctx.rows.append(_count_row(q.name, q, pred, None, None,
                                       "n_ctx padding; SWA cells = pad(window·slots + ubatch)" if q.name == "cells"
                                       else "layers with a KV cache", cache=label))
        else:
            ctx.rows.append(_bytes_row(q.name, q, pred, rule, cache=label))
    if est is not None:
        ctx.context_limit = (f"-c/n_ctx {n_ctx:,} cells ({per_seq:,} per slot); llama.cpp allocates them all at "
                             f"start: {fmt_bytes(est.kv_bytes, 'MiB')}")
        alts = []
        if k in ("fp16", "bf16", "fp32"):
            q8 = kv_cache(arch, context_len=per_seq, engine="llama.cpp", kv_dtype="q8_0", engine_version=version,
                          **{o: val for o, val in opts.items() if o != "type_v"})
            alts.append({"flag": "-ctk q8_0 -ctv q8_0 (needs -fa)", "kv_bytes": q8.kv_bytes,
                         "note": f"the same slots in {q8.kv_bytes / max(1, est.kv_bytes):.2f}× the memory"})
        if "sliding" in rows and opts.get("swa_full"):
            alts.append({"flag": "drop --swa-full (mainline llama.cpp iSWA cache)",
                         "note": "sliding layers then keep only window + ubatch cells"})
        ctx.more_users = alts
        ctx.memory = [{"part": f"KV cache ({r.kind})", "logged_bytes": None, "predicted_bytes": r.bytes}
                      for r in est.breakdown]


# --- TensorRT-LLM ---------------------------------------------------------------------------------------------
def _trtllm(ctx: Context) -> None:
    from kvplan.api import capacity, kv_cache

    p, arch, s = ctx.parsed, ctx.arch, ctx.parsed.settings
    tp = int(s.get("tp") or 1)
    pp = int(s.get("pp") or 1)
    kv_dtype = str(s.get("kv_cache_dtype") or "auto").lower()
    kv_dtype = {"fp8": "fp8", "float16": "fp16", "bfloat16": "bf16"}.get(kv_dtype, "auto")
    opts = {"block_size": int(s["block_size"])} if s.get("block_size") else {}
    tokens = p.first("kv_tokens")
    kvq = p.first("kv_bytes")
    if tokens is not None and kvq is not None:
        est = kv_cache(arch, context_len=int(tokens.value), engine="trtllm", kv_dtype=kv_dtype, tp=tp, pp=pp, **opts)
        ctx.rows.append(_bytes_row("kv_bytes", kvq, est.kv_bytes, "tokens × layers × KV heads per rank × head_dim × "
                                                                  "KV dtype"))
        lo, hi = kvq.byte_interval()
        length = int(s.get("max_seq_len") or 2048)
        c_lo = capacity(arch, kv_memory=lo, max_model_len=length, engine="trtllm", kv_dtype=kv_dtype, tp=tp, pp=pp, **opts)
        c_hi = capacity(arch, kv_memory=hi, max_model_len=length, engine="trtllm", kv_dtype=kv_dtype, tp=tp, pp=pp, **opts)
        c_mid = capacity(arch, kv_memory=kvq.to_bytes(), max_model_len=length, engine="trtllm", kv_dtype=kv_dtype,
                         tp=tp, pp=pp, **opts)
        for q in p.all("num_blocks"):
            ctx.rows.append(_count_row("num_blocks", q, c_mid.num_blocks, c_lo.num_blocks, c_hi.num_blocks,
                                       "KV bytes ÷ bytes per block (tokens_per_block)"))
        ctx.rows.append(_count_row("kv_tokens", tokens, c_mid.kv_tokens, c_lo.kv_tokens, c_hi.kv_tokens,
                                   "blocks × tokens_per_block"))
        ctx.context_limit = f"max_seq_len {length:,}; the paged pool holds {int(tokens.value):,} tokens"
        if kv_dtype != "fp8":
            c8 = capacity(arch, kv_memory=kvq.to_bytes(), max_model_len=length, engine="trtllm", kv_dtype="fp8",
                          tp=tp, pp=pp, **opts)
            ctx.more_users = [{"flag": "kv_cache_config.dtype fp8", "kv_tokens": c8.kv_tokens}]
    frac, free = s.get("free_gpu_memory_fraction"), p.first("free_for_kv_bytes")
    if free is not None and frac and kvq is not None:
        lo, hi = free.byte_interval()
        ctx.notes.append(f"free_gpu_memory_fraction {frac} of {free.value} GiB free = {free.value * frac:.2f} GiB "
                         f"for KV (logged {kvq.value} GiB; capped by max_tokens when set)")
    _weights_rows(ctx, p, arch, tp, pp, "engine file size: weights in the engine's build dtype")


def _tgi(ctx: Context) -> None:
    from kvplan.api import kv_cache

    p, s = ctx.parsed, ctx.parsed.settings
    for q in p.logged:
        ctx.rows.append(_count_row(q.name, q, None, None, None, "TGI sizes its pool from the free memory it "
                                                                "measures at warm-up, which it does not print"))
    ctx.notes.append("TGI: kvplan has no TGI profile; tokens are read from the log and their memory computed")
    tokens = p.first("kv_tokens")
    shards = int(s.get("num_shard") or 1)
    if tokens is not None and ctx.arch is not None:
        # TGI's paged cache has vLLM's layout (16-token blocks, K and V per layer, KV heads split by shard)
        est = kv_cache(ctx.arch, context_len=int(tokens.value), engine="vllm", tp=shards)
        ctx.memory = [{"part": f"KV cache per shard for {int(tokens.value):,} tokens", "logged_bytes": None,
                       "predicted_bytes": est.kv_bytes}]
        length = int(s.get("max_total_tokens") or 0)
        if length:
            ctx.context_limit = (f"max_total_tokens {length:,} per request; the pool holds {int(tokens.value):,} "
                                 f"tokens, {int(tokens.value) / length:.2f}× that")


def attention_kind(arch) -> str:
    kinds = set(arch.attention_kinds)
    if "mla" in kinds:
        return "mla"
    if "state" in kinds:
        return "hybrid"
    if kinds & {"sliding", "chunked"}:
        return "sliding"
    return "dense"


RUNNERS = {"vllm": _vllm, "sglang": _sglang, "llama.cpp": _llamacpp, "trtllm": _trtllm, "tgi": _tgi}


def compare(parsed: ParsedLog, arch, model_source: str) -> Explanation:
    ctx = Context(parsed, arch, model_source)
    if arch is not None:
        RUNNERS[parsed.engine](ctx)
    else:
        ctx.notes.append("no model geometry: quantities are read, not predicted")
        for q in parsed.logged:
            unit_bytes = q.unit in ("GiB", "MiB", "GB", "KiB", "MB", "KB")
            ctx.rows.append(_bytes_row(q.name, q, None, "") if unit_bytes else
                            _count_row(q.name, q, None, None, None, ""))
    fits = None
    if parsed.failure_kind in ("oom", "kv_too_small", "refused"):
        fits = False
    elif parsed.started:
        fits = True
    return Explanation(engine=parsed.engine, engine_variant=parsed.variant, engine_version=parsed.engine_version,
                       model=parsed.model if parsed.model else (arch.model_id if arch is not None else None),
                       model_source=model_source, settings=dict(parsed.settings), fits=fits, failure=parsed.failure,
                       failure_kind=parsed.failure_kind, quantities=tuple(ctx.rows), context_limit=ctx.context_limit,
                       more_users=tuple(ctx.more_users), memory=tuple(ctx.memory), notes=tuple(ctx.notes),
                       attention=attention_kind(arch) if arch is not None else None, end_to_end=ctx.end_to_end)


__all__ = ["Quantity", "Explanation", "compare", "version_tuple"]
