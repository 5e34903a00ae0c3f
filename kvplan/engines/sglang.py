"""SGLang KV-cache allocation, per ENGINE_KV_SPEC.md §B.

A token-granular pool (`page_size` 1 by default) of `cell_size` bytes per token over the attention
layers; MLA keeps the latent (replicated per TP rank); hybrid-SWA models (gpt-oss) get a separate,
smaller sliding pool, while Gemma 2/3/3n disable it and cache every layer at full length; hybrid
Mamba/GDN models get a Mamba pool with fp32 SSM state by default. Per-request figures are the tokens a
sequence occupies in the pools; capacity follows `profile_max_num_token`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from kvplan.engines.common import (
    STATE, Capacity, KVEstimate, Request, cdiv, check_tp, grouped_stages, kv_heads_per_rank, mamba_state_elems,
    pool_kv_cache,
)
from kvplan.dtypes import get_dtype
from kvplan.errors import InvalidInputError, UnsupportedConfigError
from kvplan.layers import MLA, ChunkedLocal, FullAttention, ModelArch, RecurrentState, SlidingWindow
from kvplan.versions import VersionRule, VersionTable

NAME = "sglang"
KV_DTYPES = ("bf16", "fp16", "fp32", "fp8", "fp8_e4m3", "fp8_e5m2")

# Model types whose windowed layers get the hybrid SWA pool (window-sized) by default, by release.
# 0.4.10: every model that exposes get_attention_sliding_window_size (Gemma 2/3/3n) and is not Llama 4;
# 0.5.0: Gemma 2/3/3n set disable_hybrid_swa_memory (and gpt-oss, new in 0.5, too); 0.5.7: MiMo-V2-Flash;
# 0.5.8: is_hybrid_swa_model() lists Llama 4, gpt-oss and MiMo-V2 (Gemma stays off).
_GEMMA_SWA = ("gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text")
HYBRID_SWA_MODEL_TYPES = ("gpt_oss", "llama4", "llama4_text", "mimo_v2_flash")

_SGL = "https://github.com/sgl-project/sglang"
# Which SGLang rule changes at which release. Keys that name an `Options` field become that option's
# default at the requested version (an explicit option still wins); the others are read by the planner.
# Post releases (0.4.6.post1) count as their base release: where a .postN changed a rule, the note says so.
VERSIONS = VersionTable("sglang", oldest="0.4.0", latest="0.5.9", scheme="semver", rules=(
    VersionRule("mem_fraction_rule", "0.4.6", "tp_table", "tp_table_big13",
                "default --mem-fraction-static: a table by TP size (0.88 / 0.87 / 0.85 / 0.81 / 0.79 at TP 1 / 2 / "
                "4 / 8 / 16) up to 0.4.5; from 0.4.6 GPUs above 80 GiB reserve 13 GiB instead: (mem - 13 GiB) / mem",
                "sglang 0.4.5 vs 0.4.6 wheels (pip download sglang==X.Y.Z): python/sglang/srt/server_args.py "
                "__post_init__"),
    VersionRule("mem_fraction_rule", "0.4.7", "tp_table_big13", "tp_table_big18",
                "GPUs above 96 GiB: min(f + 48 GiB·(1-f)/mem, (mem - 18 GiB)/mem) (20 GiB with speculative "
                "decoding), above 180,000 MB 0.79; the table is by TP×PP",
                f"{_SGL}/pull/5893 (relax mem_fraction_static for h200, 2025-04-29); sglang 0.4.7 wheel"),
    VersionRule("mem_fraction_rule", "0.4.8", "tp_table_big18", "gpu_tier",
                "reserved = (2.8 + TP·PP/10) GiB below 35 GiB, (9.5 + TP·PP/2) GiB below 90 GiB, (12 + TP·PP/2) "
                "GiB below 160 GiB, 32 GiB above (+2 GiB speculative, +4 GiB DP attention); "
                "f = round((mem - reserved)/mem, 3)",
                f"{_SGL}/pull/7054 (Simplify the heuristics for setting --mem-fraction-static, 2025-06-10); "
                "sglang 0.4.8-0.5.2 wheels"),
    VersionRule("mem_fraction_rule", "0.5.3", "gpu_tier", "reserve",
                "reserved = 512 MB + 1.5·max(chunked_prefill_size, 2048) + 2·cuda_graph_max_bs + TP·PP/8 GiB "
                "(at least 10 GiB above 60 GB; + DP-attention and speculative terms); both sizes set by GPU "
                "memory tier",
                f"{_SGL}/pull/10975 (Use more general heuristics to set the default value of "
                "--mem-fraction-static, 2025-09-27); sglang 0.5.3 wheel"),
    VersionRule("small_gpu_graph_bs", "0.5.5", 16, 24,
                "cuda_graph_max_bs on 20-35 GB GPUs at TP < 4 (enters the reserved memory as 2 MB per batch "
                "slot): 16 in 0.5.3-0.5.4, 24 from 0.5.5",
                "sglang 0.5.4 vs 0.5.5 wheels, server_args.py _handle_gpu_memory_settings"),
    VersionRule("vlm_mem_fraction", "0.4.5", "x0.95", "x0.90",
                "multimodal models: the fraction is multiplied by 0.95 up to 0.4.4, by 0.90 from 0.4.5",
                "sglang 0.4.4 vs 0.4.5 wheels, model_runner.py ('Automatically reduce --mem-fraction-static ... "
                "because this is a multimodal model')"),
    VersionRule("vlm_mem_fraction", "0.4.10", "x0.90", "vit_scaled",
                "multimodal models: f × 0.95 × clamp(1 - 0.1·(L·H²/(24·1024²) - 1), 0.8, 1.05) with the vision "
                "tower's num_hidden_layers L (default 24) and hidden_size H (default 1024)",
                f"{_SGL}/pull/6881 (tune mem fraction static for vlm); sglang 0.4.10 wheel, "
                "server_args.adjust_mem_fraction_for_vlm"),
    VersionRule("vlm_factor_on_explicit", "0.4.9", True, False,
                "up to 0.4.8 the multimodal factor also scales a --mem-fraction-static given on the command line "
                "(it is applied in ModelRunner); from 0.4.9 only the default",
                "sglang 0.4.8 vs 0.4.9 wheels (model_runner.py vs server_args.py)"),
    VersionRule("hybrid_swa_models", "0.4.10", (), _GEMMA_SWA,
                "hybrid SWA pool (window layers keep a window-sized pool): introduced for every model with "
                "get_attention_sliding_window_size except Llama 4, i.e. Gemma 2/3/3n (0.4.10.post2 already "
                "turned it off for Gemma 2); before 0.4.10 windowed layers are cached at full length",
                f"{_SGL}/pull/7367 (SWA memory pool); sglang 0.4.9 vs 0.4.10 wheels"),
    VersionRule("hybrid_swa_models", "0.5.0", _GEMMA_SWA, (),
                "Gemma 2/3/3n set disable_hybrid_swa_memory ('not compatible', FIXME in server_args); gpt-oss "
                "(new in 0.5) also runs without the SWA pool: every layer at full length",
                "sglang 0.4.10 vs 0.5.1 wheels, server_args._handle_model_specific_adjustments"),
    VersionRule("hybrid_swa_models", "0.5.7", (), ("mimo_v2_flash",),
                "MiMo-V2-Flash uses the SWA pool (is_hybrid_model returns 1 for it)",
                "sglang 0.5.7 wheel, configs/model_config.py is_hybrid_model"),
    VersionRule("hybrid_swa_models", "0.5.8", ("mimo_v2_flash",), HYBRID_SWA_MODEL_TYPES,
                "gpt-oss (except with the trtllm_mha backend, the Blackwell default) and Llama 4 use the SWA pool "
                "by default: is_hybrid_swa_model lists Llama4ForConditionalGeneration, GptOssForCausalLM, MiMo-V2",
                f"{_SGL}/pull/17261 (Use swa radix cache and memory pool for gpt-oss model, 2026-01-17), "
                f"{_SGL}/pull/16399 (Remove hybrid_kvcache_ratio: Llama 4, 2026-01-04); sglang 0.5.8 wheel"),
    VersionRule("indexer_in_budget", "0.5.4", False, True,
                "DSA models (DeepSeek-V3.2, GLM-5): the fp8 indexer key (132 B per token per layer) is counted "
                "in the token budget and in the 'KV size' log line; before, it was allocated beside the pool "
                "unbudgeted (an OOM on 8×B200)",
                f"{_SGL}/pull/11309 ([DeepSeek-V3.2] Include indexer kv cache when estimating kv cache size, "
                "2025-10-07); sglang 0.5.3 vs 0.5.4 wheels"),
    VersionRule("mamba_pool_ratio_gdn", "0.5.4", False, True,
                "GDN hybrids (Qwen3-Next): the Mamba pool takes r/(1+r) of the budget (mamba_full_memory_ratio "
                "r = 0.9) with the Mamba radix cache; before, radix cache off and max_mamba_cache_size = "
                "max_running_requests or 512 request slots (÷ DP size with DP attention)",
                f"{_SGL}/pull/11214 (Support mamba radix cache v0, 2025-10), {_SGL}/pull/11679 (ratio 0.2 -> "
                "0.9, quoted in sglang#25993); sglang 0.5.3 vs 0.5.4 wheels"),
    VersionRule("mamba_pool_ratio_mamba2", "0.5.7", False, True,
                "Mamba2 hybrids (Nemotron-H, Granite-4.0-H): the same r/(1+r) Mamba pool; before, radix cache off "
                "('model detected, disable radix cache') and 512 request slots",
                f"{_SGL}/pull/13584 (Enable RadixCache for Mamba2 models, 2025-11-19); sglang 0.5.6 vs 0.5.7 "
                "wheels"),
))


@dataclass(frozen=True)
class Options:
    """SGLang knobs that change the bytes. Defaults are SGLang's."""

    block_size: int | None = None
    """--page-size; None = 1 (token-granular radix cache). FlashMLA forces 64, cutlass_mla 128."""
    hybrid_swa_memory: bool | None = None
    """None = SGLang's per-model default (on for gpt-oss / Llama 4, off for Gemma and the rest)."""
    swa_full_tokens_ratio: float = 0.8
    mamba_ssm_dtype: str = "fp32"
    """--mamba-ssm-dtype (SGLANG_MAMBA_SSM_DTYPE): float32 by default."""
    mamba_full_memory_ratio: float = 0.9
    max_mamba_cache_size: int | None = None
    """--max-mamba-cache-size: Mamba request slots (÷ DP size with DP attention). None = by ratio, or 512
    slots where the version sizes the Mamba pool by slots."""
    hybrid_swa_models: tuple[str, ...] = HYBRID_SWA_MODEL_TYPES
    """Model types that get the hybrid SWA pool by default (set by the version; see VERSIONS)."""
    indexer_in_budget: bool = True
    """DSA indexer counted in the token budget (sglang PR #11309, 0.5.4); set by the version."""
    mamba_pool_ratio_gdn: bool = True
    """GDN hybrids size the Mamba pool by mamba_full_memory_ratio (0.5.4+), else by slots; set by the version."""
    mamba_pool_ratio_mamba2: bool = True
    """Mamba2 hybrids size the Mamba pool by mamba_full_memory_ratio (0.5.7+), else by slots; set by the version."""
    num_speculative_tokens: int = 0
    """Tokens proposed per step by speculative decoding (`--speculative` / `--draft-model` add the draft's
    layers). Accepted so one command line works on every engine: here the pool changes only by the
    draft's layers (SGLang's per-draft-token Mamba states for hybrid models are not modelled)."""
    dp_attention: int = 1
    """--enable-dp-attention with --dp-size N: attention (and linear-attention state) runs with TP size
    tp / N, so each rank keeps tp / N-way split KV heads instead of tp-way."""

    def __post_init__(self):
        if type(self.num_speculative_tokens) is not int or not 0 <= self.num_speculative_tokens <= 64:
            raise InvalidInputError("num_speculative_tokens", f"must be between 0 and 64, got "
                                                              f"{self.num_speculative_tokens!r}")
        if type(self.dp_attention) is not int or not 1 <= self.dp_attention <= 1 << 16:
            raise InvalidInputError("dp_attention", f"must be a DP size of 1 or more, got {self.dp_attention!r}")
        if self.block_size is not None and not 1 <= self.block_size <= 1 << 16:
            raise InvalidInputError("block_size", f"page size must be between 1 and 65536, got {self.block_size}")
        models = self.hybrid_swa_models
        if isinstance(models, list):
            object.__setattr__(self, "hybrid_swa_models", models := tuple(models))
        if not isinstance(models, tuple) or not all(isinstance(m, str) for m in models):
            raise InvalidInputError("hybrid_swa_models", f"expected a list of model types, got {models!r}"[:200])
        if self.max_mamba_cache_size is not None and not 1 <= self.max_mamba_cache_size <= 1 << 24:
            raise InvalidInputError("max_mamba_cache_size", f"must be between 1 and 16777216, got "
                                                            f"{self.max_mamba_cache_size}")
        for name in ("swa_full_tokens_ratio", "mamba_full_memory_ratio"):
            value = getattr(self, name)
            if not 0 < value <= 100:
                raise InvalidInputError(name, f"must be a positive ratio, got {value}")


def _attention(req: Request, opts: Options) -> Request:
    """The request as the attention layers see it: with DP attention they run at TP size tp / dp."""
    if req.tp % opts.dp_attention:
        raise InvalidInputError("dp_attention", f"DP size {opts.dp_attention} must divide tp {req.tp}")
    return replace(req, tp=req.tp // opts.dp_attention) if opts.dp_attention > 1 else req


def _page(opts: Options, arch: ModelArch | None = None) -> int:
    if opts.block_size:
        return opts.block_size
    # "Setting page size to 64 for DeepSeek DSA" (server_args): the NSA indexer kernels page by 64.
    return 64 if arch is not None and _dsa(arch) else 1


def _dsa(arch: ModelArch) -> bool:
    # over the distinct layer shapes (cached per model), not every layer: a sweep asks this per call
    return any(isinstance(s, MLA) and s.index_head_dim for s, _ in grouped_stages(arch, 1)[0])


def _indexer(spec) -> int:
    """Bytes per token of the NSA pool's index_k_with_scale buffer in this layer (0 without DSA)."""
    return spec.indexer_fp8_bytes if isinstance(spec, MLA) and spec.index_head_dim else 0


def _hybrid_swa(arch: ModelArch, opts: Options) -> bool:
    if opts.hybrid_swa_memory is not None:
        return opts.hybrid_swa_memory
    return arch.model_type in opts.hybrid_swa_models


def _per_token(spec, req: Request) -> tuple[int, int]:
    """(K, V) bytes per token of one attention layer on one rank; MLA latent is all K."""
    dt = req.dtype
    if isinstance(spec, MLA):
        if spec.index_head_dim and req.kv_dtype.startswith("fp8"):
            return spec.latent_fp8_ds_bytes, 0  # NSATokenToKVPool fp8: 512 fp8 + 4 fp32 scales + 64 bf16
        return dt.row_bytes(spec.latent_dim), 0
    heads = kv_heads_per_rank(spec.num_kv_heads, req.tp)
    return heads * dt.row_bytes(spec.head_dim), heads * dt.row_bytes(spec.head_dim_v)


def _state_bytes(spec: RecurrentState, req: Request, opts: Options, model_dtype: str) -> int:
    conv, ssm = mamba_state_elems(spec, req.tp, spec.conv_kernel - 1)
    conv_b = 2 if model_dtype == "fp32" else get_dtype(model_dtype).block_bytes
    return conv * conv_b + ssm * get_dtype(spec.ssm_dtype or opts.mamba_ssm_dtype).block_bytes


def _window_kind(spec, hybrid: bool) -> tuple[int | None, str]:
    """(window or None, breakdown kind): window layers keep their window only in the hybrid SWA pool."""
    if hybrid and isinstance(spec, SlidingWindow):
        return spec.window, spec.kind
    if hybrid and isinstance(spec, ChunkedLocal):
        return spec.chunk, spec.kind
    return None, "mla" if isinstance(spec, MLA) else "full"


def _tokens_fn(window: int | None, page: int) -> Callable[[list[int]], list[int]]:
    """Tokens a sequence holds in one layer's pool: min(context, window), in whole pages, for a list of
    context lengths at once (cdiv and min inlined: a sweep evaluates this 10^5 times)."""
    if window is not None:
        return lambda lens: [-(-(n if n < window else window) // page) * page for n in lens]
    return lambda lens: [-(-n // page) * page for n in lens]


def _pool(arch: ModelArch, req: Request, opts: Options) -> tuple[list[list[tuple]], Callable, dict]:
    """The pool parts of every stage (see `common.pool_kv_cache`), the tokens rule of a window, and the
    context-free fields; validates the request. kv_cache sizes these parts at one context, sweep_plan
    turns them into arithmetic for many."""
    check_tp(arch, req.tp)
    attn = _attention(req, opts)
    page = _page(opts, arch)
    hybrid = _hybrid_swa(arch, opts)
    stages = []
    for stage in grouped_stages(arch, req.pp):
        parts: list[tuple] = []
        stages.append(parts)
        for spec, n in stage:
            if isinstance(spec, RecurrentState):
                parts.append(("state", n, STATE, _state_bytes(spec, attn, opts, arch.dtype), 0, False))
                continue
            if not isinstance(spec, (FullAttention, MLA)):  # pragma: no cover - the parser makes no other kind
                raise UnsupportedConfigError("layers", f"the SGLang profile cannot size {type(spec).__name__}")
            window, kind = _window_kind(spec, hybrid)
            k_tok, v_tok = _per_token(spec, attn)
            parts.append((kind, n, window, k_tok, v_tok, not isinstance(spec, MLA)))
            if _indexer(spec):
                parts.append(("indexer", n, window, _indexer(spec), 0, False))
    notes = []
    if _dsa(arch) and opts.indexer_in_budget:
        notes.append(f"DSA: NSA pool with page size {page}; each MLA layer also keeps a {_indexer_bytes(arch)} B "
                     "indexer key per token (fp8 + fp32 scale), counted in the budget since sglang PR #11309")
    elif _dsa(arch):
        notes.append(f"DSA: NSA pool with page size {page}; the {_indexer_bytes(arch)} B indexer key per token and "
                     "layer is allocated beside the pool but left out of the token budget and of the logged "
                     "'KV size' (SGLang before 0.5.4, PR #11309): the 'indexer' row is memory the budget did not count")
    if arch.windowed:
        notes.append("hybrid SWA pool: window layers keep only the window" if hybrid else
                     "hybrid SWA memory disabled for this model: window layers are cached at full length")
    if opts.dp_attention > 1:
        notes.append(f"DP attention: attention TP size {attn.tp} (tp {req.tp} / dp {opts.dp_attention})")
    per_token = sum(_cell(stage, attn, hybrid)[0] for stage in grouped_stages(arch, 1))
    return stages, lambda window: _tokens_fn(window, page), {"block_size": page, "bytes_per_token": per_token,
                                                              "notes": notes}


def kv_cache(arch: ModelArch, req: Request, opts: Options) -> KVEstimate:
    stages, tokens_fn, fields = _pool(arch, req, opts)
    return pool_kv_cache(NAME, arch, req, stages, tokens_fn, **fields)


def sweep_plan(arch: ModelArch, req: Request, opts: Options):
    """kv_cache as arithmetic in the context (see kvplan.engines.sweep): the same pool parts, one unit
    per distinct window (the tokens a sequence holds in that pool)."""
    from kvplan.engines.sweep import pool_plan

    stages, tokens_fn, fields = _pool(arch, req, opts)
    return pool_plan(NAME, arch, req, stages, tokens_fn, **fields)


def _cell(groups, req: Request, hybrid: bool, indexer: bool = True) -> tuple[int, int]:
    """(full-pool, swa-pool) bytes per token over the attention layers of one rank; `indexer` False
    leaves the DSA indexer key out, as SGLang's budget did before 0.5.4."""
    full = swa = 0
    for spec, n in groups:
        if isinstance(spec, RecurrentState):
            continue
        k, v = _per_token(spec, req)
        if hybrid and isinstance(spec, (SlidingWindow, ChunkedLocal)):
            swa += (k + v) * n
        else:
            full += (k + v + (_indexer(spec) if indexer else 0)) * n
    return full, swa


def _mamba_by_ratio(states, opts: Options) -> bool:
    """Whether this release sizes the Mamba pool by mamba_full_memory_ratio (else by request slots):
    GDN hybrids from 0.5.4, Mamba2 hybrids from 0.5.7 (they ran without a radix cache before)."""
    gdn = any(s.mixer == "gdn" for s, _ in states)
    return opts.mamba_pool_ratio_gdn if gdn else opts.mamba_pool_ratio_mamba2


def _indexer_bytes(arch: ModelArch) -> int:
    return max((_indexer(s) for s, _ in grouped_stages(arch, 1)[0]), default=0)


def capacity(arch: ModelArch, req: Request, opts: Options, kv_memory_bytes: int) -> Capacity:
    """`max_total_num_tokens` for a per-GPU budget (what remains of mem_fraction_static after the
    weights), floored to the page size; the Mamba pool takes r/(1+r) of it on hybrid models."""
    check_tp(arch, req.tp)
    attn = _attention(req, opts)
    page = _page(opts, arch)
    hybrid = _hybrid_swa(arch, opts)
    per_seq_tokens = cdiv(req.context_len, page) * page
    best = None
    ratio_mode = True
    for stage in grouped_stages(arch, req.pp):
        full, swa = _cell(stage, attn, hybrid, opts.indexer_in_budget)
        states = [(s, n) for s, n in stage if isinstance(s, RecurrentState)]
        budget, mamba_slots = kv_memory_bytes, None
        if states:
            per_req = sum(_state_bytes(s, attn, opts, arch.dtype) * n for s, n in states)
            ratio_mode = _mamba_by_ratio(states, opts) and opts.max_mamba_cache_size is None
            if ratio_mode:
                r = opts.mamba_full_memory_ratio
                mamba_slots = int(kv_memory_bytes * r / (1 + r)) // per_req
            else:  # --max-mamba-cache-size, or max_running_requests / 512 slots, split over DP ranks
                mamba_slots = (opts.max_mamba_cache_size or 512) // opts.dp_attention
            budget = max(0, kv_memory_bytes - mamba_slots * per_req)  # SGLang: "Not enough memory"
        ratio = opts.swa_full_tokens_ratio
        tokens = int(budget // (full + ratio * swa)) if swa else (budget // full if full else 0)
        tokens = tokens // page * page
        seqs = tokens / per_seq_tokens if full else float("inf")
        if swa:
            window = max(getattr(s, "window", 0) or getattr(s, "chunk", 0) for s, _ in stage
                         if isinstance(s, (SlidingWindow, ChunkedLocal)))
            swa_tokens = int(tokens * ratio) // page * page
            seqs = min(seqs, swa_tokens / (cdiv(min(req.context_len, window), page) * page))
        if mamba_slots is not None:
            seqs = min(seqs, mamba_slots)
        if best is None or seqs < best[1]:
            best = (tokens, seqs, mamba_slots)
    tokens, seqs, mamba_slots = best
    notes = [f"pool rows allocated: {tokens + page:,} (one padded page for dummy writes)"]
    if mamba_slots is not None and not tokens:
        notes.append(f"the {mamba_slots:,} Mamba request slots take the whole budget: SGLang stops with 'Not enough "
                     "memory'; lower max_mamba_cache_size (or max_running_requests)")
    if mamba_slots is not None:
        notes.append(f"Mamba pool: {mamba_slots:,} request slots ({opts.mamba_full_memory_ratio} : 1 of "
                     "the budget)" if ratio_mode else f"Mamba pool: {mamba_slots:,} request slots "
                     "(--max-mamba-cache-size, else max_running_requests or 512; radix cache off)")
    seqs = 0.0 if seqs == float("inf") else seqs
    return Capacity(
        model=arch.model_id, engine=NAME, kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp,
        kv_memory_bytes=kv_memory_bytes, max_model_len=req.context_len, block_size=page,
        num_blocks=tokens // page, bytes_per_block=None, blocks_per_request=per_seq_tokens // page,
        kv_tokens=tokens, max_concurrency=seqs, max_sequences=int(seqs), notes=tuple(notes),
    )
