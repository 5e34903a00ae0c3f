"""The textbook formula `2 · L · Hkv · D · b · T · B`, kept to show how far off it is.

It reads the config's raw numbers (every layer, `num_key_value_heads`, `head_dim` or hidden/heads)
and knows nothing of sliding windows, MLA latents, recurrent state, blocks or head replication.
Under TP/PP it divides evenly by the GPU count, as back-of-envelope calculators do.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvplan.dtypes import DTYPES
from kvplan.engines.common import Capacity, KindBytes, KVEstimate, Request, cdiv
from kvplan.layers import ModelArch

NAME = "naive"
VERSIONS = None  # a textbook formula, not an engine release
KV_DTYPES = tuple(DTYPES)


@dataclass(frozen=True)
class Options:
    """The naive formula has no knobs."""


def _per_token(arch: ModelArch, req: Request) -> int:
    dt = req.dtype
    return 2 * arch.num_layers * dt.row_bytes(arch.naive_num_kv_heads * arch.naive_head_dim)


def _notes(per_token: int) -> tuple[str, ...]:
    notes = ("textbook 2·L·H·D·b: ignores windows, MLA, state layers, blocks and KV-head replication",)
    if not per_token:
        notes += ("the config has no attention heads, so the textbook formula gives 0",)
    return notes


def kv_cache(arch: ModelArch, req: Request, opts: Options) -> KVEstimate:
    per_token = _per_token(arch, req)
    total = per_token * req.context_len * req.batch
    per_gpu = cdiv(total, req.tp * req.pp)
    notes = _notes(per_token)
    half = per_gpu // 2
    return KVEstimate(
        model=arch.model_id, engine=NAME, context_len=req.context_len, batch=req.batch,
        kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp, kv_bytes=per_gpu, k_bytes=half,
        v_bytes=per_gpu - half, state_bytes=0, bytes_per_token=cdiv(per_token, req.tp * req.pp),
        total_bytes=total, block_size=None,
        breakdown=(KindBytes("full", arch.num_layers, req.context_len, per_gpu, half, per_gpu - half),),
        notes=notes,
    )


def capacity(arch: ModelArch, req: Request, opts: Options, kv_memory_bytes: int) -> Capacity:
    per_token = cdiv(_per_token(arch, req), req.tp * req.pp)
    tokens = kv_memory_bytes // per_token if per_token else 0
    return Capacity(
        model=arch.model_id, engine=NAME, kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp,
        kv_memory_bytes=kv_memory_bytes, max_model_len=req.context_len, block_size=None, num_blocks=None,
        bytes_per_block=None, blocks_per_request=None, kv_tokens=tokens,
        max_concurrency=tokens / req.context_len, max_sequences=tokens // req.context_len,
        notes=("textbook formula",),
    )


def sweep_plan(arch: ModelArch, req: Request, opts: Options):
    """kv_cache as arithmetic in the context (see kvplan.engines.sweep): per-GPU bytes, its K half, tokens."""
    from kvplan.engines.sweep import SweepPlan, SweepRow, SweepStage, estimate_fields

    per_token, gpus = _per_token(arch, req), req.tp * req.pp
    scale = per_token * req.batch
    fixed = estimate_fields(arch, NAME, req, bytes_per_token=cdiv(per_token, gpus), block_size=None,
                            notes=_notes(per_token))
    if gpus == 1:  # per_token = 2·L·row is even: every field is a multiple of the context (K and V halves)
        row = SweepRow("full", arch.num_layers, ((1, 1),), ((1, scale),), ((1, scale // 2),), ((1, scale // 2),))
        return SweepPlan((list,), (SweepStage((row,)),), fixed)
    units = (lambda lens: [-(-scale * n // gpus) for n in lens],
             lambda lens: [-(-scale * n // gpus) // 2 for n in lens], list)
    row = SweepRow("full", arch.num_layers, ((3, 1),), ((1, 1),), ((2, 1),), ((1, 1), (2, -1)))
    return SweepPlan(units, (SweepStage((row,)),), fixed, total=((3, scale),))
