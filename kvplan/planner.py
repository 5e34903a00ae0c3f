"""The capacity planner: GPU × parallelism × engine memory budget → KV budget → users, plus a roofline.

`plan()` answers "how many concurrent users fit for MODEL at L tokens with ENGINE on N × GPU at TP=T",
and `min_gpus()` the smallest layout that fits U users. Per GPU, the engine's budget is

* vLLM: `total × gpu_memory_utilization − weights − activation peak − non-torch − CUDA graphs`
  (ENGINE_KV_SPEC.md A.6). vLLM takes the minimum over workers, so figures are for the most-loaded GPU.
* SGLang: `mem_fraction_static` of the memory free at start covers weights + KV (B.2); the fraction
  defaults to B.3's heuristic. Activations and CUDA graphs live in the rest.
* TensorRT-LLM: `free_gpu_memory_fraction` (0.9) of what is free after weights and the warm-up peak (E).
* llama.cpp: the cache is what `-c` asks for; the budget is what is left after weights and the
  compute buffer, and the plan says whether it fits or how much must be offloaded.
* transformers / naive: whatever is left after weights, activations and the CUDA context.

Every overhead is an estimate the caller can override (`activation_bytes`, `non_torch_bytes`,
`cuda_graph_bytes`), and `kv_memory` replaces the whole budget. The KV side (blocks, the null block,
hybrid groups, concurrency) is the sizing core's `capacity()`; this module adds only the budget,
prefix caching, searches over lengths and layouts, and the roofline.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from kvplan.api import Model, _arch, capacity, kv_cache
from kvplan.engines import resolve_engine
from kvplan.engines.common import MAX_PARALLEL, largest_true
from kvplan.errors import DoesNotFitError, InvalidInputError
from kvplan.gpus import GPU, custom_gpu, get_gpu
from kvplan.roofline import attention_flops_per_token, decode_roofline, prefill_time_s, step_time_s
from kvplan.units import GiB, MAX_BYTES, cdiv, check_count, fmt_bytes, parse_bytes, parse_tokens, show_number
from kvplan.weights import param_counts, resolve_weights_dtype, weights_bytes

__all__ = ["Plan", "plan", "min_gpus", "vllm_activation_bytes", "sglang_mem_fraction_static", "sglang_vlm_factor",
           "DEFAULT_GPU_MEMORY_UTILIZATION", "step_time_s"]

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
"""vLLM's historical default; the default used is a function of the engine version (0.92 in the newest
releases kvplan models, see `kvplan.engine_versions("vllm")`)."""
MAX_USERS = 10**9  # concurrent users the planner takes (no work grows with the count)
TRTLLM_FREE_GPU_MEMORY_FRACTION = 0.9

# vLLM non-torch memory (NCCL, cuBLAS workspaces, CUDA context growth) during profiling, as logged by
# v0.19.0 on H100 (llm-d-planner sweep): 0.25 GiB at TP=1, 2.07-2.13 GiB per GPU at TP>=2 (custom
# all-reduce buffers). Older versions logged 0.13 GiB (TP=1) and 0.54 GiB (TP=2).
VLLM_NON_TORCH_TP1 = 25 * GiB // 100
VLLM_NON_TORCH_TP = 207 * GiB // 100
# vLLM >= 0.21 subtracts its CUDA-graph estimate from the KV budget ("Estimated CUDA graph memory"):
# v0.19 logged estimates of 0.81-1.13 GiB on H100 (median 0.84). Before 0.21 graphs came out of the
# 1 − utilization headroom: pass cuda_graph_bytes=0 to model those versions.
VLLM_CUDA_GRAPH = 84 * GiB // 100
# At TP >= 2 the v0.19 estimates spread 0.57-1.82 GiB (12 llm-d v0.19 logs, median 1.30): custom
# all-reduce graphs add to each capture. The median is used; pass cuda_graph_bytes to pin it.
VLLM_CUDA_GRAPH_TP = 130 * GiB // 100
# Pipeline stages (TP=1) log 0.07 GiB non-torch (llm-d v0.19 PP=2 and PP=4, both stages), and the last
# stage, which binds the pool, holds two T×H hidden-state buffers on top of the sampler peak (2.01 vs
# 1.89 GiB on both logs). Granite (model_type granite) logs 0.46 GiB non-torch at TP=1 on all three
# llm-d v0.19 Granite logs (3.1-2b, 3.1-8b, 3.3-8b) where other models log 0.24-0.27.
VLLM_NON_TORCH_PP = 7 * GiB // 100
VLLM_NON_TORCH_GRANITE = 46 * GiB // 100
# Memory in use before weights load (CUDA context), for engines that size from "free at start".
CUDA_CONTEXT = GiB // 2

# Planner knobs accepted through **engine_options (the rest go to the engine's own Options).
_PLANNER_OPTIONS = ("max_num_seqs", "activation_fit", "vllm_use_v1", "allow_long_max_model_len", "mem_fraction_static", "free_gpu_memory_fraction",
                    "chunked_prefill_size", "cuda_graph_max_bs", "expert_pad", "decode_batch",
                    "decode_context", "max_loras", "max_lora_rank", "limit_mm_per_prompt", "mm_profile_bytes",
                    "encoder_cache_tokens")


def _check_planner_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """Type and range of every planner knob, before any work (a string `max_num_seqs` was multiplied
    into gigabytes; 1e308 or NaN put NaN into the results; 2.5 made byte counts floats)."""
    from kvplan.engines.common import MAX_BATCH
    from kvplan.units import MAX_TOKENS

    counts = {"max_num_seqs": 1 << 20, "chunked_prefill_size": MAX_TOKENS, "cuda_graph_max_bs": 1 << 20,
              "expert_pad": 1 << 16, "decode_batch": MAX_BATCH, "decode_context": MAX_TOKENS}
    out = {}
    for key, value in knobs.items():
        if value is None:
            continue
        if key == "vllm_use_v1":
            if not isinstance(value, bool):
                raise InvalidInputError(key, f"expected true or false, got {show_number(value)}")
            out[key] = value
        elif key in counts:
            out[key] = check_count(value, key, maximum=counts[key])
        elif key in ("mem_fraction_static", "free_gpu_memory_fraction"):
            out[key] = _fraction(value, key)
        elif key == "activation_fit":
            if value not in ("v0.17+", "new", "v0.16", "old"):
                raise InvalidInputError(key, f"choose 'v0.17+' or 'v0.16', got {show_number(value)}")
            out[key] = value
        else:  # knobs checked where they are used (the pool's LoRA / speculative settings)
            out[key] = value
    return out


def vllm_activation_bytes(arch, *, max_num_batched_tokens: int = 8192, max_num_seqs: int = 1024,
                          tp: int = 1, fit: str = "v0.17+", dtype_bytes: int = 2) -> int:
    """vLLM's profiled torch activation peak ("torch peak memory increase"), estimated.

    The peak is the larger of the sampler dry run, which holds fp32 logits for `max_num_seqs`
    requests over the whole vocabulary on every TP rank (S·V·4 bytes), and the dummy forward pass
    of T = `max_num_batched_tokens` tokens (MLP intermediate I/tp and hidden H, `dtype_bytes` each):

        v0.17+ : max(3.628·S·V·4 + 4.762·S·H·4 + 0.037 GiB [+ MoE workspace], T·(3.68·I/tp + 2.43·H)·b)
        ≤ v0.16: max(9.67 · S·V·4,                             same forward term)
        V0     : max(S·V·4, 3.83 · T·I/tp·2)

    MoE models (fused_moe kernels) keep their workspace, T·k·(3·I_moe/tp + H)·2 bytes × 0.85, in the
    allocator when the sampler runs, so it adds to the sampler term (mxfp4 MoE kernels excluded).

    Fitted on public vLLM logs. Sampler term, v0.17+ (least squares, three constants): the llm-d v0.19.0
    H100 logs of Llama-3.1-8B (1.89 GiB), Llama-3.3-70B (1.96), gemma-2-2b/9b/27b-it (3.62, 3.65, 3.66),
    Qwen2.5-7B (2.21), Qwen3-8B (2.21), Qwen2.5-72B (2.29), phi-2 (0.79), phi-4 (1.52), gpt-oss-20b
    TP=2 (2.87): max error 0.005 GiB; the v0.17.0 Qwen3-14B row (2.23) is predicted at 2.233. Forward term: CodeLlama-7b (0.77 GiB) and
    Mistral-Small-3.1-24B TP=1 (2.03 GiB), both llm-d v0.19.0 (two logs, two constants). MoE factor
    0.85: Qwen3-30B-A3B (2.68 GiB), Qwen1.5-MoE-A2.7B (2.47) and Mixtral-8x7B TP=2 (1.21), llm-d
    v0.19.0. ≤ v0.16 sampler factor: Qwen3-14B/32B v0.15-16 (5.64), Llama-3.1-8B (4.76), gpt-oss-120b/20b
    (7.38) from llm-d-benchmark: max error 0.041 GiB. V0: vllm#10517 (Llama-3.1-8B at 20,000 and 29,000
    tokens: 2.07 and 2.99 GiB). TP does not shrink the sampler term (TP=2/TP=4 logs show 1.89 GiB).
    """
    w = arch.weight_dims
    sampler = max_num_seqs * w.vocab_size * 4
    moe = bool(w.num_experts)
    if fit == "v0":
        inter = (w.moe_intermediate_size or w.intermediate_size) * max(1, w.num_experts_per_tok) if moe \
            else w.intermediate_size
        return max(sampler, max_num_batched_tokens * cdiv(inter, tp) * 2 * 383 // 100)
    dense_inter = 0 if moe else w.intermediate_size
    forward = max_num_batched_tokens * (368 * cdiv(dense_inter, tp) + 243 * w.hidden_size) // 100 * dtype_bytes
    workspace = 0
    if moe and w.quant_format != "mxfp4":
        m_inter = cdiv(w.moe_intermediate_size or w.intermediate_size, tp)
        workspace = max_num_batched_tokens * max(1, w.num_experts_per_tok) * (3 * m_inter + w.hidden_size) \
            * 2 * 85 // 100
    if fit in ("v0.17+", "new"):
        hidden = max_num_seqs * w.hidden_size * 4
        return max(sampler * 3628 // 1000 + hidden * 4762 // 1000 + 37 * GiB // 1000 + workspace, forward)
    if fit in ("v0.16", "old"):
        return max(sampler * 967 // 100 + workspace, forward)
    raise InvalidInputError("activation_fit", f"choose 'v0.17+', 'v0.16' or 'v0', got {fit!r}")


def _vllm_sampler_warmup_note(arch, total: int, util: float, act: int, graphs: int, max_num_seqs: int,
                              tp: int) -> str | None:
    """A warning when vLLM will likely size its cache and then run out of memory warming up the sampler.

    After the KV cache is allocated, the sampler warm-up (max_num_seqs dummy requests) and the CUDA
    graphs must fit in the 1 − gpu_memory_utilization headroom. With mxfp4 MoE kernels (gpt-oss) the
    profiled peak misses the kernels' own buffers, and the warm-up needs about the profiled peak plus
    the graphs plus one more fp32 logits tensor. Fitted on llm-d v0.19 gpt-oss-20b: util 0.95 fails at
    TP=1 and TP=2 ("CUDA out of memory occurred when warming up sampler with 1024 dummy requests"), 0.90
    at TP=2 starts. Other models are not flagged: at 0.95 every other v0.19 run started.
    """
    w = arch.weight_dims
    if w.quant_format != "mxfp4" or not w.num_experts:
        return None
    headroom = total - math.ceil(total * util)
    need = act + graphs + max_num_seqs * w.vocab_size * 4
    if headroom >= need:
        return None
    return (f"warning: after the KV cache is allocated only {fmt_bytes(headroom)} is left for the sampler warm-up "
            f"and CUDA graphs, which need about {fmt_bytes(need)}: vLLM is likely to run out of memory while "
            f"warming up the sampler; lower gpu_memory_utilization (e.g. 0.90) or max_num_seqs")


def _sglang_defaults(gpu_mem_mib: int, tp: int, small_gpu_graph_bs: int = 24) -> tuple[int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs) by GPU memory, as server_args sets them from 0.5.3."""
    gb = gpu_mem_mib / 1024
    if gb < 20:
        return 2048, 8
    if gb < 35:
        return 2048, small_gpu_graph_bs if tp < 4 else 80
    if gb < 60:
        return 4096, 32 if tp < 4 else 160
    if gb < 160:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def _sglang_tp_table(parallel: int) -> float:
    return 0.79 if parallel >= 16 else 0.81 if parallel >= 8 else 0.85 if parallel >= 4 else \
        0.87 if parallel >= 2 else 0.88


def sglang_mem_fraction_static(gpu_memory_bytes: int, *, tp: int = 1, pp: int = 1,
                               chunked_prefill_size: int | None = None,
                               cuda_graph_max_bs: int | None = None, engine_version: Any = None,
                               speculative: str | None = None, dp_attention: int = 1,
                               vision_dims: tuple[int, ...] = ()) -> float:
    """SGLang's default `mem_fraction_static` at `engine_version` (the newest modelled by default),
    computed from the GPU's memory in MB as server_args does (ENGINE_KV_SPEC B.3). The rule changed
    three times (kvplan.engines.sglang.VERSIONS `mem_fraction_rule`):

    * up to 0.4.7: a table by TP size (0.88 at TP 1 ... 0.79 at TP 16), with big-GPU reserves from 0.4.6;
    * 0.4.8-0.5.2 (sglang PR #7054): reserve (2.8 + TP·PP/10), (9.5 + TP·PP/2) or (12 + TP·PP/2) GiB by
      GPU memory tier, 32 GiB above 160 GiB;
    * from 0.5.3 (PR #10975): 512 MB + 1.5·chunked prefill + 2·cuda_graph_max_bs + TP·PP/8 GiB (at least
      10 GiB above 60 GB), chunk and graph batch set by memory tier. H100 80GB, TP=1: ≈ 0.835.

    `speculative` (a kvplan method name) and `dp_attention` (DP size) add their reserves where the
    version does; `vision_dims` (the vision tower's (layers, hidden size)) applies the multimodal factor.
    """
    from kvplan.engines import sglang as sg

    ver = engine_version if hasattr(engine_version, "release") else sg.VERSIONS.parse(engine_version)
    rule = sg.VERSIONS.value("mem_fraction_rule", ver)
    mem_mb = gpu_memory_bytes / (1 << 20)
    spec = speculative not in (None, "", "ngram")
    if rule.startswith("tp_table"):
        # 0.4.7 sized the table by TP×PP (PP arrived then); before, by TP
        parallel = tp * pp if rule == "tp_table_big18" else tp
        frac = _sglang_tp_table(parallel)
        if rule == "tp_table_big13" and mem_mb > 81920:
            frac = (mem_mb - 13 * 1024) / mem_mb
        elif rule == "tp_table_big18":
            frac = frac if mem_mb <= 81920 else 0.88
            if mem_mb > 180_000:
                frac = 0.79
            elif mem_mb > 96 * 1024:
                reserve = (20 if spec else 18) * 1024
                frac = min(frac + 48 * 1024 * (1 - frac) / mem_mb, (mem_mb - reserve) / mem_mb)
            elif spec:
                frac *= 0.95
    elif rule == "gpu_tier":
        p = tp * pp
        gib = (2.8 + p / 10) if mem_mb < 35 * 1024 else (9.5 + p / 2) if mem_mb < 90 * 1024 else \
            (12 + p / 2) if mem_mb < 160 * 1024 else 32
        reserved = gib * 1024
        if spec:
            reserved += (6 if speculative == "draft_model" and ver.at_least("0.5.2") else 2) * 1024
        if dp_attention > 1:
            reserved += 4 * 1024
        frac = round((mem_mb - reserved) / mem_mb, 3)
    else:
        chunk, bs = _sglang_defaults(int(mem_mb), tp, sg.VERSIONS.value("small_gpu_graph_bs", ver))
        chunk = chunked_prefill_size or chunk
        bs = cuda_graph_max_bs or bs
        reserved = 512 + max(chunk, 2048) * 1.5 + bs * 2 + (tp * pp / 8) * 1024
        if dp_attention > 1:
            reserved += bs * dp_attention * 3 + (bs * dp_attention * 1.5 if bs > 300 else 0)
        if mem_mb / 1024 > 60:
            reserved = max(reserved, 10240)
        if spec:
            reserved += (6 if speculative == "draft_model" else 2) * 1024
        frac = round((mem_mb - reserved) / mem_mb, 3)
    return frac * sglang_vlm_factor(vision_dims, ver) if vision_dims else frac


def sglang_vlm_factor(vision_dims: tuple[int, ...], engine_version: Any = None) -> float:
    """What SGLang multiplies the memory fraction by for a multimodal model (`vlm_mem_fraction`): 0.95
    up to 0.4.4, 0.90 in 0.4.5-0.4.9, then 0.95 × clamp(1 − 0.1·(L·H²/(24·1024²) − 1), 0.8, 1.05) for a
    vision tower of L layers and hidden size H (server_args.adjust_mem_fraction_for_vlm)."""
    from kvplan.engines import sglang as sg

    ver = engine_version if hasattr(engine_version, "release") else sg.VERSIONS.parse(engine_version)
    rule = sg.VERSIONS.value("vlm_mem_fraction", ver)
    if rule == "x0.95":
        return 0.95
    if rule == "x0.90":
        return 0.90
    layers, hidden = vision_dims
    ratio = layers * hidden ** 2 / (24 * 1024 ** 2)
    return 0.95 * max(0.8, min(1.05, 1.0 - 0.1 * (ratio - 1.0)))


def _llamacpp_compute_bytes(arch, ubatch: int = 512) -> int:
    """llama.cpp compute buffer: about the f32 logits of one ubatch plus a few hidden-size rows."""
    w = arch.weight_dims
    return ubatch * (w.vocab_size + 16 * w.hidden_size) * 4


@dataclass(frozen=True)
class Plan:
    """A deployment, its per-GPU memory budget, what it holds, and a roofline.

    Bytes are per GPU (the most-loaded one of the layout). `max_concurrency` is per engine instance
    (a tp × pp group), counted the engine's way (vLLM's "Maximum concurrency", null block included);
    `max_sequences` is whole `max_model_len` requests one instance can run at once (usable blocks);
    `total_sequences` sums the `num_gpus / (tp·pp)` data-parallel replicas; `users_per_gpu` =
    max_concurrency / (tp·pp). `fits`: with `users`, whether they all fit at `max_model_len` (with the
    shared prefix); without, whether one full-length request fits (engines refuse to start otherwise).
    Roofline figures are 0.0 when the GPU's bandwidth / FLOP/s are unknown.
    """

    model: str
    engine: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    dp: int
    max_model_len: int
    kv_dtype: str
    weights_dtype: str
    gpu_memory_bytes: int
    gpu_memory_utilization: float | None
    requested_bytes: int  # what the engine may use on this GPU (vLLM total × utilization)
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_budget_bytes: int  # negative when the weights and overheads alone exceed the budget
    free_bytes: int  # GPU memory left after all of the above (and the KV budget)
    num_params: int
    active_params: int
    block_size: int | None
    num_blocks: int | None
    kv_bytes_per_token: int
    kv_bytes_per_sequence: int
    kv_tokens: int
    max_concurrency: float
    users_per_gpu: float
    max_sequences: int
    total_sequences: int
    fits: bool
    users: int | None
    max_context_for_users: int | None
    max_model_len_that_fits: int
    prefix_tokens: int
    users_with_prefix: int
    decode_batch: int
    decode_context: int
    decode_ms_per_step: float
    decode_tokens_per_s_per_user: float
    decode_tokens_per_s_per_gpu: float
    decode_bound: str
    prefill_ms: float
    notes: tuple[str, ...] = ()
    engine_version: str = ""  # the engine release whose rules and defaults were applied
    # Other items the engine holds beside weights and KV, each taken out of the KV budget (kvplan.pool):
    # "draft_weights", "lora", "encoder_cache", "mm_profiling"; {} when none applies.
    pool_bytes: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d

    def check(self) -> "Plan":
        """Return self if it fits, else raise DoesNotFitError with the numbers and what would fit."""
        if self.fits:
            return self
        have = max(0, self.kv_budget_bytes)
        if self.users is not None and self.max_sequences >= 1:
            need = self.users * self.kv_bytes_per_sequence // max(1, self.dp)
            msg = (f"{self.users} users × {self.max_model_len:,} tokens need about {fmt_bytes(need)} of KV "
                   f"per GPU; the budget is {fmt_bytes(have)} ({self.users_with_prefix} users fit). ")
            if self.max_context_for_users:
                msg += f"At {self.users} users the longest context that fits is {self.max_context_for_users:,}. "
            msg += "Add GPUs (`min_gpus`), use fp8 KV, or lower max_model_len."
        elif self.kv_budget_bytes <= 0:
            need = self.kv_bytes_per_sequence
            # A shorter context or a higher memory fraction cannot help when nothing is left for KV.
            msg = (f"the weights ({fmt_bytes(self.weights_bytes)} per GPU) and the engine's overheads leave no "
                   f"memory for the KV cache (budget {fmt_bytes(self.kv_budget_bytes)}); no context length fits. "
                   "Split the model over more GPUs (tp), use lower-precision weights, or a larger GPU.")
        else:
            need = self.kv_bytes_per_sequence
            msg = (f"one {self.max_model_len:,}-token request needs {fmt_bytes(need)} of KV per GPU but "
                   f"the KV budget is {fmt_bytes(self.kv_budget_bytes)} (weights {fmt_bytes(self.weights_bytes)}); "
                   f"the estimated maximum model length is {self.max_model_len_that_fits:,}. Try increasing "
                   "gpu_memory_utilization, decreasing max_model_len, more GPUs (tp) or fp8 weights/KV.")
        raise DoesNotFitError(msg, need_bytes=need, have_bytes=have, max_model_len=self.max_model_len_that_fits)


def _resolve_gpu(gpu, gpu_memory, bandwidth) -> GPU:
    if isinstance(gpu, GPU):
        return gpu
    if gpu is not None and gpu_memory is not None:
        raise InvalidInputError("gpu", "give either a GPU name or gpu_memory, not both")
    if gpu is not None:
        found = get_gpu(gpu)
        if bandwidth is not None:
            found = dataclasses.replace(found, bandwidth_bytes_per_s=custom_gpu(1, bandwidth=bandwidth).bandwidth_bytes_per_s)
        return found
    if gpu_memory is None:
        raise InvalidInputError("gpu", "name a GPU (`kvplan gpus`) or give gpu_memory, e.g. 48GiB")
    return custom_gpu(gpu_memory, bandwidth=bandwidth)


def _override(value, field: str) -> int | None:
    if value is None:
        return None
    n = parse_bytes(value, field)
    return check_count(n, field, minimum=0, maximum=MAX_BYTES)


def _fraction(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InvalidInputError(field, f"must be a fraction in (0, 1], got {show_number(value)}")
    return float(value)


def _hub_checkpoint_bytes(model: Model) -> int | None:
    """Exact checkpoint bytes for a Hub id (safetensors headers), None for anything else or on failure."""
    from pathlib import Path

    from kvplan.registry import list_models

    if not isinstance(model, str) or model in list_models() or Path(model).exists():
        return None
    from kvplan import hub  # lazy: only Hub ids reach here

    if not hub.is_hub_ref(model):
        return None
    try:
        info = hub.fetch_weights_info(model)
    except Exception:  # noqa: BLE001 - weights info is an improvement; the config already resolved
        return None
    return info.total_bytes if info and info.total_bytes > 0 else None


def _pool_lines(arch, engine: str, opts: dict, planner_opts: dict, *, tp: int, max_batched: int,
                notes: list[str]) -> dict[str, int]:
    """Budget lines for speculative-decoding draft weights, LoRA slots and the multimodal encoder."""
    from kvplan import pool

    lines: dict[str, int] = {}
    method, draft = opts.get("speculative"), opts.get("draft_model")
    if method is not None or draft is not None:
        from kvplan import speculative

        name = speculative.method_name(method, draft)
        if name:
            draft_arch = _arch(draft) if draft is not None else None
            b = pool.draft_weight_bytes(arch, name, draft_arch, tp=tp)
            if b:
                lines["draft_weights"] = b
                notes.append(f"speculative decoding ({name}): draft weights {fmt_bytes(b)} per GPU"
                             + ("" if draft_arch is not None or name == "mtp" else
                                " (one decoder layer of the target's shape: an estimate)"))
    loras, rank = planner_opts.get("max_loras"), planner_opts.get("max_lora_rank")
    if loras is not None or rank is not None:
        if engine not in ("vllm", "sglang"):
            raise InvalidInputError("max_loras", f"LoRA slots are modelled for vllm and sglang, not {engine}")
        loras = (1 if engine == "vllm" else 8) if loras is None else loras  # --max-loras / --max-loras-per-batch
        rank = 16 if rank is None else rank
        b = pool.lora_bytes(arch, max_loras=loras, max_lora_rank=rank, tp=tp, dtype_bytes=4 if arch.dtype == "fp32" else 2)
        if b:
            lines["lora"] = b
            notes.append(f"LoRA: {loras} adapter slot(s) of rank {rank}: A/B buffers {fmt_bytes(b)} per GPU")
    if engine == "vllm" and arch.weight_dims.vision_num_layers:
        raw = planner_opts.get("limit_mm_per_prompt")
        limits = pool.parse_mm_limits(raw) if raw is not None else None
        text_only = bool(limits) and all(v == 0 for v in limits.values())
        enc = pool.encoder_cache_bytes(arch, budget_tokens=planner_opts.get("encoder_cache_tokens") or max_batched,
                                       limits=limits)
        if enc:
            lines["encoder_cache"] = enc
        prof = planner_opts.get("mm_profile_bytes")
        if prof is not None and not text_only:
            lines["mm_profiling"] = _override(prof, "mm_profile_bytes")
        if text_only:
            notes.append("--limit-mm-per-prompt 0: text only, no encoder cache and no encoder profiling run "
                         "(vllm PR #25631: Qwen2.5-VL-3B's KV went from 5.26 to 25.05 GiB on a 40 GB A100)")
        elif prof is None:
            notes.append("multimodal: the encoder's profiling peak (largest dummy image/video) is not estimated "
                         "and can take GiBs; give mm_profile_bytes, or limit_mm_per_prompt=0 for text only")
    return lines


def plan(model: Model, *, gpu: str | GPU | None = None, gpu_memory: str | int | None = None,
         bandwidth: str | None = None, num_gpus: int = 1, tp: int = 1, pp: int = 1,
         max_model_len: int | str, users: int | None = None, engine: str = "vllm", kv_dtype: str = "auto",
         weights_dtype: str = "auto", gpu_memory_utilization: float | None = None,
         kv_memory: str | int | None = None, prefix_tokens: int = 0, activation_bytes: int | None = None,
         cuda_graph_bytes: int | None = None, non_torch_bytes: int | None = None,
         engine_version: str | None = None, **engine_options: Any) -> Plan:
    """Plan a deployment of `model` on `num_gpus` × `gpu` (tp × pp per engine instance).

    `engine_options` are the engine's own knobs (vLLM `block_size`, `max_num_batched_tokens`, ...)
    plus planner knobs: `max_num_seqs` (vLLM sampler size), `activation_fit` ("v0.17+" | "v0.16"),
    `mem_fraction_static` (SGLang), `free_gpu_memory_fraction` (TRT-LLM), `expert_pad`,
    `decode_batch` / `decode_context` (roofline batch and length; default: the users, or the
    sequences that fit, at `max_model_len`).

    >>> p = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len="8k")
    >>> p.fits, p.weights_bytes
    (True, 16094076928)

    Raises:
        UnknownModelError, UnknownGPUError, InvalidInputError, UnsupportedDtypeError.
    """
    arch = _arch(model)
    mod, version = resolve_engine(engine, engine_version)
    name = mod.NAME

    def rule(key: str):
        return mod.VERSIONS.value(key, version)
    dev = _resolve_gpu(gpu, gpu_memory, bandwidth)
    length = check_count(parse_tokens(max_model_len, "max_model_len"), "max_model_len")
    for field, value in (("tp", tp), ("pp", pp)):
        check_count(value, field, maximum=MAX_PARALLEL)
    if users is not None:
        check_count(users, "users", maximum=MAX_USERS)
    # Data-parallel replicas past one per user serve no one, so the GPU count is bounded by the
    # instances the users can fill (at least MAX_PARALLEL replicas): `min_gpus` for 100,000 users of a
    # 70B model needs thousands of GPUs, and no work here grows with the count.
    check_count(num_gpus, "num_gpus", maximum=MAX_USERS * tp * pp)
    gpu_limit = tp * pp * max(MAX_PARALLEL, users or 0)
    if num_gpus > gpu_limit:
        raise InvalidInputError("num_gpus", f"{num_gpus:,} is more than tp·pp × max({MAX_PARALLEL:,}, users) = "
                                            f"{gpu_limit:,}: replicas past one per user serve no one")
    num_gpus = max(num_gpus, tp * pp)
    if num_gpus % (tp * pp):
        raise InvalidInputError("num_gpus", f"{num_gpus} GPUs do not split into tp·pp = {tp * pp}-GPU "
                                            "instances; use a multiple")
    dp = num_gpus // (tp * pp)
    prefix_tokens = check_count(prefix_tokens, "prefix_tokens", minimum=0, maximum=length)

    opts = dict(engine_options)
    planner_opts = _check_planner_knobs({k: opts.pop(k) for k in _PLANNER_OPTIONS if k in opts})
    opts["engine_version"] = version  # every sizing call below applies this release's rules
    notes: list[str] = list(mod.VERSIONS.notes(version)) if mod.VERSIONS is not None else []
    big_gpu = dev.memory_bytes >= 70 * GiB and "A100" not in dev.name.upper()
    v0 = False
    if name == "vllm":
        limit = arch.max_position_embeddings
        if limit and length > limit and not planner_opts.get("allow_long_max_model_len"):
            # vLLM (ModelConfig max_model_len check) refuses to start; its override is an env var.
            raise InvalidInputError("max_model_len", f"{length:,} is above this model's maximum ({limit:,}, "
                                                     "max_position_embeddings); vLLM refuses it. To override as vLLM "
                                                     "does (VLLM_ALLOW_LONG_MAX_MODEL_LEN=1) pass "
                                                     "allow_long_max_model_len=true")
        use_v1 = planner_opts.get("vllm_use_v1")
        v0 = rule("engine_core") == "v0" if use_v1 is None else not use_v1
        if v0 and version.at_least("0.11.0"):
            raise InvalidInputError("vllm_use_v1", f"vLLM {version} has no V0 engine (removed in 0.11); "
                                                   "drop vllm_use_v1=false or use engine_version <= 0.10")
        # A.10: `vllm serve` batch defaults depend on the GPU. V0 without chunked prefill (it turns on
        # above 32k tokens) profiles a whole max_model_len prompt.
        opts.setdefault("max_num_batched_tokens", (max(length, 2048) if length <= 32768 else 2048) if v0
                        else 8192 if big_gpu else 2048)
    max_num_seqs = planner_opts.get("max_num_seqs") or (1024 if big_gpu else 256)

    dense, _label = resolve_weights_dtype(arch, weights_dtype)
    wkey = str(weights_dtype).strip().lower()
    pad = planner_opts.get("expert_pad")
    if pad is None:
        mx = (wkey == "mxfp4") or (wkey == "auto" and arch.weight_dims.quant_format == "mxfp4")
        pad = 256 if (name == "vllm" and mx) else 1
        if pad > 1:
            notes.append("vLLM's mxfp4 MoE kernels pad each expert's intermediate dim to a multiple of 256")
    w_bytes = weights_bytes(arch, weights_dtype, tp, pp, expert_pad=pad)
    hub_total = _hub_checkpoint_bytes(model) if str(weights_dtype).strip().lower() == "auto" else None
    if hub_total:
        # A Hub checkpoint's safetensors headers give its exact bytes: keep the computed TP/PP split,
        # scaled to the real total (tied/untied embeddings, extra tensors, quantization all included).
        computed_total = weights_bytes(arch, weights_dtype, 1, 1, expert_pad=pad)
        w_bytes = w_bytes * hub_total // computed_total
        notes.append(f"weights from the checkpoint's safetensors headers: {fmt_bytes(hub_total)} in all "
                     f"(config-derived estimate {fmt_bytes(computed_total)})")
    read_bytes = w_bytes  # what a decode step streams (the RoPE cache below is not)
    if name in ("vllm", "sglang"):
        # The RoPE cos/sin cache (max_position × head_dim, model dtype) is allocated with the weights and
        # counted in "Model loading took": 32 MiB for Llama-3.1 (131072 × 128 × 2 B), on every rank.
        head_dim = next((getattr(sp, "head_dim", 0) or getattr(sp, "rope_dim", 0) for sp in arch.layers
                         if getattr(sp, "head_dim", 0) or getattr(sp, "rope_dim", 0)), 0)
        w_bytes += arch.max_position_embeddings * head_dim * 2
    counts = param_counts(arch)
    total = dev.memory_bytes

    util = None
    act = _override(activation_bytes, "activation_bytes")
    ntorch = _override(non_torch_bytes, "non_torch_bytes")
    graphs = _override(cuda_graph_bytes, "cuda_graph_bytes")
    if name == "vllm":
        util = _fraction(rule("gpu_memory_utilization") if gpu_memory_utilization is None
                         else gpu_memory_utilization, "gpu_memory_utilization")
        requested = math.ceil(total * util)
        fit = planner_opts.get("activation_fit") or rule("activation_profile")
        profile_tokens = opts["max_num_batched_tokens"]
        if v0:
            fit = "v0"
            notes.append(f"vLLM V0 engine: the profile run holds {profile_tokens:,} tokens"
                         + (" (chunked prefill off: max(max_model_len, 2048))" if length <= 32768 else ""))
        if act is None:
            act = vllm_activation_bytes(arch, max_num_batched_tokens=profile_tokens,
                                        max_num_seqs=max_num_seqs, tp=tp, fit=fit,
                                        dtype_bytes=4 if dense == "fp32" else 2)
            if pp > 1:  # the last stage binds the pool: its sampler peak plus two hidden-state buffers
                act += 2 * profile_tokens * arch.weight_dims.hidden_size * 2
        if ntorch is None:
            ntorch = rule("non_torch_tp") if tp > 1 else rule("non_torch_tp1")
            if tp == 1 and pp > 1 and version.at_least("0.18.0"):
                ntorch = VLLM_NON_TORCH_PP
            elif tp == 1 and arch.model_type == "granite" and version.at_least("0.18.0"):
                ntorch = VLLM_NON_TORCH_GRANITE
        if graphs is None:
            graphs = (VLLM_CUDA_GRAPH_TP if tp > 1 else VLLM_CUDA_GRAPH) if rule("cuda_graphs_in_budget") else 0
        budget = requested - w_bytes - act - ntorch - graphs
        warm = _vllm_sampler_warmup_note(arch, total, util, act, graphs or VLLM_CUDA_GRAPH, max_num_seqs, tp)
        if warm:
            notes.append(warm)
    elif name == "sglang":
        ntorch = CUDA_CONTEXT if ntorch is None else ntorch
        free_at_start = total - ntorch
        frac = planner_opts.get("mem_fraction_static") or gpu_memory_utilization
        vision = arch.weight_dims.vision_config_dims
        if frac is None:
            from kvplan import speculative

            frac = sglang_mem_fraction_static(total, tp=tp, pp=pp, engine_version=version,
                                              chunked_prefill_size=planner_opts.get("chunked_prefill_size"),
                                              cuda_graph_max_bs=planner_opts.get("cuda_graph_max_bs"),
                                              speculative=speculative.method_name(opts.get("speculative"),
                                                                                  opts.get("draft_model")),
                                              dp_attention=opts.get("dp_attention") or 1, vision_dims=vision)
            if vision:
                notes.append(f"SGLang multimodal model: mem_fraction_static × {sglang_vlm_factor(vision, version):.4f} "
                             f"(vision tower {vision[0]} layers × {vision[1]})")
        elif vision and rule("vlm_factor_on_explicit"):
            frac = _fraction(frac, "mem_fraction_static") * sglang_vlm_factor(vision, version)
            notes.append(f"SGLang {version} scales a given mem_fraction_static by its multimodal factor too "
                         f"(× {sglang_vlm_factor(vision, version):.2f}, in ModelRunner)")
        util = _fraction(frac, "mem_fraction_static")
        requested = int(free_at_start * util)
        act = 0 if act is None else act
        graphs = 0 if graphs is None else graphs
        budget = requested - w_bytes - act - graphs
        notes.append(f"SGLang mem_fraction_static {util}: weights + KV share {fmt_bytes(requested)}; activations "
                     f"and CUDA graphs use the other {fmt_bytes(free_at_start - requested)}")
    elif name == "trtllm":
        util = _fraction(planner_opts.get("free_gpu_memory_fraction") or gpu_memory_utilization
                         or TRTLLM_FREE_GPU_MEMORY_FRACTION, "free_gpu_memory_fraction")
        if act is None:
            act = vllm_activation_bytes(arch, max_num_batched_tokens=8192, max_num_seqs=max_num_seqs, tp=tp)
        ntorch = (VLLM_NON_TORCH_TP if tp > 1 else VLLM_NON_TORCH_TP1) if ntorch is None else ntorch
        graphs = 0 if graphs is None else graphs
        free_after = total - w_bytes - act - ntorch - graphs
        budget = int(free_after * util) if free_after > 0 else free_after
        requested = total - free_after + budget  # what TRT-LLM ends up holding
        notes.append(f"TRT-LLM free_gpu_memory_fraction {util}: the KV cache takes that share of the "
                     f"{fmt_bytes(max(0, free_after))} free after weights and the warm-up peak")
    else:  # llama.cpp, transformers, naive: everything left after weights and overheads
        if act is None:
            act = _llamacpp_compute_bytes(arch, opts.get("ubatch", 512)) if name == "llama.cpp" else \
                vllm_activation_bytes(arch, max_num_batched_tokens=length, max_num_seqs=1, tp=tp)
        ntorch = CUDA_CONTEXT if ntorch is None else ntorch
        graphs = 0 if graphs is None else graphs
        requested = total
        budget = total - w_bytes - act - ntorch - graphs

    lines = _pool_lines(arch, name, opts, planner_opts, tp=tp,
                        max_batched=opts.get("max_num_batched_tokens", 8192), notes=notes)
    budget -= sum(lines.values())
    if kv_memory is not None:
        budget = _override(kv_memory, "kv_memory")
        notes.append("kv_memory given: it replaces the engine's budget")
    free = total - w_bytes - act - ntorch - graphs - sum(lines.values()) - max(0, budget)
    if free < 0 and kv_memory is not None:
        notes.append(f"weights + overheads + kv_memory exceed the GPU by {fmt_bytes(-free)}")

    cap_args = dict(max_model_len=length, engine=name, kv_dtype=kv_dtype, tp=tp, pp=pp, **opts)
    cap = capacity(arch, kv_memory=max(0, budget), **cap_args)
    one = kv_cache(arch, context_len=length, batch=1, engine=name, kv_dtype=kv_dtype, tp=tp, pp=pp, **opts)
    per_seq = one.kv_bytes

    def sequences_at(n_tokens: int, budget_bytes: int) -> int:
        return capacity(arch, kv_memory=max(0, budget_bytes), **{**cap_args, "max_model_len": n_tokens}).max_sequences

    max_seq = cap.max_sequences
    if name == "llama.cpp":
        # llama.cpp allocates -c = context × slots up front; whole sequences = budget // per-sequence cache.
        max_seq = max(0, budget) // per_seq if per_seq else 0
    fits_one = max_seq >= 1 and budget > 0
    max_len_fit = length if fits_one else largest_true(
        1, length, lambda n: (sequences_at(n, budget) if name != "llama.cpp" else
                              int(kv_cache(arch, context_len=n, batch=1, engine=name, kv_dtype=kv_dtype, tp=tp,
                                           pp=pp, **opts).kv_bytes <= budget)) >= 1)
    max_len_fit = max(0, max_len_fit)

    # Prefix caching: the shared prompt's full blocks are stored once (vLLM shares only full blocks;
    # SGLang's radix cache shares by token, page 1 by default).
    users_prefix = max_seq * dp
    block = cap.block_size or 1
    if prefix_tokens and cap.blocks_per_request and cap.num_blocks is not None:
        per_req = cap.blocks_per_request
        full_blocks = cdiv(length, block)
        shared = (prefix_tokens // block) * per_req // max(1, full_blocks)
        usable = cap.num_blocks - (1 if name == "vllm" else 0)
        if usable >= shared and per_req > shared:
            users_prefix = (usable - shared) // (per_req - shared) * dp
        if per_req != full_blocks:
            notes.append("prefix sharing scaled over hybrid/sliding groups: approximate")
    elif prefix_tokens and per_seq:
        shared_bytes = per_seq * prefix_tokens // length
        if budget > shared_bytes:
            users_prefix = (budget - shared_bytes) // max(1, per_seq - shared_bytes) * dp

    max_ctx_users = None
    if users is not None:
        per_instance = cdiv(users, dp)
        max_ctx_users = max(0, largest_true(1, length, lambda n: sequences_at(n, budget) >= per_instance)) \
            if name != "llama.cpp" else max(0, largest_true(1, length, lambda n: kv_cache(
                arch, context_len=n, batch=per_instance, engine=name, kv_dtype=kv_dtype, tp=tp, pp=pp,
                **opts).kv_bytes <= budget))
        fits = fits_one and users_prefix >= users
    else:
        fits = fits_one
    if not fits_one:
        notes.append(f"does not fit: one {length:,}-token request needs {fmt_bytes(per_seq)} of KV per GPU, "
                     f"the budget is {fmt_bytes(budget)}; the estimated maximum model length is {max_len_fit:,}")
        if name == "vllm":
            # vLLM's own error ("X GiB KV cache is needed, which is larger than the available KV cache
            # memory") counts hybrid group padding slots only from 0.26.
            padding = sum(r.bytes for r in one.breakdown if r.kind == "padding")
            needed = per_seq if rule("needed_includes_padding") else per_seq - padding
            notes.append(f"vLLM {version} reports {needed / GiB:.2f} GiB KV cache is needed for one request"
                         + ("" if not padding else " (with group padding)" if rule("needed_includes_padding")
                            else " (without group padding)"))
    if name == "llama.cpp" and not fits:
        need = (users or 1) * per_seq - max(0, budget)
        notes.append(f"llama.cpp: offload about {fmt_bytes(need)} (fewer --n-gpu-layers or KV on CPU) to fit")

    # Roofline: decode at `decode_batch` sequences of `decode_context` tokens (defaults: the users, or
    # what fits, at max_model_len: the end of every conversation, the slowest step).
    batch = planner_opts.get("decode_batch") or (cdiv(users, dp) if users else max(1, max_seq))
    ctx = planner_opts.get("decode_context") or length
    kv_step = kv_cache(arch, context_len=ctx, batch=batch, engine=name, kv_dtype=kv_dtype, tp=tp, pp=pp,
                       **opts).kv_bytes
    w = arch.weight_dims
    expert_bytes = 0
    if w.num_experts and counts.experts:
        expert_bytes = read_bytes * counts.experts // max(1, counts.total)
    peak = dev.bf16_dense_flops
    roof = decode_roofline(batch=batch, context_len=ctx, dense_weight_bytes=read_bytes - expert_bytes,
                           expert_weight_bytes=expert_bytes, kv_bytes=kv_step, active_params=counts.active,
                           attention_flops=attention_flops_per_token(arch, ctx), num_experts=w.num_experts,
                           top_k=w.num_experts_per_tok, tp=tp, pp=pp,
                           bandwidth_bytes_per_s=dev.bandwidth_bytes_per_s, peak_flops=peak)
    prefill = prefill_time_s(arch, prompt_len=length, active_params=counts.active, weight_bytes=read_bytes, tp=tp,
                             pp=pp, bandwidth_bytes_per_s=dev.bandwidth_bytes_per_s, peak_flops=peak) * 1e3
    if not dev.bandwidth_bytes_per_s or not peak:
        notes.append("GPU bandwidth or FLOP/s unknown: give --bandwidth for the roofline")
    notes.extend(cap.notes)

    return Plan(
        model=arch.model_id, engine=name, gpu=dev.name, num_gpus=num_gpus, tp=tp, pp=pp, dp=dp,
        max_model_len=length, kv_dtype=cap.kv_dtype, weights_dtype=_label if wkey == "auto" else wkey,
        gpu_memory_bytes=total, gpu_memory_utilization=util, requested_bytes=requested, weights_bytes=w_bytes,
        activation_bytes=act, non_torch_bytes=ntorch, cuda_graph_bytes=graphs, kv_budget_bytes=budget,
        free_bytes=free, num_params=counts.total, active_params=counts.active, block_size=cap.block_size,
        num_blocks=cap.num_blocks, kv_bytes_per_token=one.bytes_per_token, kv_bytes_per_sequence=per_seq,
        kv_tokens=cap.kv_tokens, max_concurrency=cap.max_concurrency,
        users_per_gpu=cap.max_concurrency * dp / num_gpus, max_sequences=max_seq, total_sequences=max_seq * dp,
        fits=fits, users=users, max_context_for_users=max_ctx_users, max_model_len_that_fits=max_len_fit,
        prefix_tokens=prefix_tokens, users_with_prefix=users_prefix, decode_batch=batch, decode_context=ctx,
        decode_ms_per_step=roof.step_ms, decode_tokens_per_s_per_user=roof.tokens_per_s_per_user,
        decode_tokens_per_s_per_gpu=roof.tokens_per_s_per_gpu, decode_bound=roof.bound, prefill_ms=prefill,
        notes=tuple(dict.fromkeys(notes)), engine_version=str(version), pool_bytes=lines,
    )


def min_gpus(model: Model, *, gpu: str | GPU | None = None, max_model_len: int | str, users: int,
             engine: str = "vllm", max_tp: int = 8, engine_version: str | None = None, **kwargs: Any) -> Plan:
    """The smallest deployment (fewest GPUs; then the smaller TP) where `users` concurrent
    `max_model_len`-token users fit: TP grows until the weights leave room for KV, then data-parallel
    replicas of that instance are added.

    Raises:
        DoesNotFitError: not even TP = `max_tp` holds one request (the numbers are in the error).
    """
    check_count(users, "users", maximum=MAX_USERS)
    check_count(max_tp, "max_tp", maximum=64)
    best: Plan | None = None
    last: Plan | None = None
    for tp in (t for t in (1, 2, 4, 8, 16, 32, 64) if t <= max_tp):
        try:
            p = plan(model, gpu=gpu, max_model_len=max_model_len, engine=engine, tp=tp, num_gpus=tp,
                     engine_version=engine_version, **kwargs)
        except InvalidInputError as err:
            if err.field == "tp":
                continue  # this TP does not divide the heads
            raise
        last = p
        per_instance = p.users_with_prefix
        if p.max_sequences < 1 or per_instance < 1:
            continue
        n = tp * cdiv(users, per_instance)
        if best is None or n < best.num_gpus:
            best = plan(model, gpu=gpu, max_model_len=max_model_len, engine=engine, tp=tp, num_gpus=n,
                        users=users, engine_version=engine_version, **kwargs)
    if best is None:
        if last is None:
            raise InvalidInputError("tp", f"no tensor-parallel size up to {max_tp} divides this model's heads")
        last.check()
        raise DoesNotFitError("no layout fits", max_model_len=last.max_model_len_that_fits)  # pragma: no cover
    return best
