"""Sweeps: one layout, many contexts (issue 16).

Between block and window boundaries every byte count is linear in a few integer "units" of the
context (blocks, cells, cached tokens), so an engine describes one (model, batch, dtype, layout,
options) once as rows of coefficients on its units (its `sweep_plan`, which validates the request as
kv_cache does), and `evaluate_sweep` computes that arithmetic for all contexts at once instead of
re-running the layout code per context. The unit functions are the engines' own per-context rules
(kv_cache calls the same ones), and tests/test_sweep.py checks every bundled model × engine against
kv_cache, context by context, to the byte. Imported only by sweeps: `kvplan size` never loads it.

Where the time goes (benchmarks/sizing.py): the arithmetic is a few list comprehensions per field;
most of a sweep is building the result objects, a KVEstimate and its KindBytes rows per context, which
`_estimates` and `_kind_bytes` do with as little interpreter work per object as they can. Measured on
CPython 3.11 (2-core machine): creating, filling and freeing one KVEstimate with one fresh KindBytes row
costs about 1.0 µs whichever way it is written (filling fields column by column with C loops, or
assigning a prebuilt __dict__, was slower); each call's validation and plan 30-50 µs; a row shared
past its window, llama.cpp's per-context notes and extra fresh rows make up the rest.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from itertools import repeat, starmap
from operator import add
from typing import Any, NamedTuple

from kvplan.engines.common import STATE, KindBytes, KVEstimate, Request
from kvplan.layers import ModelArch

Terms = tuple[tuple[int, int], ...]
"""sum(units[i] * coefficient for i, coefficient in terms); units[0] is the constant 1."""


class SweepRow(NamedTuple):
    """One breakdown row (a KindBytes) as terms in the units; the whole batch on one GPU."""

    kind: str
    num_layers: int
    tokens: Terms  # tokens_per_seq = the largest of units[i] * coefficient (0 when empty)
    bytes: Terms
    k: Terms | None = None  # None where K and V are not separate (MLA latent, state, padding)
    v: Terms | None = None


class SweepStage(NamedTuple):
    """The rows of one pipeline stage, and the KVEstimate fields it fixes when it is the most loaded
    (vLLM's block size, per-token bytes and notes come from that stage's layout)."""

    rows: tuple[SweepRow, ...]
    fixed: tuple[tuple[str, Any], ...] = ()


class SweepPlan(NamedTuple):
    """An engine's KVEstimate for every context of one request shape.

    `units` map a list of context lengths to counts (index 0 is reserved for the constant 1); `fixed` holds
    every KVEstimate field in field order (`estimate_fields`), the context-free ones filled in; `notes`,
    when given, maps (contexts, unit columns) to each context's notes (llama.cpp names its cell counts).
    total_bytes = the stages' bytes summed × tp, or `total` terms when given (naive).
    """

    units: tuple[Callable[[list[int]], list[int]], ...]
    stages: tuple[SweepStage, ...]
    fixed: dict[str, Any]
    total: Terms | None = None
    notes: Callable[[list[int], list], list[tuple[str, ...]]] | None = None


def estimate_fields(arch: ModelArch, engine: str, req: Request, *, bytes_per_token: int,
                    block_size: int | None, notes=()) -> dict[str, Any]:
    """A KVEstimate's fields in its field order: the ones a sweep keeps for every context, and
    placeholders for the ones each context sets (a result's __dict__ keeps this order, as kv_cache's)."""
    return {"model": arch.model_id, "engine": engine, "context_len": 0, "batch": req.batch,
            "kv_dtype": req.kv_dtype, "tp": req.tp, "pp": req.pp, "kv_bytes": 0, "k_bytes": None,
            "v_bytes": None, "state_bytes": 0, "bytes_per_token": bytes_per_token, "total_bytes": 0,
            "block_size": block_size, "breakdown": (), "notes": tuple(notes), "engine_version": ""}


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


def pool_plan(engine: str, arch: ModelArch, req: Request, stages: list[list[tuple]],
              tokens_fn: Callable[[Any], Callable[[list[int]], list[int]]], *, block_size: int,
              bytes_per_token: int, notes: list[str]) -> SweepPlan:
    """The plan of a token pool (SGLang, TRT-LLM) from the parts that `common.pool_kv_cache` sizes at
    one context: one unit per distinct window (the tokens a sequence holds in those layers)."""
    units: list = []
    index: dict[Any, int] = {}
    out = []
    for parts in stages:
        rows: dict[str, list] = {}
        for kind, n, window, k_tok, v_tok, separate in parts:
            scale = req.batch * n
            if window is STATE:
                merge_row(rows, kind, n, (), ((0, k_tok * scale),), None, None)
                continue
            i = index.get(window)
            if i is None:
                units.append(tokens_fn(window))
                i = index[window] = len(units)
            merge_row(rows, kind, n, ((i, 1),), ((i, (k_tok + v_tok) * scale),),
                      ((i, k_tok * scale),) if separate else None, ((i, v_tok * scale),) if separate else None)
        out.append(sweep_stage(rows))
    return SweepPlan(tuple(units), tuple(out), estimate_fields(arch, engine, req, bytes_per_token=bytes_per_token,
                                                               block_size=block_size, notes=notes))


# --- evaluation ----------------------------------------------------------------------------------

Column = int | list  # a value that is the same at every context, or one value per context
_new = object.__new__


def _blank(cls: type, n: int) -> list:
    """n new instances of `cls` with empty __dict__s (no __init__), for the builders to fill."""
    return list(starmap(_new, repeat((cls,), n)))  # starmap passes one args tuple: cheaper than map


def _lin(terms: Terms, cols: list, largest: bool = False) -> Column:
    """One field at every context: the terms summed (or the largest of them: tokens_per_seq); an int
    when no term depends on the context."""
    const = out = None
    for i, c in terms:
        if i == 0:
            const = c if const is None else max(const, c) if largest else const + c
            continue
        col = cols[i] if c == 1 else [x * c for x in cols[i]]
        out = col if out is None else list(map(max if largest else add, out, col))
    if out is None:
        return 0 if const is None else const
    if const is None or const == 0 and not largest:
        return out
    return [max(x, const) for x in out] if largest else [x + const for x in out]


def _add(a: Column, b: Column) -> Column:
    if type(a) is not list:
        if type(b) is not list:
            return a + b
        a, b = b, a
    if type(b) is not list:
        return a if b == 0 else [x + b for x in a]
    return list(map(add, a, b))


def _each(value, n: int):
    """A column's n values to iterate (a constant repeats)."""
    return value if type(value) is list else repeat(value, n)


def _kind_bytes(kind: str, num_layers: int, tokens: Column, nbytes: Column, k, v, n: int) -> list[KindBytes]:
    """n KindBytes rows, equal field for field to KindBytes(...): the frozen __init__ sets one field
    per call, which costs more than the arithmetic, so the fields go straight into each new row's
    __dict__, in field order (the layout the class's instances share)."""
    objs = _blank(KindBytes, n)
    for d, t, b, kk, vv in zip(map(vars, objs), _each(tokens, n), _each(nbytes, n), _each(k, n), _each(v, n)):
        d["kind"] = kind
        d["num_layers"] = num_layers
        d["tokens_per_seq"] = t
        d["bytes"] = b
        d["k_bytes"] = kk
        d["v_bytes"] = vv
    return objs


def _saturates(col: list[int]) -> bool:
    """Whether many contexts share a unit's largest value (a window layer past its window), so rows are
    worth sharing: a cheap test (two C passes) before counting distinct values."""
    return len(col) > 4 and col.count(max(col)) * 4 > len(col)


def _row(r: SweepRow, cols: list, n: int, distinct: dict[int, list]) -> tuple:
    """(the row's KindBytes, or one per context; its bytes, k and v columns)."""
    nbytes = _lin(r.bytes, cols)
    k = None if r.k is None else _lin(r.k, cols)
    v = k if r.v == r.k else _lin(r.v, cols)  # K and V alike (head_dim_v == head_dim): one column
    units = {i for terms in (r.tokens, r.bytes, r.k or (), r.v or ()) for i, _ in terms if i}
    if not units:
        return KindBytes(r.kind, r.num_layers, _lin(r.tokens, cols, True), nbytes, k, v), nbytes, k, v
    i = units.pop() if len(units) == 1 else 0
    if i and _saturates(cols[i]):
        # A window layer stops growing past its window: one row object per distinct value, shared.
        uniq = distinct.get(i)
        if uniq is None:
            uniq = distinct[i] = list(dict.fromkeys(cols[i]))
        if len(uniq) * 4 < n * 3:
            sub = cols.copy()
            sub[i] = uniq
            k_sub = None if r.k is None else _lin(r.k, sub)
            objs = _kind_bytes(r.kind, r.num_layers, _lin(r.tokens, sub, True), _lin(r.bytes, sub), k_sub,
                               k_sub if r.v == r.k else _lin(r.v, sub), len(uniq))
            return list(map(dict(zip(uniq, objs)).__getitem__, cols[i])), nbytes, k, v
    return _kind_bytes(r.kind, r.num_layers, _lin(r.tokens, cols, True), nbytes, k, v, n), nbytes, k, v


def _stage(stage: SweepStage, cols: list, n: int, distinct: dict) -> tuple:
    """(kv, k, v, state, breakdown) of one stage: columns (k and v None where no row has them), the
    breakdown one tuple or one per context."""
    kv, ks, vs, state, rows = 0, None, None, 0, []
    same_kv = all(r.v == r.k for r in stage.rows)  # then the V sums are the K sums
    for r in stage.rows:
        obj, nbytes, k, v = _row(r, cols, n, distinct)
        rows.append(obj)
        kv = _add(kv, nbytes)
        if k is not None:
            ks = k if ks is None else _add(ks, k)
        if v is not None and not same_kv:
            vs = v if vs is None else _add(vs, v)
        if r.kind == "state":
            state = _add(state, nbytes)
    if same_kv:
        vs = ks
    if any(type(r) is list for r in rows):
        breakdown = list(zip(*[r if type(r) is list else repeat(r, n) for r in rows]))
    else:
        breakdown = tuple(rows)
    return kv, ks, vs, state, breakdown


def evaluate_sweep(plan: SweepPlan, contexts: list[int], *, engine_version: str = "",
                   version_notes: tuple[str, ...] = ()) -> list[KVEstimate]:
    """The KVEstimate at each context, from the plan's coefficients (no layout code per context), with
    `engine_version` and its `version_notes` applied as `api._versioned` applies them.

    Work goes column by column (one list per unit, then per field over all contexts; a field that does
    not change stays one int), and the results are equal, field for field and in field order, to what
    kv_cache returns.
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
    n = len(contexts)
    cols = _unit_columns(plan, contexts)
    distinct: dict[int, list] = {}
    tp = plan.fixed["tp"]
    templates = []
    for s in plan.stages:
        t = {**plan.fixed, **dict(s.fixed)}  # plan.fixed's keys are in field order; updates keep it
        t["notes"] = tuple(t["notes"]) + version_notes
        t["engine_version"] = engine_version
        templates.append(t)
    notes = None
    if plan.notes is not None:
        notes = plan.notes(contexts, cols)
        if version_notes:
            notes = [tuple(note) + version_notes for note in notes]
    if len(plan.stages) == 1:
        if plan.total is None and len(plan.stages[0].rows) == 1:
            out = _one_row(plan.stages[0].rows[0], cols, contexts, templates[0], tp, n, notes)
            if out is not None:
                return out
        kv, ks, vs, state, breakdown = _stage(plan.stages[0], cols, n, distinct)
        total = kv * tp if type(kv) is not list else kv if tp == 1 else [x * tp for x in kv]
        template = templates[0]
    else:  # the most-loaded stage (the first of equals), as kv_cache picks it
        stages = [_stage(s, cols, n, distinct) for s in plan.stages]
        loads = list(zip(*[_each(s[0], n) for s in stages]))
        picks = [max(range(len(x)), key=x.__getitem__) for x in loads]
        by_field = [[s[f] if type(s[f]) is list else [s[f]] * n for s in stages] for f in range(5)]
        kv, ks, vs, state, breakdown = ([by_stage[p][j] for j, p in enumerate(picks)] for by_stage in by_field)
        total = [sum(x) * tp for x in loads]
        template = [templates[p] for p in picks]
    if plan.total is not None:
        total = _lin(plan.total, cols)
    return _estimates(template, contexts, kv, ks, vs, state, total, breakdown, notes, n)


def _unit_columns(plan: SweepPlan, contexts: list[int]) -> list:
    """Each unit's value at every context, at index 1.. (index 0 stands for the constant 1 in terms)."""
    return [None, *(f(contexts) for f in plan.units)]


def evaluate_bytes(plan: SweepPlan, contexts: list[int], *, total: bool = False) -> list[int]:
    """`kv_bytes` (or `total_bytes`) at each context: the columns `_evaluate` computes for those fields,
    and no result objects. kv_bytes is the most-loaded stage's sum of row bytes (the largest, as
    kv_cache picks it); total_bytes the stages summed × tp, or the plan's own `total` terms."""
    n = len(contexts)
    cols = _unit_columns(plan, contexts)
    if total and plan.total is not None:
        return _column(_lin(plan.total, cols), n)
    loads = []
    for stage in plan.stages:
        kv: Column = 0
        for r in stage.rows:
            kv = _add(kv, _lin(r.bytes, cols))
        loads.append(kv)
    if total:
        tp = plan.fixed["tp"]
        summed = loads[0] if len(loads) == 1 else [sum(x) for x in zip(*[_each(c, n) for c in loads])]
        if tp != 1:
            summed = [x * tp for x in summed] if type(summed) is list else summed * tp
        return _column(summed, n)
    if len(loads) == 1:
        return _column(loads[0], n)
    return list(map(max, *[_each(c, n) for c in loads]))


def _column(value: Column, n: int) -> list[int]:
    """A column as a new list of n ints (a constant repeated)."""
    return value if type(value) is list else [value] * n


def _one_row(r: SweepRow, cols: list, contexts: list[int], template: dict, tp: int, n: int,
             notes: list | None) -> list | None:
    """The common plan in one pass: one stage of one row whose every field is one unit × a coefficient
    (a model of one attention kind, on any engine; llama.cpp's per-context notes come as a column). Both
    objects of a context are filled in the same iteration, from the unit, without a list per field. None
    when the plan has another shape (the column-by-column path takes it)."""
    terms = (r.tokens, r.bytes) + ((r.k, r.v) if r.k is not None else ())
    if (r.k is None) != (r.v is None) or any(len(t) != 1 for t in terms):
        return None
    i = r.tokens[0][0]
    if i == 0 or any(t[0][0] != i for t in terms) or _saturates(cols[i]):
        return None
    ct, cb = r.tokens[0][1], r.bytes[0][1]
    kind, layers = r.kind, r.num_layers
    tp1 = tp == 1  # total_bytes is kv_bytes itself (no product to make per context)
    rows = _blank(KindBytes, n)
    objs = _blank(KVEstimate, n)
    notes = _each(template["notes"] if notes is None else notes, n)
    if r.k is None:
        for d, dr, row, ctx, u, no in zip(map(vars, objs), map(vars, rows), rows, contexts, cols[i], notes):
            b = u * cb
            dr["kind"] = kind
            dr["num_layers"] = layers
            dr["tokens_per_seq"] = u * ct
            dr["bytes"] = b
            dr["k_bytes"] = None
            dr["v_bytes"] = None
            d.update(template)
            d["context_len"] = ctx
            d["kv_bytes"] = b
            d["total_bytes"] = b if tp1 else b * tp
            d["breakdown"] = (row,)
            d["notes"] = no
        return objs
    ck, cv = r.k[0][1], r.v[0][1]
    for d, dr, row, ctx, u, no in zip(map(vars, objs), map(vars, rows), rows, contexts, cols[i], notes):
        b, k, v = u * cb, u * ck, u * cv
        dr["kind"] = kind
        dr["num_layers"] = layers
        dr["tokens_per_seq"] = u * ct
        dr["bytes"] = b
        dr["k_bytes"] = k
        dr["v_bytes"] = v
        d.update(template)
        d["context_len"] = ctx
        d["kv_bytes"] = b
        d["k_bytes"] = k
        d["v_bytes"] = v
        d["total_bytes"] = b if tp1 else b * tp
        d["breakdown"] = (row,)
        d["notes"] = no
    return objs


def _estimates(template, contexts, kv, ks, vs, state, total, breakdown, notes, n) -> list[KVEstimate]:
    """n KVEstimates: `template` (every field, in field order; one dict, or one per context) with the
    columns put in. Each result gets its own __dict__, filled in one pass (see `_kind_bytes`)."""
    if notes is None:
        notes = template["notes"] if type(template) is dict else [t["notes"] for t in template]
    objs = _blank(KVEstimate, n)
    for d, t, ctx, kv_j, k_j, v_j, st_j, tot_j, bd_j, no_j in zip(
            map(vars, objs), _each(template, n), contexts, _each(kv, n), _each(ks, n), _each(vs, n),
            _each(state, n), _each(total, n), _each(breakdown, n), _each(notes, n)):
        d.update(t)
        d["context_len"] = ctx
        d["kv_bytes"] = kv_j
        d["k_bytes"] = k_j
        d["v_bytes"] = v_j
        d["state_bytes"] = st_j
        d["total_bytes"] = tot_j
        d["breakdown"] = bd_j
        d["notes"] = no_j
    return objs
