"""The Plan page's chart, a pure plotly builder: concurrent users a deployment holds vs context.

Users are whole requests (integers). The y axis is logarithmic with labels at 1, 10, 100, ... only
(no minor-tick labels). Below one request nothing fits: that band is shaded and labelled, and points
with 0 users are drawn on its floor. The target users are a horizontal line, the workload's request
length a vertical one, and the longest context at which the target still fits a marker.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import plotly.graph_objects as go

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
FLOOR = 0.5  # where 0-user points are drawn (inside the shaded "does not fit" band)


def _esc(value) -> str:
    """Plotly renders a subset of HTML in names and titles: a name from the user stays text."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _tok(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}k"
    return f"{n:,}"


def users_vs_context(rows: list[dict[str, Any]], *, target_users: int | None = None,
                     request_tokens: int | None = None, longest: int | None = None,
                     title: str = "") -> go.Figure:
    """One line per deployment (`rows`: deployment, context_len, users), log x and log y.

    `longest`: the longest context at which `target_users` fit on the first deployment (marked).
    """
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        series[r["deployment"]].append(r)
    contexts = sorted({r["context_len"] for r in rows})
    top = max([r["users"] for r in rows] + [target_users or 0, 1])
    y_hi = math.log10(top) + 0.25
    fig = go.Figure()
    fig.add_hrect(y0=0.3, y1=1, fillcolor="#d62728", opacity=0.08, line_width=0, layer="below")
    fig.add_annotation(x=0.01, xref="paper", y=math.log10(0.7), yref="y", text="does not fit (0 users)",
                       showarrow=False, xanchor="left", font=dict(color="#a01c1c", size=12))
    for i, (name, rs) in enumerate(series.items()):
        rs = sorted(rs, key=lambda r: r["context_len"])
        fig.add_trace(go.Scatter(
            x=[r["context_len"] for r in rs], y=[r["users"] if r["users"] >= 1 else FLOOR for r in rs],
            customdata=[r["users"] for r in rs], name=_esc(name), mode="lines+markers", line_shape="hv",
            marker=dict(size=5), line=dict(color=COLORS[i % len(COLORS)], width=3 if i == 0 else 2),
            hovertemplate="%{customdata:,} users at %{x:,} tokens<extra>%{fullData.name}</extra>"))
    if target_users:
        fig.add_hline(y=target_users, line_dash="dash", line_color="#444",
                      annotation_text=f"target: {target_users:,} users", annotation_position="top left")
    if request_tokens:
        fig.add_vline(x=request_tokens, line_dash="dot", line_color="#888",
                      annotation_text=f"your requests: {request_tokens:,} tokens",
                      annotation_position="bottom right" if request_tokens < contexts[-1] / 8 else "bottom left")
    if longest and target_users:
        fig.add_trace(go.Scatter(
            x=[longest], y=[target_users], mode="markers+text", name="longest context that fits",
            marker=dict(symbol="diamond", size=13, color="#d62728", line=dict(color="white", width=1)),
            text=[f"{target_users:,} users fit up to {longest:,} tokens"],
            textposition="top right" if longest < contexts[-1] / 16 else "top left",
            hovertemplate=f"{target_users:,} users fit up to {longest:,} tokens each<extra></extra>"))
    decades = range(0, int(math.floor(y_hi)) + 1)
    fig.update_yaxes(type="log", range=[math.log10(0.3), y_hi], tickvals=[10 ** d for d in decades],
                     ticktext=[f"{10 ** d:,}" for d in decades], title="concurrent users (whole requests)")
    ticks = [1 << k for k in range(contexts[0].bit_length() - 1, contexts[-1].bit_length())
             if contexts[0] <= 1 << k <= contexts[-1]]
    if len(ticks) > 9:  # 1k, 4k, 16k, ...: every other power of two keeps the labels apart
        ticks = ticks[::2]
    lo, hi = math.log10(contexts[0]), math.log10(contexts[-1])
    pad = 0.02 * (hi - lo or 1)
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[_tok(c) for c in ticks], range=[lo - pad, hi + pad],
                     title="tokens per request (context)")
    fig.update_layout(title=dict(text=_esc(title), y=0.98, yanchor="top"), template="plotly_white", height=420,
                      margin=dict(l=10, r=10, t=40, b=10), hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fig
