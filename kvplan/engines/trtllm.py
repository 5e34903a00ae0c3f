"""TensorRT-LLM (PyTorch backend / LLM API) paged KV cache, per ENGINE_KV_SPEC.md §E.

`tokens_per_block` = 32; per token per layer `kv_factor · heads_per_rank · head_dim · bytes` with
kv_factor 1 for the MLA latent (replicated on every rank) and 2 otherwise. Sliding-window layers keep
`min(context, window)` tokens in their own pool; the exact VSWA pool split is not verified, and the
Mamba-hybrid state size is an estimate (model-dtype conv and SSM states).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kvplan.dtypes import get_dtype
from kvplan.engines.common import (
    STATE, Capacity, KVEstimate, Request, cdiv, check_tp, grouped_stages, kv_heads_per_rank, mamba_state_elems,
    pool_kv_cache,
)
from kvplan.errors import InvalidInputError, UnsupportedConfigError
from kvplan.layers import MLA, FullAttention, ModelArch, RecurrentState, SlidingWindow
from kvplan.versions import VersionTable

NAME = "trtllm"
KV_DTYPES = ("bf16", "fp16", "fp32", "fp8", "fp8_e4m3", "int8", "nvfp4")
TOKENS_PER_BLOCK = 32  # llmapi KvCacheConfig default (the TRT-engine plugin default is 64)
# TRT-LLM 1.1 sizes every layer at max_seq_len unless KvCacheConfig.max_attention_window is given
# (gpt-oss-120b on 1.1.0rc3 logs "kv size is 73728" bytes per token = all 36 layers, and reduces
# max_attention_window_vec to the tokens that fit). No later release is modelled.
VERSIONS = VersionTable("trtllm", oldest="0.12.0", latest="1.1.0", scheme="semver")


@dataclass(frozen=True)
class Options:
    """TRT-LLM knobs that change the bytes."""

    num_speculative_tokens: int = 0
    """Tokens proposed per step by speculative decoding (`--speculative` / `--draft-model` add the draft's
    layers). Accepted so one command line works on every engine: here the pool changes only by the
    draft's layers (SGLang's per-draft-token Mamba states for hybrid models are not modelled)."""
    block_size: int | None = None
    """tokens_per_block; None = 32."""
    max_attention_window: bool = False
    """True = KvCacheConfig.max_attention_window lists each layer's window (e.g. [128, 131072] for
    gpt-oss): sliding layers then keep min(context, window) tokens in their own pool. False (the 1.1
    default): every layer is sized at the full context, as the 1.1 log's per-token KV size shows."""

    def __post_init__(self):
        if type(self.num_speculative_tokens) is not int or not 0 <= self.num_speculative_tokens <= 64:
            raise InvalidInputError("num_speculative_tokens", f"must be between 0 and 64, got "
                                                              f"{self.num_speculative_tokens!r}")
        if self.block_size is not None and not 1 <= self.block_size <= 1 << 16:
            raise InvalidInputError("block_size", f"must be between 1 and 65536, got {self.block_size}")


def _tok_bytes(spec, req: Request) -> tuple[int, int]:
    dt = req.dtype
    if isinstance(spec, MLA):
        return dt.row_bytes(spec.latent_dim), 0
    heads = kv_heads_per_rank(spec.num_kv_heads, req.tp)
    return heads * dt.row_bytes(spec.head_dim), heads * dt.row_bytes(spec.head_dim_v)


def _window(spec, opts: Options) -> int:
    """The tokens a layer keeps at most (0 = all): its window, only when max_attention_window is set."""
    if not opts.max_attention_window:
        return 0
    return spec.window if isinstance(spec, SlidingWindow) else getattr(spec, "chunk", 0)


def _tokens_fn(window: int, block: int) -> Callable[[list[int]], list[int]]:
    """Tokens a sequence holds in one layer: min(context, window) (0 = no window), in whole blocks,
    for a list of context lengths at once (cdiv and min inlined: a sweep evaluates this 10^5 times)."""
    if window:
        return lambda lens: [-(-(n if n < window else window) // block) * block for n in lens]
    return lambda lens: [-(-n // block) * block for n in lens]


def _state_bytes(spec: RecurrentState, arch: ModelArch, req: Request) -> int:
    conv, ssm = mamba_state_elems(spec, req.tp, spec.conv_kernel - 1)
    return (conv + ssm) * get_dtype("bf16" if arch.dtype == "fp32" else arch.dtype).block_bytes


def _pool(arch: ModelArch, req: Request, opts: Options) -> tuple[list[list[tuple]], Callable, dict]:
    """The pool parts of every stage (see `common.pool_kv_cache`), the tokens rule of a window, and the
    context-free fields; validates the request. kv_cache sizes these parts at one context, sweep_plan
    turns them into arithmetic for many."""
    check_tp(arch, req.tp)
    block = opts.block_size or TOKENS_PER_BLOCK
    stages = []
    for stage in grouped_stages(arch, req.pp):
        parts: list[tuple] = []
        stages.append(parts)
        for spec, n in stage:
            if isinstance(spec, RecurrentState):
                parts.append(("state", n, STATE, _state_bytes(spec, arch, req), 0, False))
                continue
            if not isinstance(spec, (FullAttention, MLA)):  # pragma: no cover - the parser makes no other kind
                raise UnsupportedConfigError("layers", f"the TRT-LLM profile cannot size {type(spec).__name__}")
            window = _window(spec, opts)
            k_tok, v_tok = _tok_bytes(spec, req)
            mla = isinstance(spec, MLA)
            parts.append((spec.kind, n, window, k_tok, v_tok, not mla))
            if mla and spec.index_head_dim:
                # DSA indexer K cache (attention_backend/sparse/dsa.py): fp8 keys + an fp32 scale per 128
                parts.append(("indexer", n, window, spec.indexer_fp8_bytes, 0, False))
    notes = []
    if arch.windowed and opts.max_attention_window:
        notes.append("VSWA: per-window pools; TRT-LLM's split of memory between pools is not verified")
    elif arch.windowed:
        notes.append("sliding layers sized at the full context: TRT-LLM saves nothing on them unless "
                     "max_attention_window is set (--set max_attention_window=true)")
    if "state" in arch.kinds:
        notes.append("Mamba state sized in the model dtype: TRT-LLM's state cache is not byte-verified")
    return stages, lambda window: _tokens_fn(window, block), {
        "block_size": block, "bytes_per_token": _per_token(grouped_stages(arch, 1)[0], req), "notes": notes}


def kv_cache(arch: ModelArch, req: Request, opts: Options) -> KVEstimate:
    stages, tokens_fn, fields = _pool(arch, req, opts)
    return pool_kv_cache(NAME, arch, req, stages, tokens_fn, **fields)


def sweep_plan(arch: ModelArch, req: Request, opts: Options):
    """kv_cache as arithmetic in the context (see kvplan.engines.sweep): the same pool parts, one unit
    per distinct window (the tokens a sequence holds in those layers)."""
    from kvplan.engines.sweep import pool_plan

    stages, tokens_fn, fields = _pool(arch, req, opts)
    return pool_plan(NAME, arch, req, stages, tokens_fn, **fields)


def _per_token(groups, req: Request) -> int:
    return sum((sum(_tok_bytes(s, req)) + (s.indexer_fp8_bytes if isinstance(s, MLA) else 0)) * n
               for s, n in groups if not isinstance(s, RecurrentState))


def capacity(arch: ModelArch, req: Request, opts: Options, kv_memory_bytes: int) -> Capacity:
    """`max_tokens = budget // kv_size_per_token` (get_cache_size_per_token), in whole blocks."""
    check_tp(arch, req.tp)
    block = opts.block_size or TOKENS_PER_BLOCK
    per_token = max(_per_token(stage, req) for stage in grouped_stages(arch, req.pp))
    max_tokens = kv_memory_bytes // per_token if per_token else 0
    num_blocks = max_tokens // block
    per_req = cdiv(req.context_len, block)
    return Capacity(
        model=arch.model_id, engine=NAME, kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp,
        kv_memory_bytes=kv_memory_bytes, max_model_len=req.context_len, block_size=block,
        num_blocks=num_blocks, bytes_per_block=per_token * block, blocks_per_request=per_req,
        kv_tokens=max_tokens, max_concurrency=num_blocks / per_req, max_sequences=num_blocks // per_req,
        notes=("max_tokens counts every layer at full length (VSWA pools not modelled here)",)
        if arch.windowed else (),
    )
