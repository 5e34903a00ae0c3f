"""Hugging Face transformers `DynamicCache`, per ENGINE_KV_SPEC.md §D.

Tensors grow with the tokens seen (no blocks, no preallocation): K/V `[B, Hkv, T, D]` per full layer;
sliding (and Llama 4 chunked) layers keep the last `window − 1` tokens after an update; MLA models
cache the latent `[B, 1, T, kv_lora_rank]` and RoPE key `[B, 1, T, rope]` (transformers 5.x; 4.56/4.57
cached every head decompressed: option `mla_cache="decompressed"`); recurrent layers hold conv states
over the full kernel width and SSM states (GDN, Mamba1 and Mamba2 states in fp32).
Single device only: this is what `model.generate` on one GPU holds after prefill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kvplan.dtypes import get_dtype
from kvplan.engines.common import (
    Capacity, KindBytes, KVEstimate, Request, grouped_stages, mamba_state_elems,
)
from kvplan.errors import InvalidInputError
from kvplan.layers import MLA, ChunkedLocal, FullAttention, ModelArch, RecurrentState, SlidingWindow

NAME = "transformers"
VERSIONS = None  # DynamicCache as transformers 5.x (>= 5.23, what validate needs) holds it; no version rule yet
KV_DTYPES = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Options:
    """DynamicCache knobs that change its size (QuantizedCache is not modelled)."""

    mla_cache: Literal["decompressed", "latent"] = "latent"
    """How DeepSeek-style MLA layers are cached. Current transformers 5.x (measured on 5.23.0:
    `DeepseekV3Attention.expand_kv`) stores the latent (`kv_lora_rank`) as "keys" and the shared RoPE
    key (`qk_rope_head_dim`) as "values"; 4.56/4.57 stored every head's decompressed K and V."""

    def __post_init__(self):
        if self.mla_cache not in ("decompressed", "latent"):
            raise InvalidInputError("mla_cache", "choose decompressed or latent")


def _tokens(spec, num_tokens: int) -> int:
    return _tokens_fn(spec)([num_tokens])[0]


def _tokens_fn(spec) -> Callable[[list[int]], list[int]]:
    """Tokens one layer keeps after a prefill of `num_tokens`, for a list of lengths at once."""
    if isinstance(spec, SlidingWindow):
        keep = spec.window - 1
        return lambda lens: [n if n < keep else keep for n in lens]
    if isinstance(spec, ChunkedLocal):
        # DynamicCache builds chunked layers as sliding layers of window attention_chunk_size (measured on
        # transformers 5.23 by tests/test_validate.py: a 40-token prefill with chunk 16 keeps 15 tokens).
        keep = spec.chunk - 1
        return lambda lens: [n if n < keep else keep for n in lens]
    return list


def layer_tensors(arch: ModelArch, spec, num_tokens: int, batch: int, kv_dtype: str,
                  *, mla_cache: str = "latent") -> dict[str, int]:
    """Bytes of each tensor DynamicCache holds for one layer, by name ("keys", "conv_states", ...).

    The validate mode compares these with the tensors a real cache holds.
    """
    per_token, fixed = _tensor_coefs(spec, batch, kv_dtype, mla_cache)
    if per_token:
        t = _tokens(spec, num_tokens)
        return {name: c * t for name, c in per_token.items()}
    return fixed


def _tensor_coefs(spec, batch: int, kv_dtype: str, mla_cache: str) -> tuple[dict[str, int], dict[str, int]]:
    """(bytes per kept token, fixed bytes) of each tensor DynamicCache holds for one layer."""
    b = get_dtype(kv_dtype).block_bytes
    if isinstance(spec, FullAttention):
        return {"keys": batch * spec.num_kv_heads * spec.head_dim * b,
                "values": batch * spec.num_kv_heads * spec.head_dim_v * b}, {}
    if isinstance(spec, MLA):
        if mla_cache == "latent":  # [B, 1, T, kv_lora_rank], [B, 1, T, rope]
            out = {"keys": batch * spec.kv_lora_rank * b, "values": batch * spec.rope_dim * b}
        else:
            out = {"keys": batch * spec.num_heads * (spec.qk_nope_head_dim + spec.rope_dim) * b,
                   "values": batch * spec.num_heads * spec.v_head_dim * b}
        if spec.index_head_dim:  # DynamicIndexedLayer: DSA indexer keys [B, T, index_head_dim], model dtype
            out["indexer_keys"] = batch * spec.index_head_dim * b
        return out, {}
    if isinstance(spec, RecurrentState):
        conv, ssm = mamba_state_elems(spec, 1, spec.conv_kernel)
        # NOTE: Qwen3-Next / Qwen3.5 GDN recurrent states come out of the chunked kernels in fp32, and so
        # do Mamba1 ones (Mamba, FalconMamba): the selective scan (torch fallback and mamba_ssm kernel)
        # accumulates in fp32 and the cache keeps that dtype (measured by `kvplan validate`). Mamba2
        # (Nemotron-H, Bamba, Granite-4.0-H, Falcon-H1, Zamba2) too in transformers 5.x: the cache layer
        # is created lazily as `zeros_like` of the chunk scan's final state, which `mamba2_chunk_scan`
        # computes in fp32 (`hidden_states.float()`), whatever `mamba_ssm_cache_dtype` says (measured on
        # a reduced Nemotron-H-56B with transformers 5.24: 16,777,216 B per layer, not 8,388,608).
        ssm_b = 4 if spec.mixer in ("gdn", "mamba1", "mamba2") else \
            get_dtype(spec.ssm_dtype).block_bytes if spec.ssm_dtype else b
        return {}, {"conv_states": batch * conv * b, "ssm_states": batch * ssm * ssm_b}
    return {}, {}


def _check(req: Request) -> None:
    if req.tp > 1 or req.pp > 1:
        raise InvalidInputError("tp" if req.tp > 1 else "pp",
                                "the transformers profile sizes a single-device DynamicCache; use tp=1 pp=1")


def _fixed(arch: ModelArch, req: Request, opts: Options) -> tuple[int, list[str]]:
    """(bytes_per_token, notes): the KVEstimate fields that do not depend on the context."""
    per_token = sum(sum(layer_tensors(arch, s, 1, 1, req.kv_dtype, mla_cache=opts.mla_cache).values()) * n
                    for s, n in grouped_stages(arch, 1)[0] if isinstance(s, MLA) or type(s) is FullAttention)
    notes = []
    if "mla" in arch.kinds:
        notes.append("MLA is cached decompressed: every head's K and V, not the latent"
                     if opts.mla_cache == "decompressed" else
                     "MLA is cached as the latent plus the shared RoPE key (newer transformers 5.x)")
    return per_token, notes


def kv_cache(arch: ModelArch, req: Request, opts: Options) -> KVEstimate:
    _check(req)
    rows: dict[str, list[int]] = {}
    for spec, n in grouped_stages(arch, 1)[0]:
        tensors = layer_tensors(arch, spec, req.context_len, req.batch, req.kv_dtype, mla_cache=opts.mla_cache)
        kind = spec.kind
        tokens = 0 if kind == "state" else (_tokens(spec, req.context_len))
        r = rows.setdefault(kind, [0, tokens, 0, 0, 0])
        r[0] += n
        r[2] += sum(tensors.values()) * n
        r[3] += tensors.get("keys", 0) * n
        r[4] += tensors.get("values", 0) * n
    breakdown = []
    for kind, (n, tokens, nbytes, k, v) in rows.items():
        if kind == "state":
            breakdown.append(KindBytes(kind, n, 0, nbytes))
        else:  # MLA is decompressed here, so K and V are separate tensors again
            breakdown.append(KindBytes(kind, n, tokens, nbytes, k, v))
    ks = [r.k_bytes for r in breakdown if r.k_bytes is not None]
    vs = [r.v_bytes for r in breakdown if r.v_bytes is not None]
    per_token, notes = _fixed(arch, req, opts)
    return KVEstimate(
        model=arch.model_id, engine=NAME, context_len=req.context_len, batch=req.batch,
        kv_dtype=req.kv_dtype, tp=1, pp=1, kv_bytes=sum(r.bytes for r in breakdown),
        k_bytes=sum(ks) if ks else None, v_bytes=sum(vs) if vs else None,
        state_bytes=sum(r.bytes for r in breakdown if r.kind == "state"), bytes_per_token=per_token,
        total_bytes=sum(r.bytes for r in breakdown), block_size=None, breakdown=tuple(breakdown),
        notes=tuple(notes),
    )


def capacity(arch: ModelArch, req: Request, opts: Options, kv_memory_bytes: int) -> Capacity:
    """How many sequences of `context_len` tokens fit in `kv_memory_bytes` (HF has no pool)."""
    one = kv_cache(arch, Request(req.context_len, 1, req.kv_dtype), opts).kv_bytes
    seqs = kv_memory_bytes // one if one else 0
    per_token = kv_cache(arch, Request(1, 1, req.kv_dtype), opts).bytes_per_token
    return Capacity(
        model=arch.model_id, engine=NAME, kv_dtype=req.kv_dtype, tp=1, pp=1,
        kv_memory_bytes=kv_memory_bytes, max_model_len=req.context_len, block_size=None, num_blocks=None,
        bytes_per_block=None, blocks_per_request=None,
        kv_tokens=kv_memory_bytes // per_token if per_token else 0,
        max_concurrency=kv_memory_bytes / one if one else 0.0, max_sequences=seqs,
    )


def sweep_plan(arch: ModelArch, req: Request, opts: Options):
    """kv_cache as arithmetic in the context (see kvplan.engines.sweep): one unit per distinct window, the
    tokens a layer keeps; None for a layer kind this does not know."""
    from kvplan.engines.sweep import SweepPlan, estimate_fields, merge_row, sweep_stage

    _check(req)
    units: list = []
    index: dict[tuple, int] = {}
    rows: dict[str, list] = {}
    for spec, n in grouped_stages(arch, 1)[0]:
        per_token, fixed = _tensor_coefs(spec, req.batch, req.kv_dtype, opts.mla_cache)
        if isinstance(spec, RecurrentState):
            merge_row(rows, "state", n, (), ((0, sum(fixed.values()) * n),), None, None)
            continue
        if not isinstance(spec, (FullAttention, MLA)):
            return None
        key = (type(spec), getattr(spec, "window", 0), getattr(spec, "chunk", 0))
        if key not in index:
            units.append(_tokens_fn(spec))
            index[key] = len(units)
        i = index[key]
        merge_row(rows, spec.kind, n, ((i, 1),), ((i, sum(per_token.values()) * n),),
                  ((i, per_token.get("keys", 0) * n),), ((i, per_token.get("values", 0) * n),))
    per_token, notes = _fixed(arch, req, opts)
    return SweepPlan(tuple(units), (sweep_stage(rows),),
                     estimate_fields(arch, NAME, req, bytes_per_token=per_token, block_size=None, notes=notes))
