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


def _axes(fig: go.Figure, rows: Rows, *, log_x: bool, log_y: bool, values: list[float]) -> None:
    """Context ticks on the x axis (log or linear); on a log y axis, labelled ticks at 1, 2, 5 × 10^k
    only (plotly labels every 2..9 when the range spans few decades, and they overlap)."""
    if log_x:
        _context_ticks(fig, sorted({r["context_len"] for r in rows}))
    else:
        fig.update_xaxes(tickformat="~s")
    if log_y:
        vals = _log_ticks([v for v in values if v > 0])
        fig.update_yaxes(type="log", tickvals=vals, ticktext=[f"{v:,.0f}" if v >= 1 else f"{v:g}" for v in vals])


def _log_ticks(values: list[float]) -> list[float]:
    """1, 2, 5 × 10^k from just below the smallest value to just above the largest."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    k = math.floor(math.log10(lo))
    out: list[float] = []
    while True:
        for m in (1, 2, 5):
            v = m * 10.0 ** k
            if v > hi * 2.5:
                return out
            if v >= lo / 2.5:
                out.append(float(f"{v:.12g}"))
        k += 1


def memory_by_kind(rows: Rows, *, title: str, log_x: bool = True, log_y: bool = False,
                   y_title: str = "KV cache per sequence (GiB)") -> go.Figure:
    """KV memory vs context (log x unless `log_x=False`), stacked by layer kind."""
    fig = go.Figure()
    for kind, rs in _series(rows, "kind").items():
        fig.add_trace(go.Scatter(x=[r["context_len"] for r in rs], y=[r["bytes"] / GIB for r in rs],
                                 name=plot_text(kind), stackgroup="kv", mode="lines",
                                 line=dict(color=KIND_COLORS.get(kind)),
                                 hovertemplate="%{y:.3f} GiB"))
    _layout(fig, title, x_title="context (tokens)", y_title=y_title, log_x=log_x)
    # stacked: the top of the stack at each context is what the axis must span
    tops: dict[int, float] = defaultdict(float)
    for r in rows:
        tops[r["context_len"]] += r["bytes"] / GIB
    _axes(fig, rows, log_x=log_x, log_y=log_y, values=list(tops.values()))
    return fig


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
GPU_LINE = "#444"  # the GPU's memory: dark grey, never one of the series' colours


def memory_lines(rows: Rows, *, title: str, mark_context: int | None = None, log_y: bool = False, log_x: bool = True,
                 gpu_line: tuple[str, int] | None = None, y_title: str = "KV cache per sequence (GiB)"
                 ) -> go.Figure:
    """Total KV memory vs context, one line per engine · dtype (distinct dashes, so lines that lie close
    stay visible); `gpu_line` = (label, bytes) draws the GPU's memory as a horizontal line."""
    fig = go.Figure()
    for i, (name, rs) in enumerate(_series(rows, "series").items()):
        fig.add_trace(go.Scatter(x=[r["context_len"] for r in rs], y=[r["kv_bytes"] / GIB for r in rs],
                                 name=plot_text(name), mode="lines", line=dict(dash=DASHES[i % len(DASHES)],
                                 width=2.5 if i == 0 else 2), hovertemplate="%{y:,.3f} GiB"))
    _layout(fig, title, x_title="context (tokens)", y_title=y_title, log_x=log_x)
    _axes(fig, rows, log_x=log_x, log_y=log_y,
          values=[r["kv_bytes"] / GIB for r in rows] + ([gpu_line[1] / GIB] if gpu_line else []))
    if mark_context:
        fig.add_vline(x=mark_context, line_dash="dot", line_color="#888")
    if gpu_line:
        label, num_bytes = gpu_line
        text = plot_text(f"{label}: {num_bytes / GIB:,.1f} GiB")
        if log_y:
            # A log axis places annotations at log10(y) (shapes at y): add_hline's own annotation put
            # "79.2 GiB" at 10^79.2 and the autorange up to 1e84, flattening every line.
            fig.add_hline(y=num_bytes / GIB, line_dash="dash", line_color=GPU_LINE)
            fig.add_annotation(x=0, xref="x domain", y=math.log10(num_bytes / GIB), yref="y", text=text,
                               showarrow=False, xanchor="left", yanchor="bottom")
        else:
            fig.add_hline(y=num_bytes / GIB, line_dash="dash", line_color=GPU_LINE, annotation_text=text,
                          annotation_position="top left")
        if not log_y:
            top = max([r["kv_bytes"] / GIB for r in rows] + [num_bytes / GIB])
            fig.update_yaxes(range=[0, top * 1.08])
    return fig


def compare_bars(rows: Rows, *, value: str, title: str, y_title: str, scale: float = 1.0,
                 label: str = "model") -> go.Figure:
    """Grouped horizontal bars: one row per model (names read left of the bars, never under the
    legend), one bar per engine; the legend sits above the plot."""
    fig = go.Figure()
    models = list(dict.fromkeys(r[label] for r in rows))
    for engine, rs in _series(rows, "engine").items():
        fig.add_trace(go.Bar(y=[plot_text(r[label]) for r in rs], orientation="h",
                             x=[None if r[value] is None else r[value] / scale for r in rs],
                             name=plot_text(engine), hovertemplate="%{x:,.3~f}"))
    _layout(fig, title, x_title=y_title, y_title="")
    fig.update_layout(barmode="group", hovermode="closest", height=max(300, 120 + 26 * len(models) *
                      max(1, len({r["engine"] for r in rows}))),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), margin=dict(t=70))
    fig.update_yaxes(autorange="reversed", automargin=True)
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
    _layout(fig, title, x_title="generated tokens", y_title="FLOPs to compute K/V (log scale)")
    fig.update_yaxes(type="log", exponentformat="power", dtick=1, showexponent="all")
    fig.update_layout(yaxis2=dict(title="cache memory (GiB)", overlaying="y", side="right",
                                  rangemode="tozero", showgrid=False, tickformat=".2f", tickmode="auto"))
    return fig
