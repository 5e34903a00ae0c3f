"""The Plan page's charts: concurrent users a deployment holds vs context (Vega-Lite), and one GPU's memory as an
HTML bar.

Users are whole requests (integers). The y axis is logarithmic with labels at 1, 10, 100, ... only
(no minor-tick labels). Below one request nothing fits: that band is shaded and labelled, and points
with 0 users are drawn on its floor. The target users are a horizontal line, the workload's request
length a vertical one, and the longest context at which the target still fits a marker.
"""

from __future__ import annotations

import html
import math
from typing import Any

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
FLOOR = 0.5  # where 0-user points are drawn (inside the shaded "does not fit" band)


def users_vs_context(rows: list[dict[str, Any]], *, target_users: int | None = None,
                     request_tokens: int | None = None, longest: int | dict[str, int] | None = None,
                     title: str = "", request_label: str = "your requests",
                     y_title: str = "concurrent users (whole requests)"
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One step line per deployment (`rows`: deployment, context_len, users), log x and log y, as
    (data, Vega-Lite spec) for `st.vega_lite_chart`.

    `longest`: the longest context at which `target_users` fit on the first deployment (exact), or per
    deployment (a dict: the longest point of `rows` where they fit), each marked on the target line (at
    1 user without a target).
    Everything that changes with the inputs (the lines, the target, the request length, the marker and
    their labels) is in the data, and the spec stays the same while the model and the order of
    magnitude of the users do: the browser then updates the chart's data in place. A plotly chart was
    remounted and drawn from scratch on every change (Streamlit gives a plotly chart a new identity
    whenever its figure changes), about 120 ms of each widget change on the Plan page. Vega draws text
    as text (SVG nodes, escaped tooltips): names from the user are never markup.
    """
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(r["deployment"], len(order))
    contexts = sorted({r["context_len"] for r in rows})
    top = max([r["users"] for r in rows] + [target_users or 0, 1])
    data: list[dict[str, Any]] = []
    for r in sorted(rows, key=lambda r: (order[r["deployment"]], r["context_len"])):
        users = int(r["users"])
        data.append(_point("line", r["context_len"], users if users >= 1 else FLOOR, str(r["deployment"]),
                           f"{users:,} user{'s' if users != 1 else ''} at {r['context_len']:,} tokens "
                           f"({r['deployment']})", order[r["deployment"]]))
    data.append(_point("pad", contexts[0], 10 ** (math.log10(top) + 0.25)))  # headroom above the top line
    if target_users:
        data.append(_point("target", None, target_users, label=f"target: {target_users:,} users"))
    if request_tokens:
        side = "request_left" if request_tokens > contexts[-1] / 8 else "request_right"
        data.append(_point(side, request_tokens, None, label=f"{request_label}: {request_tokens:,} tokens"))
    # The numbers go in the legend, not beside the marker: on a 390 px phone a label there ran off the
    # plot whichever side it was put.
    need = max(1, target_users or 0)
    who = f"{need:,} users fit" if need != 1 else "1 user fits"
    if isinstance(longest, dict):  # the longest of the swept contexts (a grid point, not the exact limit)
        for name, at in longest.items():
            label = f"{name}: {who} at {at:,} tokens"
            data.append(_point("longest", at, need, label=label, tip=label))
    elif longest and target_users and longest >= contexts[0]:
        label = f"{who} up to {longest:,} tokens each"
        data.append(_point("longest", longest, target_users, label=label, tip=label))
    decades = [10 ** d for d in range(0, int(math.floor(math.log10(top) + 0.25)) + 1)]
    ticks = [1 << k for k in range(contexts[0].bit_length() - 1, contexts[-1].bit_length())
             if contexts[0] <= 1 << k <= contexts[-1]]
    if len(ticks) > 9:  # 1k, 4k, 16k, ...: every other power of two keeps the labels apart
        ticks = ticks[::2]
    return data, _spec(title, ticks, decades, y_title)


def _point(kind: str, x: int | None, y: float | None, deployment: str | None = None, tip: str = "",
           order: int = 0, label: str = "") -> dict[str, Any]:
    return {"kind": kind, "context_len": x, "y": y, "deployment": deployment, "tip": tip, "order": order,
            "width": 3 if kind == "line" and order == 0 else 2, "label": label}


_KIND = "datum.kind == '{}'"
_TOKENS = ("datum.value >= 1048576 && datum.value % 1048576 == 0 ? (datum.value / 1048576) + 'M' : "
           "datum.value >= 1024 && datum.value % 1024 == 0 ? (datum.value / 1024) + 'k' : format(datum.value, ',')")


def _spec(title: str, ticks: list[int], decades: list[int], y_title: str) -> dict[str, Any]:
    """The users chart's layers; only the title and the two axes' tick lists vary."""
    x = {"field": "context_len", "type": "quantitative", "title": "tokens per request (context)",
         "scale": {"type": "log", "nice": False, "padding": 8},
         "axis": {"values": ticks, "labelExpr": _TOKENS, "gridColor": "#e8e8e8"}}
    y = {"field": "y", "type": "quantitative", "title": y_title,
         "scale": {"type": "log", "domainMin": 0.3, "nice": False},
         "axis": {"values": decades, "format": ",", "gridColor": "#e8e8e8"}}

    def only(kind: str, layer: dict[str, Any]) -> dict[str, Any]:
        return {"transform": [{"filter": _KIND.format(kind)}], **layer}

    band = {"data": {"values": [{}]}, "mark": {"type": "rect", "color": "#d62728", "opacity": 0.08},
            "encoding": {"y": {"datum": 0.3, "type": "quantitative"}, "y2": {"datum": 1}}}
    band_text = {"data": {"values": [{}]}, "mark": {"type": "text", "align": "left", "x": 6, "color": "#a01c1c",
                                                    "fontSize": 12},
                 "encoding": {"y": {"datum": 0.62, "type": "quantitative"},
                              "text": {"value": "does not fit (0 users)"}}}
    lines = only("line", {
        "mark": {"type": "line", "interpolate": "step-after", "point": {"size": 30, "filled": True}},
        "encoding": {"x": x, "y": y, "detail": {"field": "deployment"},
                     "color": {"field": "deployment", "type": "nominal", "title": None,
                               "sort": {"field": "order", "op": "min"}, "scale": {"range": list(COLORS)},
                               "legend": {"orient": "bottom", "direction": "vertical", "labelLimit": 600}},
                     "strokeWidth": {"field": "width", "type": "quantitative", "scale": None, "legend": None},
                     "tooltip": {"field": "tip", "type": "nominal"}}})
    pad = only("pad", {"mark": {"type": "point", "opacity": 0}, "encoding": {"x": x, "y": y}})
    target = only("target", {"mark": {"type": "rule", "strokeDash": [6, 4], "color": "#444"},
                             "encoding": {"y": y}})
    target_text = only("target", {"mark": {"type": "text", "align": "left", "baseline": "bottom", "x": 6, "dy": -3,
                                           "fontSize": 12, "color": "#333"},
                                  "encoding": {"y": y, "text": {"field": "label"}}})
    layers = [band, band_text, pad, lines, target, target_text]
    for kind, align, dx in (("request_left", "right", -4), ("request_right", "left", 4)):
        layers.append(only(kind, {"mark": {"type": "rule", "strokeDash": [2, 3], "color": "#888"},
                                  "encoding": {"x": x}}))
        layers.append(only(kind, {"mark": {"type": "text", "align": align, "baseline": "top", "y": 4, "dx": dx,
                                           "fontSize": 11, "color": "#666"},
                                  "encoding": {"x": x, "text": {"field": "label"}}}))
    layers.append(only("longest", {
        "mark": {"type": "point", "shape": "diamond", "size": 170, "filled": True, "color": "#d62728",
                 "stroke": "white", "strokeWidth": 1, "opacity": 1},
        "encoding": {"x": x, "y": y, "tooltip": {"field": "tip", "type": "nominal"},
                     "shape": {"field": "label", "type": "nominal", "title": None,
                               "scale": {"range": ["diamond"]},
                               "legend": {"orient": "bottom", "direction": "vertical", "labelLimit": 600,
                                          "symbolSize": 130, "symbolFillColor": "#d62728",
                                          "symbolStrokeColor": "white"}}}}))
    return {"title": {"text": title, "anchor": "start", "fontSize": 14}, "height": 540, "layer": layers,
            "usermeta": {"embedOptions": {"renderer": "svg", "actions": False}},
            # the two bottom legends stacked: side by side, a phone cut the marker's one off
            "config": {"legend": {"labelFontSize": 12,
                                  "layout": {"bottom": {"anchor": "start", "direction": "vertical"}}},
                       "axis": {"labelFontSize": 11, "titleFontSize": 12}}}


LEDGER_COLORS = {"weights": "#636efa", "activations": "#ef553b", "overhead": "#ab63fa", "KV in use": "#00a67e",
                 "KV free": "#9fe3c9", "not reserved": "#d9dde6", "KV cache": "#00a67e", "free": "#d9dde6"}
_LIGHT = {"#9fe3c9", "#d9dde6"}  # segments whose label is drawn in dark ink


def memory_ledger(rows: list[dict[str, Any]], *, title: str, width: float = 1.0) -> str:
    """One GPU's memory as one stacked horizontal bar (`rows`: part, bytes), in GiB, as HTML for
    `st.html`: each part's GiB inside its segment where it fits, the part and its GiB on hover (the
    segment's tooltip), a legend below. Not a plotly figure: the page redraws this bar on every rerun,
    and a plotly chart is a fresh `newPlot` each time (Streamlit remounts it when its figure changes),
    which cost about as much in the browser as the users chart. `width`: the bar's share of the row
    (GPUs of different sizes side by side). Part names are kvplan's own; the title and every name are
    escaped all the same."""
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
            f'<div style="display:flex;width:{100 * min(1.0, max(0.05, width)):.2f}%;height:36px;border-radius:4px;'
            f'overflow:hidden">{"".join(segments)}</div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin-top:8px">{"".join(legend)}</div>'
            '</div>')


def memory_ledgers(rows: list[dict[str, Any]], *, title: str) -> str:
    """Several GPUs' memory (`rows`: gpu, part, bytes) as one `memory_ledger` bar each under one title,
    the bars' lengths to scale between the GPUs (Capacity's "also compare GPUs")."""
    by_gpu: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_gpu.setdefault(str(r["gpu"]), []).append({"part": r["part"], "bytes": r["bytes"]})
    totals = {gpu: sum(max(0, r["bytes"]) for r in rs) for gpu, rs in by_gpu.items()}
    widest = max(totals.values(), default=0) or 1
    head = f'<div style="font-weight:600;font-size:14px;margin:4px 0 8px">{html.escape(title)}</div>'
    return head + "".join(memory_ledger(rs, title=f"{gpu}: {totals[gpu] / 2**30:,.1f} GiB",
                                        width=totals[gpu] / widest) for gpu, rs in by_gpu.items())
