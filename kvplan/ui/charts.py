"""Pure plotly figure builders: rows in (from `kvplan.ui.sweeps`), a `go.Figure` out.

Every string given to a builder is plain text (a title with a Hub model id, an uploaded report's
name) and goes into the figure through `text.plot_text`, so Plotly's HTML subset never comes from input.

No streamlit here, so every chart can be built and inspected in a plain test. Bytes are plotted in
GiB (2^30) and the axis says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import plotly.graph_objects as go

from kvplan.ui.text import plot_text
from kvplan.units import GiB

GIB = float(GiB)
KIND_COLORS = {"full attention": "#1f77b4", "sliding window": "#2ca02c", "chunked local": "#17becf",
               "latent (MLA)": "#9467bd", "recurrent state": "#ff7f0e", "page padding": "#c7c7c7"}
PART_COLORS = {"weights": "#636efa", "KV cache": "#00cc96", "activations": "#ef553b",
               "overhead": "#ab63fa", "free": "#e5ecf6"}

Rows = list[dict[str, Any]]


def _layout(fig: go.Figure, title: str, *, x_title: str, y_title: str, log_x: bool = False) -> go.Figure:
    fig.update_layout(title=dict(text=plot_text(title), y=0.98, yanchor="top"), margin=dict(l=10, r=10, t=40, b=10),
                      height=440, legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
                      hovermode="x unified", template="plotly_white")
    fig.update_xaxes(title=plot_text(x_title), type="log" if log_x else "-")  # "-": plotly infers (category bars)
    fig.update_yaxes(title=plot_text(y_title), rangemode="tozero")
    return fig


def _series(rows: Rows, key: str) -> dict[str, Rows]:
    out: dict[str, Rows] = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out


def _context_ticks(fig: go.Figure, contexts: list[int]) -> None:
    """Ticks at powers of two (1k, 2k, ... 128k); the range padded a little so the last tick shows."""
    if not contexts:
        return
    ticks = [c for c in contexts if c & (c - 1) == 0]
    text = [f"{c // 2**20}M" if c >= 2**20 else f"{c // 1024}k" if c >= 1024 else str(c) for c in ticks]
    lo, hi = math.log10(contexts[0]), math.log10(contexts[-1])
    pad = 0.02 * (hi - lo or 1)
    fig.update_xaxes(tickvals=ticks, ticktext=text, range=[lo - pad, hi + pad])


def memory_by_kind(rows: Rows, *, title: str) -> go.Figure:
    """KV memory vs context (log x), stacked by layer kind."""
    fig = go.Figure()
    for kind, rs in _series(rows, "kind").items():
        fig.add_trace(go.Scatter(x=[r["context_len"] for r in rs], y=[r["bytes"] / GIB for r in rs],
                                 name=plot_text(kind), stackgroup="kv", mode="lines",
                                 line=dict(color=KIND_COLORS.get(kind)),
                                 hovertemplate="%{y:.3f} GiB"))
    _layout(fig, title, x_title="context (tokens)", y_title="KV cache per sequence (GiB)", log_x=True)
    _context_ticks(fig, sorted({r["context_len"] for r in rows}))
    return fig


def memory_lines(rows: Rows, *, title: str, mark_context: int | None = None) -> go.Figure:
    """Total KV memory vs context, one line per engine · dtype."""
    fig = go.Figure()
    for name, rs in _series(rows, "series").items():
        fig.add_trace(go.Scatter(x=[r["context_len"] for r in rs], y=[r["kv_bytes"] / GIB for r in rs],
                                 name=plot_text(name), mode="lines", hovertemplate="%{y:.3f} GiB"))
    _layout(fig, title, x_title="context (tokens)", y_title="KV cache per sequence (GiB)", log_x=True)
    _context_ticks(fig, sorted({r["context_len"] for r in rows}))
    if mark_context:
        fig.add_vline(x=mark_context, line_dash="dot", line_color="#888")
    return fig


def users_lines(rows: Rows, *, title: str, mark_context: int | None = None) -> go.Figure:
    """Concurrent full-length users per GPU vs context, one line per GPU choice."""
    fig = go.Figure()
    for gpu, rs in _series(rows, "gpu").items():
        fig.add_trace(go.Scatter(x=[r["context_len"] for r in rs], y=[r["users_per_gpu"] for r in rs],
                                 name=plot_text(gpu), mode="lines", hovertemplate="%{y:.2f} users"))
    _layout(fig, title, x_title="context per user (tokens)", y_title="concurrent users per GPU",
            log_x=True)
    fig.update_yaxes(type="log", dtick="D2")  # label 1, 2, 5 per decade, not every minor tick
    _context_ticks(fig, sorted({r["context_len"] for r in rows}))
    if mark_context:
        fig.add_vline(x=mark_context, line_dash="dot", line_color="#888")
    return fig


def memory_bars(rows: Rows, *, title: str) -> go.Figure:
    """Per-GPU memory split (weights / KV / activations / overhead / free), one bar per GPU."""
    fig = go.Figure()
    for part, rs in _series(rows, "part").items():
        fig.add_trace(go.Bar(y=[plot_text(r["gpu"]) for r in rs], x=[r["bytes"] / GIB for r in rs],
                             name=plot_text(part),
                             orientation="h", marker_color=PART_COLORS.get(part),
                             hovertemplate="%{x:.2f} GiB"))
    _layout(fig, f"{title} (GiB)", x_title="", y_title="")
    fig.update_layout(barmode="stack", hovermode="closest",
                      height=max(260, 170 + 60 * len({r["gpu"] for r in rows})))
    return fig


def compare_bars(rows: Rows, *, value: str, title: str, y_title: str, scale: float = 1.0) -> go.Figure:
    """Grouped bars: models on x, one bar per engine."""
    fig = go.Figure()
    for engine, rs in _series(rows, "engine").items():
        fig.add_trace(go.Bar(x=[plot_text(r["model"]) for r in rs],
                             y=[None if r[value] is None else r[value] / scale for r in rs],
                             name=plot_text(engine)))
    _layout(fig, title, x_title="", y_title=y_title)
    fig.update_layout(barmode="group", hovermode="closest")
    return fig


def validation_chart(rows: Rows, *, title: str) -> go.Figure:
    """Predicted vs measured bytes per context, one pair of series per report."""
    fig = go.Figure()
    for report, rs in _series(rows, "report").items():
        rs = sorted(rs, key=lambda r: r["context_len"])
        x = [r["context_len"] for r in rs]
        fig.add_trace(go.Scatter(x=x, y=[(r["predicted_bytes"] or 0) / GIB for r in rs],
                                 name=plot_text(f"{report} predicted"), mode="lines+markers", line=dict(dash="dash")))
        fig.add_trace(go.Scatter(x=x, y=[(r["measured_bytes"] or 0) / GIB for r in rs],
                                 name=plot_text(f"{report} measured"), mode="markers", marker=dict(size=10)))
    _layout(fig, title, x_title="context (tokens)", y_title="KV cache (GiB)", log_x=True)
    contexts = sorted({r["context_len"] for r in rows if r["context_len"] > 0})
    if contexts:
        lo, hi = 2 ** math.floor(math.log2(contexts[0])), 2 ** math.ceil(math.log2(contexts[-1]))
        _context_ticks(fig, sorted({*contexts, *(2 ** k for k in range(lo.bit_length() - 1, hi.bit_length()))}))
    return fig


def cache_tradeoff(rows: Rows, *, title: str) -> go.Figure:
    """K/V projection FLOPs without vs with a cache (left axis, log) and the cache's bytes (right)."""
    x = [r["generated_tokens"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[r["kv_flops_without_cache"] for r in rows], name="K/V FLOPs, no cache "
                             "(O(n²))", mode="lines", line=dict(color="#ef553b")))
    fig.add_trace(go.Scatter(x=x, y=[r["kv_flops_with_cache"] for r in rows], name="K/V FLOPs, with cache "
                             "(O(n))", mode="lines", line=dict(color="#00cc96")))
    fig.add_trace(go.Scatter(x=x, y=[r["cache_bytes"] / GIB for r in rows], name="cache memory (GiB)",
                             mode="lines", line=dict(color="#636efa", dash="dot"), yaxis="y2"))
    _layout(fig, title, x_title="generated tokens", y_title="FLOPs to compute K/V (log)")
    fig.update_yaxes(type="log")
    fig.update_layout(yaxis2=dict(title="cache memory (GiB)", overlaying="y", side="right",
                                  rangemode="tozero", showgrid=False, tickformat=".2f", tickmode="auto"))
    return fig
