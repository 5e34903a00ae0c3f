"""The pages' computations, cached once per server for every session (`st.cache_data`).

Eight people opening the same view used to compute it eight times on Streamlit's script threads,
which share one interpreter lock: the sessions queued behind each other (benchmarks/app_sessions.py).
Every sweep a page draws goes through here instead: the first session computes it, concurrent
sessions asking for the same inputs wait for that one result (Streamlit locks per key) and later
ones get a copy. Keys are the inputs; a ModelArch is keyed by a digest of its repr (the whole frozen
spec, ModelArch.digest), so two different uploads with the same file name never share a result.
Entries are bounded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import streamlit as st

from kvplan.errors import KvplanError
from kvplan.layers import ModelArch
from kvplan.ui import sweeps

HASH_FUNCS = {ModelArch: lambda arch: arch.digest}


@dataclass(frozen=True)
class _Failed:
    message: str
    field: str | None
_ENTRIES = 512


def _cache(fn):
    return st.cache_data(show_spinner=False, max_entries=_ENTRIES, hash_funcs=HASH_FUNCS)(fn)


@_cache
def tp_choices(arch: ModelArch) -> list[int]:
    return sweeps.tp_choices(arch)


# `options` below: each engine's own options as a tuple ((engine, ((name, value), ...)), ...), see
# sweeps.engine_options and widgets.Selection.options_key. They are arguments, so part of every key.

@_cache
def size_at(arch: ModelArch, context_len: int, *, engines: list[str], kv_dtypes: list[str], batch: int = 1,
            tp: int = 1, pp: int = 1, options: tuple = ()) -> tuple[sweeps.Table, dict]:
    return sweeps.size_at(arch, context_len, engines=engines, kv_dtypes=kv_dtypes, batch=batch, tp=tp, pp=pp,
                          options=options)


@_cache
def size_by_kind(arch: ModelArch, contexts: list[int], *, engine: str, kv_dtype: str, tp: int = 1, pp: int = 1,
                 batch: int = 1, options: tuple = ()) -> sweeps.Table:
    return sweeps.size_by_kind(arch, contexts, engine=engine, kv_dtype=kv_dtype, tp=tp, pp=pp, batch=batch,
                               options=options)


@_cache
def size_lines(arch: ModelArch, contexts: list[int], *, engines: list[str], kv_dtypes: list[str], tp: int = 1,
               pp: int = 1, batch: int = 1, options: tuple = ()) -> sweeps.Table:
    return sweeps.size_lines(arch, contexts, engines=engines, kv_dtypes=kv_dtypes, tp=tp, pp=pp, batch=batch,
                             options=options)


@_cache
def plan(arch: ModelArch, **kwargs: Any):
    """`kvplan.plan`; a KvplanError is returned (not raised) so it is cached too: the caller raises it."""
    import kvplan
    from kvplan.errors import KvplanError
    try:
        return kvplan.plan(arch, **kwargs)
    except KvplanError as err:
        return _Failed(str(err), getattr(err, "field", None))


@_cache
def min_gpus(arch: ModelArch, **kwargs: Any):
    """`kvplan.min_gpus`; errors returned like `plan`."""
    from kvplan.errors import KvplanError
    from kvplan.planner import min_gpus as find
    try:
        return find(arch, **kwargs)
    except KvplanError as err:
        return _Failed(str(err), getattr(err, "field", None))


@_cache
def users_vs_context(arch: ModelArch, contexts: list[int], *, gpus: dict[str, dict[str, Any]],
                     **plan_kwargs: Any) -> sweeps.Table:
    return sweeps.users_vs_context(arch, contexts, gpus=gpus, **plan_kwargs)


@_cache
def compare_models(archs: list[ModelArch], **kwargs: Any) -> sweeps.Table:
    return sweeps.compare_models(archs, **kwargs)


@_cache
def cache_tradeoff(arch: ModelArch, *, prompt_len: int, gen_lens: list[int], engine: str,
                   kv_dtype: str, options: tuple = ()) -> sweeps.Table:
    return sweeps.cache_tradeoff(arch, prompt_len=prompt_len, gen_lens=gen_lens, engine=engine,
                                 kv_dtype=kv_dtype, options=options)


class CachedError(KvplanError):
    """A KvplanError replayed from the cache (exceptions with custom signatures do not pickle)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def chart(builder: str, rows: list[dict[str, Any]], **kwargs: Any):
    """`kvplan.ui.charts.<builder>(rows, **kwargs)`, built once per server and shared by every session
    (building a Plotly figure costs more than the sweep behind it; st.plotly_chart copies the figure
    with `to_dict` and never changes it, so sharing is safe: pages must not mutate what they get).

    The rows are keyed by a digest of their repr: Streamlit's own argument hashing walks every dict and
    took half of a Size rerun (0.5 of 0.96 s, cProfile)."""
    digest = hashlib.blake2b(repr(rows).encode(), digest_size=16).hexdigest()
    return _chart(builder, digest, repr(sorted(kwargs.items())), _rows=rows, _kwargs=kwargs)


@st.cache_resource(show_spinner=False, max_entries=_ENTRIES)
def _chart(builder: str, rows_digest: str, kwargs_key: str, *, _rows: list[dict[str, Any]], _kwargs: dict):
    from kvplan.ui import charts
    return getattr(charts, builder)(_rows, **_kwargs)


def raise_if_error(result):
    """The cached `plan` / `min_gpus` result, raising the error it holds as a CachedError."""
    if isinstance(result, _Failed):
        raise CachedError(result.message, result.field)
    return result
