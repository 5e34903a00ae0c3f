"""Sweeps: one layout, many contexts (issue 16).

Between block and window boundaries every byte count is linear in a few integer "units" of the
context (blocks, cells, cached tokens), so an engine describes one (model, batch, dtype, layout,
options) once as rows of coefficients on its units (its `sweep_plan`), and `evaluate_sweep` computes
that arithmetic per context instead of re-running the layout code. The unit functions are the engines'
own per-context rules (kv_cache calls the same ones), and tests/test_sweep.py checks every bundled
model × engine against kv_cache, context by context, to the byte. Imported only by sweeps: `kvplan
size` never loads it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from kvplan.engines.common import KindBytes, KVEstimate

Terms = tuple[tuple[int, int], ...]
"""sum(units[i] * coefficient for i, coefficient in terms); units[0] is the constant 1."""


@dataclass(frozen=True)
class SweepRow:
    """One breakdown row (a KindBytes) as terms in the units; the whole batch on one GPU."""

    kind: str
    num_layers: int
    tokens: Terms  # tokens_per_seq = the largest of units[i] * coefficient (0 when empty)
    bytes: Terms
    k: Terms | None = None  # None where K and V are not separate (MLA latent, state, padding)
    v: Terms | None = None


@dataclass(frozen=True)
class SweepStage:
    """The rows of one pipeline stage, and the KVEstimate fields it fixes when it is the most loaded
    (vLLM's block size, per-token bytes and notes come from that stage's layout)."""

    rows: tuple[SweepRow, ...]
    fixed: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class SweepPlan:
    """An engine's KVEstimate for every context of one request shape.

    `units` map a list of context lengths to counts (index 0 is reserved for the constant 1); `fixed` holds
    the fields that do not depend on the context (taken from the engine's own kv_cache at the first
    context); `notes`, when given, maps (contexts, unit columns) to each context's notes (llama.cpp
    names its cell counts). total_bytes = the stages' bytes summed × tp, or `total` terms when given (naive).
    """

    units: tuple[Callable[[list[int]], list[int]], ...]
    stages: tuple[SweepStage, ...]
    fixed: dict[str, Any]
    total: Terms | None = None
    notes: Callable[[list[int], list], list[tuple[str, ...]]] | None = None


def merge_row(rows: dict[str, list], kind: str, num_layers: int, tokens: Terms, bytes_: Terms,
              k: Terms | None, v: Terms | None) -> None:
    """Add a part to the row of `kind` the way sglang/trtllm/llama.cpp fold layers into one row: the
    first part fixes tokens_per_seq and whether K/V are separate; layers and bytes add up."""
    r = rows.get(kind)
    if r is None:
        rows[kind] = [num_layers, tokens, bytes_, k, v]
        return
    r[0] += num_layers
    r[2] += bytes_
    if r[3] is not None:
        r[3] += k or ()
        r[4] += v or ()


def sweep_stage(rows: dict[str, list], **fixed: Any) -> SweepStage:
    return SweepStage(tuple(SweepRow(kind, *vals) for kind, vals in rows.items()), tuple(fixed.items()))


def _column(terms: Terms | None, cols: list, n: int, combine=None) -> list | None:
    """One field's value at every context: the terms summed (or combined: max for tokens_per_seq)."""
    if terms is None:
        return None
    out = None
    for i, c in terms:
        col = [c] * n if i == 0 else cols[i] if c == 1 else [x * c for x in cols[i]]
        out = col if out is None else list(map(combine or int.__add__, out, col))
    return [0] * n if out is None else out


def _versioned_fixed(fixed: dict[str, Any], engine_version: str, version_notes: tuple[str, ...]) -> dict[str, Any]:
    fixed["engine_version"] = engine_version
    fixed["notes"] = tuple(fixed["notes"]) + version_notes
    return fixed


def _kind_bytes(kind: str, num_layers: int, tokens: int, nbytes: int, k: int | None, v: int | None) -> KindBytes:
    kb = object.__new__(KindBytes)
    object.__setattr__(kb, "__dict__", {"kind": kind, "num_layers": num_layers, "tokens_per_seq": tokens,
                                        "bytes": nbytes, "k_bytes": k, "v_bytes": v})
    return kb


def evaluate_sweep(plan: SweepPlan, contexts: list[int], *, engine_version: str = "",
                   version_notes: tuple[str, ...] = ()) -> list[KVEstimate]:
    """The KVEstimate at each context, from the plan's coefficients (no layout code per context), with
    `engine_version` and its `version_notes` applied as `api._versioned` applies them.

    Work goes column by column (one list per unit, then per field over all contexts), and results are
    built without the dataclass __init__ (its frozen-field assignments cost more than the arithmetic);
    they are equal, field for field, to what kv_cache returns.
    """
    # The results are acyclic and about to be returned: the cyclic collector has nothing to find in
    # them, yet a sweep's few hundred thousand allocations would trigger it repeatedly (~20 % of the
    # time). It is paused for the evaluation only, and left as it was found.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _evaluate(plan, contexts, engine_version, version_notes)
    finally:
        if enabled:
            gc.enable()


def _evaluate(plan: SweepPlan, contexts: list[int], engine_version: str,
              version_notes: tuple[str, ...]) -> list[KVEstimate]:
    new, setattr_ = object.__new__, object.__setattr__
    n = len(contexts)
    cols: list = [None] + [f(contexts) for f in plan.units]
    nones = [None] * n
    summed = []  # per stage: (bytes, k, v, state, breakdowns, fixed) columns
    for stage in plan.stages:
        stage_bytes = ks = vs = None
        state = [0] * n
        kb_cols = []
        for r in stage.rows:
            byt = _column(r.bytes, cols, n)
            k, v = _column(r.k, cols, n), _column(r.v, cols, n)
            if all(i == 0 for i, _ in r.tokens + r.bytes + (r.k or ()) + (r.v or ())):
                kb_cols.append([KindBytes(r.kind, r.num_layers, max((c for _, c in r.tokens), default=0), byt[0],
                                          k and k[0], v and v[0])] * n)
            else:
                kind, layers = r.kind, r.num_layers
                values = zip(_column(r.tokens, cols, n, max), byt, k or nones, v or nones)
                if len(set(byt)) * 4 < n * 3:
                    # A window layer stops growing past its window: share one row object per value.
                    memo: dict = {}
                    kb_cols.append([memo.get(x) or memo.setdefault(x, _kind_bytes(kind, layers, *x))
                                    for x in values])
                else:
                    kb_cols.append([setattr_(kb := new(KindBytes), "__dict__", {
                        "kind": kind, "num_layers": layers, "tokens_per_seq": t, "bytes": b, "k_bytes": kk,
                        "v_bytes": vv}) or kb for t, b, kk, vv in values])
            stage_bytes = byt if stage_bytes is None else list(map(int.__add__, stage_bytes, byt))
            if k is not None:
                ks = k if ks is None else list(map(int.__add__, ks, k))
            if v is not None:
                vs = v if vs is None else list(map(int.__add__, vs, v))
            if r.kind == "state":
                state = list(map(int.__add__, state, byt))
        summed.append((stage_bytes or [0] * n, ks or nones, vs or nones, state,
                       list(zip(*kb_cols)) if kb_cols else [()] * n, _versioned_fixed(
                           {**plan.fixed, **dict(stage.fixed)}, engine_version, version_notes)))
    if len(summed) == 1:
        kv, ks, vs, state, breakdowns, fixed = summed[0]
        totals = [x * plan.fixed["tp"] for x in kv]
        fixeds = repeat(fixed, n)
    else:  # the most-loaded stage (the first of equals), as kv_cache picks it
        loads = list(zip(*(s[0] for s in summed)))
        picks = [max(range(len(x)), key=x.__getitem__) for x in loads]
        kv, ks, vs, state, breakdowns, fixeds = ([summed[p][f][j] for j, p in enumerate(picks)] if f < 5
                                                 else [summed[p][5] for p in picks] for f in range(6))
        totals = [sum(x) * plan.fixed["tp"] for x in loads]
    if plan.total is not None:
        totals = _column(plan.total, cols, n)
    notes = repeat(None) if plan.notes is None else plan.notes(contexts, cols)
    if plan.notes is not None and version_notes:
        notes = [tuple(note) + version_notes for note in notes]
    out = []
    for ctx, fixed, kv_j, k_j, v_j, state_j, total_j, breakdown, note in zip(
            contexts, fixeds, kv, ks, vs, state, totals, breakdowns, notes):
        d = fixed.copy()
        d["context_len"] = ctx
        d["kv_bytes"] = kv_j
        d["k_bytes"] = k_j
        d["v_bytes"] = v_j
        d["state_bytes"] = state_j
        d["total_bytes"] = total_j
        d["breakdown"] = breakdown
        if note is not None:
            d["notes"] = note
        est = new(KVEstimate)
        setattr_(est, "__dict__", d)
        out.append(est)
    return out


def fixed_fields(est: KVEstimate) -> dict[str, Any]:
    """The KVEstimate fields a sweep keeps from the first context, in field order (the others are
    placeholders that every evaluated context overwrites)."""
    return dict(est.__dict__)
