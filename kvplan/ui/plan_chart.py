"""The Plan page's charts: concurrent users a deployment holds vs context (plotly), and one GPU's memory as an HTML bar.

Users are whole requests (integers). The y axis is logarithmic with labels at 1, 10, 100, ... only
(no minor-tick labels). Below one request nothing fits: that band is shaded and labelled, and points
with 0 users are drawn on its floor. The target users are a horizontal line, the workload's request
length a vertical one, and the longest context at which the target still fits a marker.
"""

from __future__ import annotations

import html
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
    Built as one dict (no template, no add_hline helpers): plotly validates a template and each
    helper call again, which cost ~250 ms per figure on a busy 2-core box; this costs ~20 ms.
    Annotations on a log axis take log10 of the value, so labels are placed by hand.
    """
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        series[r["deployment"]].append(r)
    contexts = sorted({r["context_len"] for r in rows})
    top = max([r["users"] for r in rows] + [target_users or 0, 1])
    y_hi = math.log10(top) + 0.25
    data: list[dict[str, Any]] = []
    for i, (name, rs) in enumerate(series.items()):
        rs = sorted(rs, key=lambda r: r["context_len"])
        data.append(dict(
            type="scatter", x=[r["context_len"] for r in rs], y=[r["users"] if r["users"] >= 1 else FLOOR for r in rs],
            customdata=[r["users"] for r in rs], name=_esc(name), mode="lines+markers", line_shape="hv",
            marker=dict(size=5), line=dict(color=COLORS[i % len(COLORS)], width=3 if i == 0 else 2),
            hovertemplate="%{customdata:,} users at %{x:,} tokens<extra>%{fullData.name}</extra>"))
    shapes: list[dict[str, Any]] = [dict(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=0.3, y1=1,
                                         fillcolor="#d62728", opacity=0.08, line_width=0, layer="below")]
    notes: list[dict[str, Any]] = [dict(x=0.01, xref="paper", y=math.log10(0.7), yref="y", showarrow=False,
                                        text="does not fit (0 users)", xanchor="left",
                                        font=dict(color="#a01c1c", size=12))]
    if target_users:
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=target_users, y1=target_users,
                           line=dict(dash="dash", color="#444")))
        notes.append(dict(x=0.01, xref="paper", y=math.log10(target_users), yref="y", yanchor="bottom",
                          text=f"target: {target_users:,} users", showarrow=False, xanchor="left"))
    if request_tokens:
        shapes.append(dict(type="line", xref="x", x0=request_tokens, x1=request_tokens, yref="paper", y0=0, y1=1,
                           line=dict(dash="dot", color="#888")))
        left = request_tokens > contexts[-1] / 8
        notes.append(dict(x=math.log10(request_tokens), xref="x", y=1, yref="paper", yanchor="top",
                          text=f"your requests: {request_tokens:,} tokens", showarrow=False,
                          xanchor="right" if left else "left", xshift=-4 if left else 4,
                          font=dict(color="#666", size=11)))
    if longest and target_users and longest >= contexts[0]:
        # The numbers go in the legend, not beside the marker: on a 390 px phone a label there ran off
        # the plot whichever side it was put.
        data.append(dict(
            type="scatter", x=[longest], y=[target_users], mode="markers",
            name=f"{target_users:,} users fit up to {longest:,} tokens each",
            marker=dict(symbol="diamond", size=13, color="#d62728", line=dict(color="white", width=1)),
            hovertemplate=f"{target_users:,} users fit up to {longest:,} tokens each<extra></extra>"))
    decades = range(0, int(math.floor(y_hi)) + 1)
    ticks = [1 << k for k in range(contexts[0].bit_length() - 1, contexts[-1].bit_length())
             if contexts[0] <= 1 << k <= contexts[-1]]
    if len(ticks) > 9:  # 1k, 4k, 16k, ...: every other power of two keeps the labels apart
        ticks = ticks[::2]
    lo, hi = math.log10(contexts[0]), math.log10(contexts[-1])
    pad = 0.02 * (hi - lo or 1)
    layout = dict(
        title=dict(text=_esc(title), y=0.98, yanchor="top"), height=420, margin=dict(l=10, r=10, t=40, b=10),
        hovermode="closest", legend=dict(orientation="h", yanchor="top", y=-0.2, x=0), shapes=shapes,
        annotations=notes,
        yaxis=dict(type="log", range=[math.log10(0.3), y_hi], tickvals=[10 ** d for d in decades],
                   ticktext=[f"{10 ** d:,}" for d in decades], title=dict(text="concurrent users (whole requests)"),
                   gridcolor="#e8e8e8"),
        xaxis=dict(type="log", tickvals=ticks, ticktext=[_tok(c) for c in ticks], range=[lo - pad, hi + pad],
                   title=dict(text="tokens per request (context)"), gridcolor="#e8e8e8"))
    return go.Figure(dict(data=data, layout=layout))


LEDGER_COLORS = {"weights": "#636efa", "activations": "#ef553b", "overhead": "#ab63fa", "KV in use": "#00a67e",
                 "KV free": "#9fe3c9", "not reserved": "#d9dde6"}
_LIGHT = {"#9fe3c9", "#d9dde6"}  # segments whose label is drawn in dark ink


def memory_ledger(rows: list[dict[str, Any]], *, title: str) -> str:
    """One GPU's memory as one stacked horizontal bar (`rows`: part, bytes), in GiB, as HTML for
    `st.html`: each part's GiB inside its segment where it fits, the part and its GiB on hover (the
    segment's tooltip), a legend below. Not a plotly figure: the page redraws this bar on every rerun,
    and a plotly chart is a fresh `newPlot` each time (Streamlit remounts it when its figure changes),
    which cost about as much in the browser as the users chart. Part names are kvplan's own; the
    title and every name are escaped all the same."""
    total = sum(max(0, r["bytes"]) for r in rows) or 1
    segments, legend = [], []
    for r in rows:
        if r["bytes"] <= 0:
            continue
        part, gib, share = html.escape(str(r["part"])), r["bytes"] / 2**30, r["bytes"] / total
        color = LEDGER_COLORS.get(r["part"], "#bbb")
        ink = "#1f2937" if color in _LIGHT else "#fff"
        label = f"{gib:,.1f}" if share >= 0.06 else ""  # a label that would not fit is left out
        segments.append(f'<div title="{part}: {gib:,.2f} GiB" style="flex:0 0 {share * 100:.3f}%;background:{color};'
                        f'color:{ink};display:flex;align-items:center;justify-content:center;overflow:hidden;'
                        f'white-space:nowrap;font-size:12px">{label}</div>')
        legend.append(f'<span style="white-space:nowrap"><span style="display:inline-block;width:10px;height:10px;'
                      f'background:{color};margin-right:5px;border-radius:2px"></span>{part}</span>')
    said = "; ".join(f'{r["part"]} {r["bytes"] / 2**30:,.2f} GiB' for r in rows if r["bytes"] > 0)
    return (f'<div role="img" aria-label="{html.escape(f"{title}: {said}")}" style="padding:4px 0 8px">'
            f'<div style="font-weight:600;font-size:14px;margin-bottom:6px">{html.escape(title)}</div>'
            f'<div style="display:flex;width:100%;height:36px;border-radius:4px;overflow:hidden">{"".join(segments)}</div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin-top:8px">{"".join(legend)}</div>'
            '</div>')
