"""From a workload to deployments: which GPUs, how many, in which layout, on which engine.

`recommend(model, users=... | request_rate=..., prompt_tokens=..., output_tokens=..., ...)` searches
GPU type × TP (the sizes each engine accepts for the model's heads) × PP × weights dtype × KV dtype,
for every requested engine, and for each candidate instance (tp × pp GPUs) finds how many users it
can serve and how many data-parallel replicas the workload needs. Best first: fewest GPUs (or the
cheapest per hour when prices are given).

Memory (exact, from the engine profiles): `planner.plan` gives each GPU's KV budget the engine's way
(weights, activation peak, non-torch memory, CUDA graphs, memory fraction); the engine's `capacity`
turns it into blocks/tokens and each request length into blocks (page rounding, sliding windows,
hybrid groups, MLA latents, TP head replication all included). Every live request is sized at its
end (prompt + output), a shared prefix is stored once where the engine caches prefixes (vLLM,
SGLang, TensorRT-LLM), and concurrent requests are drawn from the workload's length distribution
weighted by how long each stays (Little's law). n users fit when

    shared prefix + n·μ + 1.645·√n·σ  ≤  usable KV   (μ, σ: mean and spread of one live request's
                                                       blocks; 1.645·√n·σ: the sum's 95th percentile)

Latency (an *estimate*): `roofline` with achieved-efficiency factors — decode step = max(bytes read
/ (bandwidth × η_bw), FLOPs / (peak × η_flops)), prefill likewise — and the GPU time-shared
between prefills and decode steps: with n users per instance, each request staying W = TTFT +
O·TPOT, requests arrive at n/W per second (Little's law), a share f = (n/W)·prefill of the time goes
to prefill, and TPOT = step / (1 − f). The efficiency defaults come from published measurements
(benchmarks/latency.py prints the comparison; README "Latency model").
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from kvplan.api import Model, _arch, capacity, kv_cache
from kvplan.engines import get_engine, resolve_engine
from kvplan.errors import InvalidInputError
from kvplan.gpus import GPU, get_gpu
from kvplan.units import GiB, cdiv, fmt_bytes
from kvplan.workload import SLA, Z95, Workload, make_sla, make_workload

__all__ = ["recommend", "Recommendation", "Deployment", "MemoryLedger", "Latency", "estimate_latency", "DEFAULT_GPUS",
           "DEFAULT_ALLREDUCE_US",
           "DEFAULT_BANDWIDTH_EFFICIENCY", "DEFAULT_COMPUTE_EFFICIENCY", "TP_SIZES", "PP_SIZES"]

DEFAULT_GPUS = ("H100-SXM", "H200", "B200", "A100-80GB", "L40S")
TP_SIZES = (1, 2, 4, 8, 16)
PP_SIZES = (1, 2, 4, 8)
# Achieved fractions of peak HBM bandwidth (decode) and dense bf16 FLOP/s (prefill). Chosen from the
# published measurements in benchmarks/latency.py (README "Latency model" lists them with sources).
DEFAULT_BANDWIDTH_EFFICIENCY = 0.75
DEFAULT_COMPUTE_EFFICIENCY = 0.55
DEFAULT_ALLREDUCE_US = 20.0  # one small-message all-reduce under TP (NVLink), microseconds
PREFIX_CACHING = ("vllm", "sglang", "trtllm")  # engines that store a shared prefix once
ANY_KV_DTYPES = {"vllm": ("auto", "fp8"), "sglang": ("auto", "fp8"), "trtllm": ("auto", "fp8"),
                 "llama.cpp": ("fp16", "q8_0"), "transformers": ("auto",), "naive": ("auto", "fp8")}
MAX_GPUS = 1024
LATENCY_NOTE = ("latency figures are roofline estimates (achieved bandwidth {bw:.0%} and compute {fl:.0%} of "
                "peak), not measurements; TTFT excludes queueing")


@dataclass(frozen=True)
class MemoryLedger:
    """Per-GPU memory of the most-loaded GPU, in bytes: what the engine reserves and what the
    workload's KV uses of its budget. gpu_memory = weights + activation + non_torch + cuda_graphs
    + kv_budget + unreserved."""

    gpu_memory_bytes: int
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_budget_bytes: int
    kv_used_bytes: int  # the 95th-percentile KV demand of the users on this instance
    kv_free_bytes: int
    unreserved_bytes: int  # not given to the engine (1 − memory fraction, and what is left over)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Deployment:
    """One way to serve the workload: `replicas` engine instances of tp × pp GPUs each.

    `users`: concurrent users it serves (the workload's, or Little's law's for a request rate);
    `max_users`: what the same GPUs could serve within the SLA (`headroom` = max_users/users − 1);
    `binding`: the limit on users per instance — "kv_memory", "bandwidth" or "compute" (the TPOT
    SLA, memory- or compute-bound step), "ttft", "prefill" (prefills saturate the GPU at this
    request rate) or "max_num_seqs" (the engine's default concurrency cap). Latencies are estimates
    (see `Recommendation.assumptions`). `usd_*` are None without a price for the GPU.
    """

    engine: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    replicas: int
    kv_dtype: str
    weights_dtype: str
    max_model_len: int
    users: int
    users_per_instance: int
    max_users: int
    max_users_per_instance: int
    headroom: float
    binding: str
    decode_bound: str
    tpot_ms: float
    decode_tokens_per_s_per_user: float
    decode_tokens_per_s_per_gpu: float
    ttft_ms: float
    requests_per_s: float
    output_tokens_per_s: float
    price_per_gpu_hour: float | None
    usd_per_hour: float | None
    usd_per_million_output_tokens: float | None
    memory: MemoryLedger
    memory_fraction: float | None  # vLLM gpu_memory_utilization / SGLang mem_fraction_static / TRT-LLM fraction
    launch: str
    notes: tuple[str, ...] = ()
    engine_version: str = ""  # the engine release whose rules and defaults were applied

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["memory"] = self.memory.to_dict()
        d["notes"] = list(self.notes)
        return d


@dataclass(frozen=True)
class Recommendation:
    """The answer: `deployments` best first (fewest GPUs, or cheapest per hour when priced; one per
    engine × GPU × KV dtype × weights dtype). `fits` is False when none meets the workload and SLA;
    then `why_not` says why and `smallest_change` what would make one fit (with the numbers).
    `rejected` counts the candidate layouts by the reason they failed; `skipped` lists layouts an
    engine refuses (e.g. a TP that does not divide the heads)."""

    model: str
    workload: Workload
    sla: SLA
    engines: tuple[str, ...]
    gpus: tuple[str, ...]
    deployments: tuple[Deployment, ...]
    fits: bool
    why_not: str | None
    smallest_change: str | None
    changes: tuple[str, ...]
    rejected: dict[str, int]
    skipped: tuple[str, ...]
    candidates: int
    assumptions: dict[str, Any]
    elapsed_ms: float
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> Deployment | None:
        return self.deployments[0] if self.deployments else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "workload": self.workload.to_dict(), "sla": self.sla.to_dict(),
            "engines": list(self.engines), "gpus": list(self.gpus),
            "deployments": [d.to_dict() for d in self.deployments], "fits": self.fits,
            "why_not": self.why_not, "smallest_change": self.smallest_change, "changes": list(self.changes),
            "rejected": dict(self.rejected), "skipped": list(self.skipped), "candidates": self.candidates,
            "assumptions": dict(self.assumptions), "elapsed_ms": self.elapsed_ms, "notes": list(self.notes),
        }


# ---- the KV side: per-request demand over the workload's distribution --------------------------

@dataclass(frozen=True)
class _Demand:
    """One live request's KV demand over the length classes, in the engine's units (blocks, pool
    tokens, or bytes), with the shared prefix split out."""

    units: str  # "blocks" | "bytes"
    shared: float  # prefix units stored once per instance
    mean: float  # live-weighted mean of one request's own units (prefix excluded)
    sd: float
    largest: float
    longest_request: float  # the longest request's units, prefix included (must fit alone)
    decode_kv_bytes: int  # KV bytes one sequence at the live mean context holds (what a step reads)
    bytes_per_block: int | None = None  # when the engine pages with a fixed block (vLLM, TRT-LLM)

    def need(self, n: int) -> float:
        """Units that n live requests need 95 % of the time."""
        if n <= 0:
            return 0.0
        return self.shared + min(n * self.largest, n * self.mean + Z95 * math.sqrt(n) * self.sd)

    def max_users(self, usable: float) -> int:
        if usable < self.longest_request or usable <= self.shared:
            return 0
        hi = int((usable - self.shared) / max(self.mean, 1e-9)) + 1
        lo = 0
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.need(mid) <= usable:
                lo = mid
            else:
                hi = mid - 1
        return lo


def _demand(arch, engine: str, kv_dtype: str, tp: int, pp: int, wl: Workload, opts: dict) -> _Demand:
    args = dict(engine=engine, kv_dtype=kv_dtype, tp=tp, pp=pp, **opts)
    ctx = max(1, round(wl.live_mean_context))
    decode_kv = kv_cache(arch, context_len=ctx, batch=1, **args).kv_bytes
    share = [c.live_share for c in wl.classes]
    prefix = wl.prefix_tokens if engine in PREFIX_CACHING else 0
    ref = 1 << 40  # a large reference budget: per-request blocks do not depend on it
    units: list[float] = []
    shared: list[float] = []
    cap = None
    if engine == "llama.cpp":
        # llama.cpp gives every slot the full context up front: lengths do not matter.
        one = kv_cache(arch, context_len=wl.max_model_len, batch=1, **args).kv_bytes
        units = [float(one)] * len(wl.classes)
        shared = [0.0] * len(wl.classes)
        kind = "bytes"
    else:
        for c in wl.classes:
            cap = capacity(arch, kv_memory=ref, max_model_len=c.total_tokens, **args)
            if cap.num_blocks and cap.blocks_per_request:
                # Other pools (sliding-window, Mamba slots) can bind before the main one: take the
                # engine's own concurrency as the share one request uses.
                d = max(float(cap.blocks_per_request), cap.num_blocks / cap.max_concurrency
                        if cap.max_concurrency else float(cap.blocks_per_request))
                block = cap.block_size or 1
                s = (prefix // block) * d / cdiv(c.total_tokens, block) if prefix else 0.0
                kind = "blocks"
            else:
                d = float(kv_cache(arch, context_len=c.total_tokens, batch=1, **args).kv_bytes)
                s = 0.0
                kind = "bytes"
            units.append(d)
            shared.append(s)
        longest = capacity(arch, kv_memory=ref, max_model_len=wl.max_model_len, **args) if kind == "blocks" else None
    own = [u - s for u, s in zip(units, shared)]
    mean = sum(w * x for w, x in zip(share, own))
    var = sum(w * (x - mean) ** 2 for w, x in zip(share, own))
    if engine == "llama.cpp" or kind == "bytes":
        longest_units = float(kv_cache(arch, context_len=wl.max_model_len, batch=1, **args).kv_bytes)
    else:
        longest_units = float(max(longest.blocks_per_request, longest.num_blocks / longest.max_concurrency
                                  if longest.max_concurrency else 0))
    return _Demand(kind, max(shared), mean, math.sqrt(max(0.0, var)), max(own), longest_units, decode_kv,
                   cap.bytes_per_block if (cap is not None and kind == "blocks") else None)


def _usable(arch, engine: str, kv_dtype: str, tp: int, pp: int, wl: Workload, opts: dict, budget: int,
            units: str, bpb: int | None) -> tuple[float, float]:
    """(usable units, bytes per unit) of a per-GPU KV budget."""
    if budget <= 0:
        return 0.0, 1.0
    if units == "bytes":
        return float(budget), 1.0
    null = 1 if engine == "vllm" else 0  # vLLM's block 0 is the null block (as the planner counts it)
    if bpb:
        return float(max(0, budget // bpb - null)), float(bpb)
    cap = capacity(arch, kv_memory=budget, max_model_len=wl.max_model_len, engine=engine, kv_dtype=kv_dtype,
                   tp=tp, pp=pp, **opts)
    usable = max(0, (cap.num_blocks or 0) - null)
    per_unit = cap.bytes_per_block or (budget / cap.num_blocks if cap.num_blocks else 1.0)
    return float(usable), float(per_unit)


# ---- the latency side ------------------------------------------------------------------------

@dataclass
class _Speed:
    """Decode step and prefill times of one instance (seconds), from the roofline with efficiencies."""

    step_fn: Any
    prefill_mean_s: float
    prefill_p95_s: float
    output_mean: float

    def step(self, n: int) -> tuple[float, str]:
        return self.step_fn(n)

    def tpot_users(self, n: int) -> tuple[float, float, str]:
        """(TPOT s, mean TTFT s, bound) with n users per instance (closed loop, Little's law).

        Solves T·(1 − n·p/(t + O·T)) = s for T: O·T² + (t − n·p − s·O)·T − s·t = 0.
        """
        s, bound = self.step(n)
        p, o = self.prefill_mean_s, self.output_mean
        t = p + s
        b = t - n * p - s * o
        tpot = (-b + math.sqrt(b * b + 4 * o * s * t)) / (2 * o)
        if p > 0 and n * p / (t + o * tpot) > 0.5 and bound == "memory":
            bound = "compute"  # most of the time goes to prefill, which is compute-bound
        return tpot, t, bound

    def ttft_p95(self, n: int) -> float:
        return self.prefill_p95_s + self.step(n)[0]


def _speed(arch, plan_, dev: GPU, demand: _Demand, wl: Workload, engine: str, eta_bw: float, eta_fl: float,
           counts, allreduce_us: float = 0.0) -> _Speed:
    from kvplan.roofline import attention_flops_per_token, decode_roofline, prefill_time_s

    w = arch.weight_dims
    tp, pp = plan_.tp, plan_.pp
    read = plan_.weights_bytes
    experts = read * counts.experts // max(1, counts.total) if (w.num_experts and counts.experts) else 0
    bw = int(dev.bandwidth_bytes_per_s * eta_bw)
    # fp8 checkpoints run fp8 GEMMs where the GPU has them (Hopper, Blackwell, Ada): twice the bf16 rate.
    fp8 = str(plan_.weights_dtype).startswith("fp8") and dev.fp8_dense_flops
    peak = int((dev.fp8_dense_flops if fp8 else dev.bf16_dense_flops) * eta_fl)
    # Tensor parallelism all-reduces twice per layer (after attention and after the MLP); at decode
    # batch sizes the messages are tiny, so each costs a fixed latency, not bandwidth.
    comm_s = 2 * arch.num_layers * allreduce_us * 1e-6 if tp > 1 else 0.0
    ctx = max(1, round(wl.live_mean_context))
    attn = attention_flops_per_token(arch, ctx)
    cache: dict[int, tuple[float, str]] = {}

    def step(n: int) -> tuple[float, str]:
        if n not in cache:
            r = decode_roofline(batch=n, context_len=ctx, dense_weight_bytes=read - experts,
                                expert_weight_bytes=experts, kv_bytes=n * demand.decode_kv_bytes,
                                active_params=counts.active, attention_flops=attn, num_experts=w.num_experts,
                                top_k=w.num_experts_per_tok, tp=tp, pp=pp, bandwidth_bytes_per_s=bw,
                                peak_flops=peak)
            cache[n] = (r.step_ms / 1e3 + comm_s, r.bound)
        return cache[n]

    prefix = wl.prefix_tokens if engine in PREFIX_CACHING else 0

    def prefill(prompt: int) -> float:
        return prefill_time_s(arch, prompt_len=max(1, prompt - prefix), active_params=counts.active,
                              weight_bytes=read, tp=tp, pp=pp, bandwidth_bytes_per_s=bw, peak_flops=peak) + comm_s

    mean = sum(c.share * prefill(c.prompt_tokens) for c in wl.classes)
    return _Speed(step, mean, prefill(wl.prompt_p95), wl.output_tokens)


# ---- the search ------------------------------------------------------------------------------

def _as_list(value, field: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, GPU)):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    raise InvalidInputError(field, f"expected a name or a list, got {type(value).__name__}")


def _resolve_gpus(gpus) -> list[GPU]:
    items = _as_list(gpus, "gpus") or list(DEFAULT_GPUS)
    out: list[GPU] = []
    for g in items:
        dev = g if isinstance(g, GPU) else get_gpu(g)
        if not dev.bandwidth_bytes_per_s or not dev.bf16_dense_flops:
            raise InvalidInputError("gpus", f"{dev.name}: bandwidth and FLOP/s are needed for latency; "
                                            "describe it with custom_gpu(memory, bandwidth=..., bf16_flops=...)")
        if dev.name not in [o.name for o in out]:
            out.append(dev)
    return out


def _resolve_prices(prices, gpus: list[GPU]) -> dict[str, float]:
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise InvalidInputError("prices", "expected a mapping GPU -> $/GPU-hour, e.g. {'H100': 2.49}")
    out: dict[str, float] = {}
    names = {g.name: g for g in gpus}
    for key, value in prices.items():
        name = key.name if isinstance(key, GPU) else (names[key].name if key in names else get_gpu(key).name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InvalidInputError("prices", f"{key}: a price must be a positive $/GPU-hour, got {value!r}")
        out[name] = float(value)
    return out


def _kv_dtypes(engine: str, kv_dtype) -> list[str]:
    if isinstance(kv_dtype, str) and kv_dtype.strip().lower() == "any":
        return list(ANY_KV_DTYPES.get(engine, ("auto",)))
    items = _as_list(kv_dtype, "kv_dtype") or ["auto"]
    return [str(k) for k in items]


def _efficiency(value, default: float, field: str) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InvalidInputError(field, f"must be a fraction in (0, 1], got {value!r}")
    return float(value)


def _allreduce(value) -> float:
    if value is None:
        return DEFAULT_ALLREDUCE_US
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10_000:
        raise InvalidInputError("allreduce_us", f"must be microseconds in [0, 10000], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Latency:
    """Estimated decode and prefill times for `users` on one instance (see the module docstring).

    `step_ms`: one decode step for all users; `tpot_ms`: time per output token with prefills sharing
    the GPU; `prefill_ms`: the mean prompt's prefill; `ttft_ms`: the p95 prompt's prefill + one step."""

    users: int
    step_ms: float
    tpot_ms: float
    prefill_ms: float
    ttft_ms: float
    decode_tokens_per_s_per_user: float
    bound: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def estimate_latency(model: Model, *, gpu: str | GPU, users: int, prompt_tokens: int | str | float,
                     output_tokens: int | str | float, tp: int = 1, pp: int = 1, engine: str = "vllm",
                     kv_dtype: str = "auto", weights_dtype: str = "auto", prefix_tokens: int | str = 0,
                     bandwidth_efficiency: float | None = None, compute_efficiency: float | None = None,
                     allreduce_us: float | None = None, engine_version: str | None = None,
                     **engine_options: Any) -> Latency:
    """The latency `recommend` assumes for `users` concurrent users on one tp × pp instance of `gpu`
    (memory is not checked here: see `planner.plan`). Used by benchmarks/latency.py to compare the
    model with published measurements.

    >>> lat = estimate_latency("meta-llama/Llama-3.1-8B", gpu="H100", users=1, prompt_tokens=1000, output_tokens=200)
    >>> round(lat.step_ms, 2)  # (16.09 GB of weights + one sequence's KV) / (3.35 TB/s × 0.75)
    6.46
    """
    from kvplan.planner import plan
    from kvplan.weights import param_counts

    arch = _arch(model)
    wl = make_workload(users=users, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                       prefix_tokens=prefix_tokens, model_max_len=arch.max_position_embeddings)
    dev = _resolve_gpus([gpu])[0]
    eta_bw = _efficiency(bandwidth_efficiency, DEFAULT_BANDWIDTH_EFFICIENCY, "bandwidth_efficiency")
    eta_fl = _efficiency(compute_efficiency, DEFAULT_COMPUTE_EFFICIENCY, "compute_efficiency")
    mod, version = resolve_engine(engine, engine_version)
    p = plan(arch, gpu=dev, tp=tp, pp=pp, num_gpus=tp * pp, max_model_len=wl.max_model_len, engine=mod.NAME,
             kv_dtype=kv_dtype, weights_dtype=weights_dtype, engine_version=version, **engine_options)
    from kvplan.planner import _PLANNER_OPTIONS

    opts = {k: v for k, v in engine_options.items() if k not in _PLANNER_OPTIONS and k not in
            ("kv_memory", "activation_bytes", "cuda_graph_bytes", "non_torch_bytes")}
    dem = _demand(arch, mod.NAME, kv_dtype, tp, pp, wl, {**opts, "engine_version": version})
    speed = _speed(arch, p, dev, dem, wl, mod.NAME, eta_bw, eta_fl, param_counts(arch), _allreduce(allreduce_us))
    tpot, _, bound = speed.tpot_users(users)
    step, _ = speed.step(users)
    return Latency(users=users, step_ms=round(step * 1e3, 4), tpot_ms=round(tpot * 1e3, 4),
                   prefill_ms=round(speed.prefill_mean_s * 1e3, 4), ttft_ms=round(speed.ttft_p95(users) * 1e3, 4),
                   decode_tokens_per_s_per_user=round(1 / tpot, 3), bound=bound)


def recommend(model: Model, *, users: int | None = None, request_rate: float | None = None,
              prompt_tokens: int | str | float | None = None, output_tokens: int | str | float | None = None,
              prompt_p95: int | str | float | None = None, output_p95: int | str | float | None = None,
              lengths: Any = None, prefix_tokens: int | str = 0, max_model_len: int | str | None = None,
              tpot_ms: float | None = None, min_tokens_per_s_per_user: float | None = None,
              ttft_ms: float | None = None, gpus: str | GPU | Sequence[str | GPU] | None = None,
              prices: Mapping[str, float] | None = None, engines: str | Sequence[str] = "vllm",
              kv_dtype: str | Sequence[str] = "auto", weights_dtype: str | Sequence[str] = "auto",
              max_tp: int = 8, max_pp: int = 4, max_gpus: int = MAX_GPUS,
              bandwidth_efficiency: float | None = None, compute_efficiency: float | None = None,
              gpu_memory_utilization: float | None = None, engine_version: str | None = None,
              allreduce_us: float | None = None, options_by_engine: Mapping[str, Mapping[str, Any]] | None = None,
              **engine_options: Any) -> Recommendation:
    """Deployments that serve a workload within an SLA, best first.

    Workload: `users` (concurrent sessions) or `request_rate` (requests/s; concurrency from Little's
    law); `prompt_tokens` / `output_tokens` means (optional `prompt_p95` / `output_p95`, or
    `lengths`: a CSV/JSON path or rows of (prompt, output[, count])); `prefix_tokens` shared by every
    prompt; `max_model_len` the engine setting (default: the longest request).
    SLA: `tpot_ms` or `min_tokens_per_s_per_user`, and `ttft_ms` (p95 prompt, no queueing).
    Hardware: `gpus` (catalog names or `GPU` objects; default DEFAULT_GPUS), `prices` {GPU: $/GPU-hour}.
    Search: `engines` (names; "vllm@0.19" pins a release, as does `engine_version`), `kv_dtype` ("auto", "any" or a list), `weights_dtype` ("auto" or a list, e.g.
    ["auto", "fp8"]), TP in TP_SIZES up to `max_tp` (only those the engine accepts for the heads), PP
    up to `max_pp`, at most `max_gpus` GPUs. Latency: `bandwidth_efficiency` / `compute_efficiency`
    override the achieved fractions of peak. `engine_options` go to `planner.plan`: the engine's own
    knobs (block_size, ...) and the planner's (kv_memory replaces each GPU's KV budget,
    activation_bytes, mem_fraction_static, ...). `options_by_engine` {engine: options} adds options
    for one engine only (SGLang's dp_attention beside vLLM's block_size, which the other engines do not
    take). A `max_num_seqs` given caps the users per instance (otherwise vLLM's default cap applies).

    An SLA or workload no candidate meets is not an error: the result has `fits=False`, `why_not`
    and `smallest_change`.

    >>> r = recommend("meta-llama/Llama-3.1-8B", users=10, prompt_tokens=1000, output_tokens=200, gpus="H100")
    >>> r.best.gpu, r.best.num_gpus
    ('H100-SXM', 1)

    Raises:
        InvalidInputError (naming the field), UnknownModelError, UnknownGPUError, UnsupportedDtypeError.
    """
    from kvplan.launch import launch_command
    from kvplan.planner import plan
    from kvplan.weights import param_counts

    started = time.perf_counter()
    arch = _arch(model)
    wl = make_workload(users=users, request_rate=request_rate, prompt_tokens=prompt_tokens,
                       output_tokens=output_tokens, prompt_p95=prompt_p95, output_p95=output_p95, lengths=lengths,
                       prefix_tokens=prefix_tokens, max_model_len=max_model_len,
                       model_max_len=arch.max_position_embeddings)
    sla = make_sla(tpot_ms=tpot_ms, min_tokens_per_s_per_user=min_tokens_per_s_per_user, ttft_ms=ttft_ms)
    devs = _resolve_gpus(gpus)
    price = _resolve_prices(prices, devs)
    # "vllm@0.19" or engine_version= pin a release; each engine's version is parsed once, here.
    specs: dict[tuple[str, str], tuple[str, Any]] = {}
    for e in _as_list(engines, "engines") or ["vllm"]:
        mod, version = resolve_engine(e, engine_version)
        specs.setdefault((mod.NAME, str(version)), (mod.NAME, version))
    engine_names = [name for name, _ in specs.values()]
    own_options: dict[str, dict[str, Any]] = {}
    for key, opts in (options_by_engine or {}).items():
        if not isinstance(opts, Mapping):
            raise InvalidInputError("options_by_engine", f"expected {{engine: {{option: value}}}}, got {opts!r}"[:200])
        name = get_engine(str(key)).NAME
        if name not in engine_names:
            raise InvalidInputError("options_by_engine", f"options for {name}, which is not among the engines "
                                                         f"searched ({', '.join(engine_names)})")
        own_options[name] = {**own_options.get(name, {}), **opts}
    wdtypes = [str(w) for w in (_as_list(weights_dtype, "weights_dtype") or ["auto"])]
    for name, value in (("max_tp", max_tp), ("max_pp", max_pp), ("max_gpus", max_gpus)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
            raise InvalidInputError(name, f"must be a whole number in 1..4096, got {value!r}")
    eta_bw = _efficiency(bandwidth_efficiency, DEFAULT_BANDWIDTH_EFFICIENCY, "bandwidth_efficiency")
    eta_fl = _efficiency(compute_efficiency, DEFAULT_COMPUTE_EFFICIENCY, "compute_efficiency")
    ar_us = _allreduce(allreduce_us)
    counts = param_counts(arch)
    # engine_options: the engine's own knobs go to kv_cache/capacity too; planner knobs only to plan().
    from kvplan.planner import _PLANNER_OPTIONS

    planner_only = set(_PLANNER_OPTIONS) | {"kv_memory", "activation_bytes", "cuda_graph_bytes", "non_torch_bytes"}
    kv_options = {k: v for k, v in engine_options.items() if k not in planner_only}

    found: list[dict] = []
    rejected: dict[str, int] = {}
    skipped: list[str] = []
    best_fail: dict[str, tuple] = {}
    candidates = 0

    def reject(reason: str, score: float, detail: str) -> None:
        rejected[reason] = rejected.get(reason, 0) + 1
        if reason not in best_fail or score < best_fail[reason][0]:
            best_fail[reason] = (score, detail)

    for engine, version in specs.values():
        kvs = _kv_dtypes(engine, kv_dtype)
        own = own_options.get(engine, {})
        eopts = {**engine_options, **own}
        vopts = {**kv_options, **{k: v for k, v in own.items() if k not in planner_only}, "engine_version": version}
        demand_cache: dict[tuple, _Demand] = {}
        for tp in (t for t in TP_SIZES if t <= max_tp):
            tp_ok = True
            for pp in (p for p in PP_SIZES if p <= max_pp):
                if pp > arch.num_layers or tp * pp > max_gpus:
                    continue
                for wd in wdtypes:
                    for dev in devs:
                        try:
                            p = plan(arch, gpu=dev, tp=tp, pp=pp, num_gpus=tp * pp, max_model_len=wl.max_model_len,
                                     engine=engine, kv_dtype=kvs[0], weights_dtype=wd,
                                     gpu_memory_utilization=gpu_memory_utilization, engine_version=version,
                                     **eopts)
                        except InvalidInputError as err:
                            # A TP the heads (or SGLang's DP-attention size) cannot split: skip the size.
                            if err.field in ("tp", "dp_attention"):
                                skipped.append(f"{engine} tp={tp}: {err}")
                                tp_ok = False
                                break
                            raise
                        # A KV memory given replaces the budget: a layout whose weights and overheads
                        # leave less than that on the GPU cannot hold it (Llama-3.1-70B at TP 1 on an H100).
                        too_big = eopts.get("kv_memory") is not None and p.free_bytes < 0
                        for kv in kvs:
                            candidates += 1
                            label = f"{engine} {dev.name} tp={tp} pp={pp} kv={kv} weights={wd}"
                            if too_big:
                                reject("weights", p.free_bytes, f"{label}: weights, overheads and the given "
                                       f"kv_memory exceed the GPU by {fmt_bytes(-p.free_bytes)}")
                                continue
                            key = (kv, tp, pp)
                            if key not in demand_cache:
                                demand_cache[key] = _demand(arch, engine, kv, tp, pp, wl, vopts)
                            dem = demand_cache[key]
                            usable, per_unit = _usable(arch, engine, kv, tp, pp, wl, vopts,
                                                       p.kv_budget_bytes, dem.units, dem.bytes_per_block)
                            n_mem = dem.max_users(usable)
                            if n_mem < 1:
                                reject("weights", -p.max_model_len_that_fits,
                                       f"{label}: weights and overheads leave {fmt_bytes(max(0, p.kv_budget_bytes))} "
                                       f"of KV per GPU, not enough for one {wl.max_model_len:,}-token request "
                                       f"(longest that fits: {p.max_model_len_that_fits:,})")
                                continue
                            speed = _speed(arch, p, dev, dem, wl, engine, eta_bw, eta_fl, counts, ar_us)
                            res = _size(wl, sla, speed, n_mem, p, tp * pp, max_gpus, dev,
                                        max_num_seqs=eopts.get("max_num_seqs"))
                            if isinstance(res, tuple):
                                reason, score, detail = res
                                reject(reason, score, f"{label}: {detail}")
                                continue
                            res.update(engine=engine, dev=dev, tp=tp, pp=pp, kv=kv, wd=wd, plan=p, dem=dem,
                                       usable=usable, per_unit=per_unit, speed=speed, options=eopts)
                            found.append(res)
                    if not tp_ok:
                        break
                if not tp_ok:
                    break

    deployments = [_deployment(arch, model, r, wl, price, eta_bw, eta_fl) for r in found]

    def rank(d: Deployment):
        cost = d.usd_per_hour if price else None
        # Fewest GPUs (or cheapest), then the faster per-user decode (TP before PP), then capacity.
        return (cost is None, cost or 0.0, d.num_gpus, round(d.tpot_ms, 1), -d.max_users)

    order = sorted(range(len(deployments)), key=lambda i: rank(deployments[i]))
    seen: set[tuple] = set()
    best: list[Deployment] = []
    for i in order:
        d = deployments[i]
        key = (d.engine, d.engine_version, d.gpu, d.kv_dtype, d.weights_dtype)
        if key not in seen:
            seen.add(key)
            best.append(_with_launch(d, found[i], model, arch, launch_command))

    why = change = None
    changes: list[str] = []
    if not best:
        why, changes = _why_not(wl, sla, rejected, best_fail, max_gpus, candidates)
        change = changes[0] if changes else None
    notes = list(wl.notes)
    notes.append(LATENCY_NOTE.format(bw=eta_bw, fl=eta_fl))
    assumptions = {
        "bandwidth_efficiency": eta_bw, "compute_efficiency": eta_fl, "allreduce_us": ar_us,
        "latency": LATENCY_NOTE.format(bw=eta_bw, fl=eta_fl),
        "kv_sizing": "each live request at prompt + output tokens; n users need shared prefix + n·μ + "
                     "1.645·√n·σ blocks (95th percentile of the sum), live requests weighted by output length",
        "prefill_sharing": "TPOT = decode step / (1 − share of GPU time spent on prefill), Little's law",
    }
    return Recommendation(
        model=arch.model_id, workload=wl, sla=sla, engines=tuple(engine_names), gpus=tuple(d.name for d in devs),
        deployments=tuple(best), fits=bool(best), why_not=why, smallest_change=change, changes=tuple(changes),
        rejected=rejected, skipped=tuple(dict.fromkeys(skipped)), candidates=candidates, assumptions=assumptions,
        elapsed_ms=round((time.perf_counter() - started) * 1e3, 1), notes=tuple(notes))


def _vllm_max_num_seqs(dev: GPU) -> int:
    """`vllm serve`'s default max_num_seqs, as the planner assumes it (ENGINE_KV_SPEC A.10)."""
    big = dev.memory_bytes >= 70 * GiB and "A100" not in dev.name.upper()
    return 1024 if big else 256


def _size(wl: Workload, sla: SLA, speed: _Speed, n_mem: int, p, gpus_per_instance: int, max_gpus: int,
          dev: GPU, max_num_seqs: int | None = None):
    """Users per instance and replicas for one candidate instance, or (reason, score, detail)."""
    cap_seqs = max_num_seqs or (_vllm_max_num_seqs(dev) if p.engine == "vllm" else 10**6)
    tpot_sla = None if sla.tpot_ms is None else sla.tpot_ms / 1e3
    ttft_sla = None if sla.ttft_ms is None else sla.ttft_ms / 1e3

    def tpot_at(n: int, rate: float | None) -> tuple[float, float, str]:
        if rate is None:
            return speed.tpot_users(n)
        s, bound = speed.step(n)
        f = rate * speed.prefill_mean_s
        return (s / (1 - f) if f < 1 else math.inf), speed.prefill_mean_s + s, bound

    tpot1, _, bound1 = tpot_at(1, None)
    if tpot_sla is not None and tpot1 > tpot_sla:
        return ("tpot", tpot1 * 1e3, f"one user already gets {tpot1 * 1e3:.1f} ms per token "
                                     f"(> {sla.tpot_ms:g} ms), {bound1}-bound")
    ttft1 = speed.ttft_p95(1)
    if ttft_sla is not None and ttft1 > ttft_sla:
        return ("ttft", ttft1 * 1e3, f"a {wl.prompt_p95:,}-token prompt takes {ttft1 * 1e3:,.0f} ms to "
                                     f"prefill (> {sla.ttft_ms:g} ms)")

    def ok(n: int) -> str | None:
        if n > n_mem:
            return "kv_memory"
        if n > cap_seqs:
            return "max_num_seqs"
        if ttft_sla is not None and speed.ttft_p95(n) > ttft_sla:
            return "ttft"
        if tpot_sla is not None:
            tpot, _, bound = speed.tpot_users(n)
            if tpot > tpot_sla:
                return "bandwidth" if bound == "memory" else "compute"
        return None

    hi = min(n_mem, cap_seqs)
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid) is None:
            lo = mid
        else:
            hi = mid - 1
    n_cap = lo
    binding = ok(n_cap + 1) or "kv_memory"
    max_replicas = max_gpus // gpus_per_instance

    if wl.users is not None:
        replicas = cdiv(wl.users, n_cap)
        if replicas > max_replicas:
            return ("max_gpus", replicas * gpus_per_instance,
                    f"needs {replicas * gpus_per_instance:,} GPUs ({replicas} × {gpus_per_instance}), over "
                    f"max_gpus={max_gpus}")
        n = cdiv(wl.users, replicas)
        tpot, ttft_mean, bound = speed.tpot_users(n)
        total_users = wl.users
        rate = total_users / (ttft_mean + wl.output_tokens * tpot)
    else:
        lam = wl.request_rate

        def settle(r: int) -> tuple[int, float, float, str] | None:
            """Users per instance at λ/r (fixed point of n = λ/r · (TTFT + O·TPOT(n))), or None."""
            li = lam / r
            f = li * speed.prefill_mean_s
            if f >= 0.95:
                return None
            n = 1
            for _ in range(200):
                s, bound = speed.step(n)
                nxt = max(1, math.ceil(li * (speed.prefill_mean_s + s + wl.output_tokens * s / (1 - f)) - 1e-9))
                if nxt > n_cap:
                    return None
                if nxt <= n:
                    s, bound = speed.step(n)
                    return n, s / (1 - f), speed.prefill_mean_s + s, ("compute" if f > 0.5 else bound)
                n = nxt
            return None

        if settle(max_replicas) is None:
            return ("max_gpus", math.inf, f"{lam:g} requests/s need more than max_gpus={max_gpus} GPUs "
                                          f"in {gpus_per_instance}-GPU instances")
        lo_r, hi_r = 1, max_replicas
        while lo_r < hi_r:
            mid = (lo_r + hi_r) // 2
            if settle(mid) is None:
                lo_r = mid + 1
            else:
                hi_r = mid
        replicas = lo_r
        n, tpot, ttft_mean, bound = settle(replicas)
        if tpot_sla is not None and tpot > tpot_sla:
            return ("tpot", tpot * 1e3, f"{tpot * 1e3:.1f} ms per token at {lam:g} requests/s")
        if replicas > 1 and settle(replicas - 1) is None and n < n_cap:
            binding = "prefill"
        total_users = n * replicas
        rate = lam
    return dict(n=n, n_cap=n_cap, replicas=replicas, users=total_users, binding=binding, tpot=tpot,
                ttft=speed.ttft_p95(n), decode_bound=bound, rate=rate)


def _with_launch(d: Deployment, r: dict, model, arch, launch_command) -> Deployment:
    """The deployment with its launch command (built only for the deployments returned)."""
    p = r["plan"]
    model_ref = model if isinstance(model, str) else arch.model_id
    launch = launch_command(r["engine"], model_ref, tp=d.tp, pp=d.pp, max_model_len=d.max_model_len,
                            max_num_seqs=d.max_users_per_instance, kv_dtype=d.kv_dtype, weights_dtype=r["wd"],
                            memory_fraction=p.gpu_memory_utilization,
                            model_dtype=p.weights_dtype if r["wd"] == "auto" else "")
    notes = list(d.notes)
    if launch:  # the engine options it was sized with, as the engine's flags
        from kvplan.launch import option_flags, unflagged_note

        flags = option_flags(r["engine"], r.get("options", {}))
        launch = f"{launch} {flags}" if flags else launch
        note = unflagged_note(r["engine"], r.get("options", {}))
        if note:
            notes.append(note)
    if r["engine"] == "vllm" and d.max_users_per_instance < _vllm_max_num_seqs(r["dev"]):
        notes.append("the activation peak is vLLM's at its default max_num_seqs; "
                     f"--max-num-seqs {d.max_users_per_instance} needs less, so the real KV budget is a little larger")
    if d.replicas > 1 and launch:
        notes.append(f"run {d.replicas} instances of the launch command behind a load balancer")
    return dataclasses.replace(d, launch=launch, notes=tuple(notes))


def _deployment(arch, model, r: dict, wl: Workload, price: dict, eta_bw: float, eta_fl: float):
    p, dev, dem = r["plan"], r["dev"], r["dem"]
    n, replicas, tp, pp = r["n"], r["replicas"], r["tp"], r["pp"]
    num_gpus = replicas * tp * pp
    used = int(min(r["usable"], dem.need(n)) * r["per_unit"])
    budget = max(0, p.kv_budget_bytes)
    ledger = MemoryLedger(
        gpu_memory_bytes=p.gpu_memory_bytes, weights_bytes=p.weights_bytes, activation_bytes=p.activation_bytes,
        non_torch_bytes=p.non_torch_bytes, cuda_graph_bytes=p.cuda_graph_bytes, kv_budget_bytes=budget,
        kv_used_bytes=used, kv_free_bytes=budget - used,
        unreserved_bytes=p.gpu_memory_bytes - p.weights_bytes - p.activation_bytes - p.non_torch_bytes
        - p.cuda_graph_bytes - budget)
    tpot = r["tpot"]
    out_tps = r["rate"] * wl.output_tokens
    gpu_price = price.get(dev.name)
    per_hour = None if gpu_price is None else gpu_price * num_gpus
    per_million = None if per_hour is None or out_tps <= 0 else per_hour / (out_tps * 3600) * 1e6
    notes: list[str] = []
    kv_label = p.kv_dtype if r["kv"] == "auto" else r["kv"]
    return Deployment(
        engine=r["engine"], gpu=dev.name, num_gpus=num_gpus, tp=tp, pp=pp, replicas=replicas, kv_dtype=kv_label,
        weights_dtype=p.weights_dtype, max_model_len=wl.max_model_len, users=r["users"], users_per_instance=n,
        max_users=r["n_cap"] * replicas, max_users_per_instance=r["n_cap"],
        headroom=round(r["n_cap"] * replicas / max(1, r["users"]) - 1, 4), binding=r["binding"],
        decode_bound=r["decode_bound"], tpot_ms=round(tpot * 1e3, 3),
        decode_tokens_per_s_per_user=round(1 / tpot, 2) if tpot else 0.0,
        decode_tokens_per_s_per_gpu=round(n / tpot / (tp * pp), 1) if tpot else 0.0,
        ttft_ms=round(r["ttft"] * 1e3, 1), requests_per_s=round(r["rate"], 4),
        output_tokens_per_s=round(out_tps, 1), price_per_gpu_hour=gpu_price,
        usd_per_hour=None if per_hour is None else round(per_hour, 2),
        usd_per_million_output_tokens=None if per_million is None else round(per_million, 4), memory=ledger,
        memory_fraction=p.gpu_memory_utilization, launch="", notes=tuple(notes),
        engine_version=p.engine_version)


def _why_not(wl: Workload, sla: SLA, rejected: dict, best_fail: dict, max_gpus: int,
             candidates: int) -> tuple[str, list[str]]:
    if not candidates:
        return ("no layout could be tried (every TP size was refused for this model's heads)",
                ["allow a larger max_tp or another engine"])
    parts = [f"{n} {reason}" for reason, n in sorted(rejected.items(), key=lambda kv: -kv[1])]
    why = f"none of {candidates} candidates serves the workload: " + ", ".join(parts)
    changes: list[str] = []
    if "tpot" in best_fail:
        score, detail = best_fail["tpot"]
        changes.append(f"relax tpot_ms to {math.ceil(score * 10) / 10:g} or more (fastest: {detail})")
    if "ttft" in best_fail:
        score, detail = best_fail["ttft"]
        changes.append(f"relax ttft_ms to {math.ceil(score):g} or more, or shorten prompts (fastest: {detail})")
    if "max_gpus" in best_fail:
        score, detail = best_fail["max_gpus"]
        if math.isfinite(score):
            changes.append(f"allow max_gpus={int(score)} (best: {detail})")
        else:
            changes.append(f"allow more than max_gpus={max_gpus} GPUs or lower the request rate")
    if "weights" in best_fail:
        score, detail = best_fail["weights"]
        longest = int(-score)
        shorter = f", or requests of at most {longest:,} tokens" if longest > 0 else ""
        # last: layouts that got past the memory check failed on something else, which is the change to make
        changes.append(f"use more GPUs per instance (max_tp / max_pp) or fp8 weights{shorter} (best: {detail})")
    return why, changes


class _CallableModule(types.ModuleType):
    """`kvplan.recommend` names both this module and its function: once the module is imported,
    Python binds the package attribute to the module, so the module forwards calls to the function
    and `kvplan.recommend(...)` works whichever was imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> Recommendation:
        return recommend(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
