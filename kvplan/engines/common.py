"""What every engine profile shares: the request, the result types, TP/PP rules, dtype resolution.

Nothing here knows a particular engine's allocation rules; those live one module per engine.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from kvplan.dtypes import DTYPES, Dtype, canonical
from kvplan.errors import InvalidInputError, UnsupportedDtypeError
from kvplan.layers import (MLA, FullAttention, LayerSpec, ModelArch, NoCache, RecurrentState)
from kvplan.units import MAX_TOKENS, cdiv, check_count

__all__ = ["cdiv", "Request", "KindBytes", "KVEstimate", "Capacity", "pp_stages", "kv_heads_per_rank",
           "check_tp", "resolve_kv_dtype", "make_options", "mamba_state_elems"]

MAX_BATCH = 10**9
MAX_PARALLEL = 4096


@dataclass(frozen=True)
class Request:
    """What to size: `batch` sequences of `context_len` tokens, on a tp × pp layout, KV in `kv_dtype`."""

    context_len: int
    batch: int
    kv_dtype: str  # canonical name after "auto" is resolved
    tp: int = 1
    pp: int = 1

    @property
    def dtype(self) -> Dtype:
        return DTYPES[self.kv_dtype]


@dataclass(frozen=True)
class KindBytes:
    """One row of the per-layer-kind breakdown, on the most-loaded GPU, for the whole batch.

    `tokens_per_seq` is how many tokens (cells) each sequence keeps in one layer of this kind after
    the engine's rounding (0 for per-sequence state). `k_bytes`/`v_bytes` are None where K and V are
    not separate (MLA latent, recurrent state, padding).
    """

    kind: str
    num_layers: int
    tokens_per_seq: int
    bytes: int
    k_bytes: int | None = None
    v_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class KVEstimate:
    """The KV cache (plus recurrent state) one engine allocates, on the most-loaded GPU.

    `kv_bytes` = sum of `breakdown` bytes = k + v + latent + state + padding. `total_bytes` sums all
    `tp·pp` GPUs. `bytes_per_token` is the context-proportional part per sequence per GPU, before
    block rounding (what one more token of context costs). `notes` say which engine rules applied.
    """

    model: str
    engine: str
    context_len: int
    batch: int
    kv_dtype: str
    tp: int
    pp: int
    kv_bytes: int
    k_bytes: int | None
    v_bytes: int | None
    state_bytes: int
    bytes_per_token: int
    total_bytes: int
    block_size: int | None
    breakdown: tuple[KindBytes, ...]
    notes: tuple[str, ...] = ()
    engine_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["breakdown"] = [b.to_dict() for b in self.breakdown]
        d["notes"] = list(self.notes)
        return d


@dataclass(frozen=True)
class Capacity:
    """How a per-GPU KV budget turns into blocks, tokens and concurrent sequences, the engine's way.

    `num_blocks` is what the engine would log (vLLM "GPU blocks", including its null block);
    `kv_tokens` its "KV cache size in tokens"; `max_concurrency` its "Maximum concurrency for
    `max_model_len` tokens per request". `max_sequences` is the whole number of full-length
    sequences that can run at once (usable blocks only).
    """

    model: str
    engine: str
    kv_dtype: str
    tp: int
    pp: int
    kv_memory_bytes: int
    max_model_len: int
    block_size: int | None
    num_blocks: int | None
    bytes_per_block: int | None
    blocks_per_request: int | None
    kv_tokens: int
    max_concurrency: float
    max_sequences: int
    notes: tuple[str, ...] = ()
    engine_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["notes"] = list(self.notes)
        return d


def make_request(context_len: int, batch: int, kv_dtype: str, tp: int, pp: int) -> Request:
    check_count(context_len, "context_len", maximum=MAX_TOKENS)
    check_count(batch, "batch", maximum=MAX_BATCH)
    check_count(tp, "tp", maximum=MAX_PARALLEL)
    check_count(pp, "pp", maximum=MAX_PARALLEL)
    return Request(context_len, batch, kv_dtype, tp, pp)


def make_options(options_cls: type, engine: str, given: dict[str, Any], version=None, table=None):
    """Build an engine's frozen Options from keyword arguments, naming any it does not take.

    With an engine `version` and its `table`, every version rule whose key is an option field sets
    that option's default for the version; an option given explicitly still wins."""
    if not given:  # no engine options, the commonest call (every call of a chart's sweeps): the frozen
        hit = _DEFAULT_OPTIONS.get((options_cls, version))  # defaults are built once per class and version
        if hit is not None and hit[0] is table:
            return hit[1]
    known, types = _option_fields(options_cls)
    if "engine_version" in given:
        raise InvalidInputError("engine_version", "give the engine version as engine_version= (CLI "
                                                  "--engine-version), not as an engine option")
    for key in given:
        if key not in known:
            raise InvalidInputError(key, f"not an option of engine {engine!r}; it takes "
                                         f"{', '.join(sorted(known)) or 'no options'}")
    values = {k: v for k, v in given.items() if v is not None}
    if version is not None and table is not None:
        defaults = _version_defaults(options_cls, known, types, table, version)  # already type-checked
        values = {k: v for k, v in {**defaults, **values}.items() if v is not None}
    for key, value in values.items():
        if key in given:
            _check_option_type(key, value, types[key])
    try:
        opts = options_cls(**values)
    except (TypeError, ValueError, ArithmeticError) as err:  # an engine's own range checks
        if isinstance(err, InvalidInputError):
            raise
        raise InvalidInputError("options", f"invalid {engine} options: {err}") from None
    if not given:
        if len(_DEFAULT_OPTIONS) > 256:
            _DEFAULT_OPTIONS.clear()
        _DEFAULT_OPTIONS[(options_cls, version)] = (table, opts)
    return opts


_OPTION_FIELDS: dict[type, tuple[frozenset[str], dict[str, str]]] = {}
_VERSION_DEFAULTS: dict[tuple[type, Any], tuple[Any, dict[str, Any]]] = {}
_DEFAULT_OPTIONS: dict[tuple[type, Any], tuple[Any, Any]] = {}  # (class, version) -> (table, Options())


def _option_fields(options_cls: type) -> tuple[frozenset[str], dict[str, str]]:
    """The option names of an engine's Options class and their annotations (read once per class)."""
    hit = _OPTION_FIELDS.get(options_cls)
    if hit is None:
        fields = dataclasses.fields(options_cls)
        hit = _OPTION_FIELDS[options_cls] = (frozenset(f.name for f in fields), {f.name: str(f.type) for f in fields})
    return hit


def _version_defaults(options_cls: type, known, types, table, version) -> dict[str, Any]:
    """The option defaults that `version`'s rules set (a fork's own values win), type-checked; worked
    out once per (Options class, version): sweeps and plans ask for the same few many times."""
    hit = _VERSION_DEFAULTS.get((options_cls, version))
    if hit is not None and hit[0] is table:
        return hit[1]
    by_version = {r.key: table.value(r.key, version) for r in table.rules if r.key in known}
    by_version.update({k: v for f, k, v in table.fork_values if f == version.fork and k in known})
    for key, value in by_version.items():
        if value is not None:
            _check_option_type(key, value, types[key])
    if len(_VERSION_DEFAULTS) > 256:
        _VERSION_DEFAULTS.clear()
    _VERSION_DEFAULTS[(options_cls, version)] = (table, by_version)
    return by_version


def _check_option_type(key: str, value: Any, annotation: str) -> None:
    """Reject an option value of the wrong type (a string for `block_size`, NaN for a ratio) by name."""
    literal = re.findall(r"""['"]([^'"]+)['"]""", annotation) if "Literal" in annotation else []
    ok = (value in literal if literal and isinstance(value, str)
          else isinstance(value, bool) if annotation.startswith("bool")
          else isinstance(value, int) and not isinstance(value, bool) if annotation.startswith("int")
          else isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          if annotation.startswith("float")
          else isinstance(value, str) if annotation.startswith("str")
          else True)
    if not ok:
        want = " | ".join(repr(v) for v in literal) if literal else annotation.replace(" | None", "")
        raise InvalidInputError(key, f"expected {want}, got {value!r}"[:200])


def pp_layer_ranges(num_layers: int, pp: int) -> list[range]:
    """Decoder-layer indices of each of `pp` stages, as vLLM's get_pp_indices splits them.

    Layers are split evenly; the remainder goes one each to the stages *before* the last
    (the last stage also holds the LM head).
    """
    sizes = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        sizes[-i] += 1
    out, start = [], 0
    for size in sizes:
        out.append(range(start, start + size))
        start += size
    return out


def pp_stages(arch: ModelArch, pp: int) -> list[tuple[LayerSpec, ...]]:
    """The cache layers of each pipeline stage (see `pp_layer_ranges`)."""
    if pp > arch.num_layers:
        raise InvalidInputError("pp", f"{pp} pipeline stages for {arch.num_layers} layers; use pp <= "
                                      f"{arch.num_layers}")
    ranges = pp_layer_ranges(arch.num_layers, pp)
    stage_of = [0] * arch.num_layers  # one pass over the layers, not one per stage (100k layers × pp 4096)
    for stage, r in enumerate(ranges):
        stage_of[r.start:r.stop] = [stage] * len(r)
    out: list[list[LayerSpec]] = [[] for _ in ranges]
    for s in arch.layers:
        # Speculative-decoding draft layers (numbered after the target's) sit on the last stage with the
        # LM head.
        out[stage_of[s.index] if s.index < arch.num_layers else -1].append(s)
    return [tuple(stage) for stage in out]


def largest_true(lo: int, hi: int, ok) -> int:
    """Largest n in [lo, hi] with ok(n), for ok true up to some n and false after; lo - 1 if none."""
    if hi < lo or not ok(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    """KV heads each TP rank holds: max(1, H // tp). Past H ranks, heads are replicated."""
    return max(1, num_kv_heads // tp)


def check_tp(arch: ModelArch, tp: int, *, split_state: bool = True) -> None:
    """Reject a TP size that the engines cannot shard this model with (they refuse to start)."""
    if tp == 1:
        return
    heads = arch.weight_dims.num_attention_heads
    for spec in _tp_layers(arch):
        if isinstance(spec, FullAttention):
            h = spec.num_kv_heads
            if h % tp and tp % h:
                raise InvalidInputError("tp", f"{tp} neither divides nor is a multiple of the {h} KV "
                                              f"heads; choose a tp that divides {h}")
        if isinstance(spec, (FullAttention, MLA)) and heads and heads % tp:
            raise InvalidInputError("tp", f"{tp} does not divide the {heads} attention heads")
        if isinstance(spec, RecurrentState) and split_state and spec.num_heads % tp:
            raise InvalidInputError("tp", f"{tp} does not divide the {spec.num_heads} state heads of "
                                          f"layer {spec.index}")


def _tp_layers(arch: ModelArch) -> tuple[LayerSpec, ...]:
    """The layers check_tp must look at: the first of each (class, KV heads, state heads), in layer
    order, which is all its answer and its message depend on (a state layer's message names the first
    such layer). Memoised on the arch, which is immutable: a 70B model's 80 like layers made check_tp a
    fifth of a recommendation, which checks TP for every layout it plans."""
    got = arch.__dict__.get("_tp_layers")
    if got is None:
        first: dict[tuple, LayerSpec] = {}
        for spec in arch.layers:
            first.setdefault((type(spec), spec.num_kv_heads if isinstance(spec, FullAttention) else None,
                              spec.num_heads if isinstance(spec, RecurrentState) else None), spec)
        got = arch.__dict__["_tp_layers"] = tuple(first.values())
    return got


def resolve_kv_dtype(engine: str, name: str, model_dtype: str, allowed: tuple[str, ...],
                     *, auto_fp32_as: str = "bf16") -> str:
    """Resolve "auto" to the model's dtype and reject what `engine` cannot store.

    Serving engines run float32 checkpoints in bf16 (vLLM, SGLang, TRT-LLM), so "auto" on a float32
    config means bf16 there; `auto_fp32_as="fp32"` keeps float32 (HF transformers).
    """
    key = canonical(name)
    if key == "auto":
        key = auto_fp32_as if model_dtype == "fp32" else model_dtype
    if key not in allowed:
        raise UnsupportedDtypeError(name, f"{engine} does not support it; choose one of "
                                          f"{', '.join(('auto', *allowed))}")
    return key


def mamba_state_elems(spec: RecurrentState, tp: int, conv_history: int) -> tuple[int, int]:
    """(conv, ssm) element counts of one sequence's state in one layer on one TP rank.

    `conv_history` is the number of conv steps kept: kernel − 1 (vLLM, SGLang, llama.cpp) or the
    full kernel (HF). Mamba2 groups that do not divide tp are replicated (vLLM
    extra_groups_for_head_shards), so each rank holds at least one group.
    """
    if spec.mixer == "mamba2":
        groups = spec.n_groups
        extra = 0 if groups % tp == 0 else tp - groups
        d_inner = spec.num_heads * spec.head_dim
        channels = (d_inner + 2 * (groups + extra) * spec.state_dim) // tp
    else:
        channels = spec.conv_channels // tp
    return conv_history * channels, spec.ssm_elems // tp


def cache_layers(layers: tuple[LayerSpec, ...]) -> tuple[LayerSpec, ...]:
    return tuple(s for s in layers if not isinstance(s, NoCache))


_GROUPED: dict[tuple[int, int], tuple[ModelArch, list]] = {}


def grouped_stages(arch: ModelArch, pp: int) -> list[list[tuple[LayerSpec, int]]]:
    """`pp_stages` with identical cache layers folded into (first spec, count) pairs, in layer order.

    Engines size each distinct layer shape once and multiply: a 126-layer model with one shape costs
    one step, not 126. Cached per (model, pp): the sweep over contexts reuses it.
    """
    key = (id(arch), pp)
    hit = _GROUPED.get(key)
    if hit is not None and hit[0] is arch:
        return hit[1]
    out = []
    for stage in pp_stages(arch, pp):
        groups: dict[tuple, list] = {}
        for spec in cache_layers(stage):
            shape = (type(spec),) + tuple(v for k, v in vars(spec).items() if k != "index")
            if shape in groups:
                groups[shape][1] += 1
            else:
                groups[shape] = [spec, 1]
        out.append([(spec, n) for spec, n in groups.values()])
    if len(_GROUPED) > 1024:
        _GROUPED.clear()
    _GROUPED[key] = (arch, out)  # holding arch keeps its id from being reused while cached
    return out


STATE: Any = object()
"""The `window` of a pool part that is per-sequence state rather than tokens (see `pool_kv_cache`)."""


def pool_kv_cache(engine: str, arch: ModelArch, req: Request, stages: list[list[tuple]], tokens_fn, *,
                  block_size: int | None, bytes_per_token: int, notes: list[str]) -> KVEstimate:
    """kv_cache of a token pool (SGLang, TRT-LLM) described per stage as parts `(kind, layers, window,
    K bytes, V bytes, separate K/V)` per token of one layer, or `(kind, layers, STATE, bytes per
    sequence, 0, False)` for recurrent state. `tokens_fn(window)` maps context lengths to the tokens a
    sequence holds in such layers. Parts of one kind fold into one row: the first fixes tokens_per_seq
    and whether K/V are separate. `kvplan.engines.sweep.pool_plan` evaluates the same parts for many
    contexts at once."""
    tokens_at: dict[Any, int] = {}
    stage_rows = []
    for parts in stages:
        rows: dict[str, list] = {}
        stage_rows.append(rows)
        for kind, n, window, k_tok, v_tok, separate in parts:
            if window is STATE:
                r = rows.setdefault(kind, [0, 0, 0, None, None])
                r[0] += n
                r[2] += k_tok * req.batch * n
                continue
            tokens = tokens_at.get(window)
            if tokens is None:
                tokens = tokens_at[window] = tokens_fn(window)([req.context_len])[0]
            r = rows.setdefault(kind, [0, tokens, 0, 0 if separate else None, 0 if separate else None])
            r[0] += n
            k, v = k_tok * tokens * req.batch * n, v_tok * tokens * req.batch * n
            r[2] += k + v
            if separate:
                r[3] += k
                r[4] += v
    return estimate_from_rows(engine, arch, req, stage_rows, block_size=block_size,
                              bytes_per_token=bytes_per_token, notes=notes)


def estimate_from_rows(engine: str, arch: ModelArch, req: Request, stage_rows: list[dict[str, list]], *,
                       block_size: int | None, bytes_per_token: int, notes: list[str]) -> KVEstimate:
    """Build a KVEstimate from per-stage rows `{kind: [layers, tokens_per_seq, bytes, k, v]}`.

    Rows hold bytes for the whole batch on one GPU of that stage (k/v None where K and V are not
    separate); the most-loaded stage is reported, `total_bytes` sums every stage × tp.
    """
    totals = [sum(r[2] for r in rows.values()) for rows in stage_rows]
    rows = stage_rows[max(range(len(totals)), key=totals.__getitem__)]
    breakdown = tuple(KindBytes(kind, *vals) for kind, vals in rows.items())
    ks = [r.k_bytes for r in breakdown if r.k_bytes is not None]
    vs = [r.v_bytes for r in breakdown if r.v_bytes is not None]
    return KVEstimate(
        model=arch.model_id, engine=engine, context_len=req.context_len, batch=req.batch,
        kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp, kv_bytes=sum(r.bytes for r in breakdown),
        k_bytes=sum(ks) if ks else None, v_bytes=sum(vs) if vs else None,
        state_bytes=sum(r.bytes for r in breakdown if r.kind == "state"), bytes_per_token=bytes_per_token,
        total_bytes=sum(totals) * req.tp, block_size=block_size, breakdown=breakdown, notes=tuple(notes),
    )
