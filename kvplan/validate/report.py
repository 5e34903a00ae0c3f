"""The validate report: one JSON file, a PNG plot (matplotlib, when installed), and a human summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvplan.units import fmt_auto


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return p


def write_png(report: dict[str, Any], path: str | Path) -> Path | None:
    """Predicted vs measured bytes per context (left) and decode ms vs roofline (right); None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = report.get("results", [])
    decode = (report.get("paged") or {}).get("decode") or []
    fig, axes = plt.subplots(1, 2 if decode else 1, figsize=(11 if decode else 6, 4), squeeze=False)
    ax = axes[0][0]
    ctx = [r["context_len"] for r in rows]
    ax.plot(ctx, [r["predicted_bytes"] / 2**30 for r in rows], "o-", label="predicted (transformers profile)")
    ax.plot(ctx, [r["measured_bytes"] / 2**30 for r in rows], "x--", label="measured (cache tensors)")
    if any(r.get("allocated_bytes") for r in rows) and report.get("depth", {}).get("mode") == "full":
        ax.plot(ctx, [r["allocated_bytes"] / 2**30 for r in rows], "s:", label="memory_allocated delta")
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("KV cache (GiB)")
    ax.set_title(f"{report['model']} on {report['device_name']}", fontsize=9)
    ax.legend(fontsize=8)
    if decode:
        ax = axes[0][1]
        for batch in sorted({d.get("batch", 1) for d in decode}):
            rows_b = [d for d in decode if d.get("batch", 1) == batch]
            c = [d["context_len"] for d in rows_b]
            line = ax.plot(c, [d["ms_per_step"] for d in rows_b], "o-", label=f"measured, batch {batch}")[0]
            if any(d.get("roofline_ms") for d in rows_b):
                ax.plot(c, [d["roofline_ms"] or 0 for d in rows_b], "--", color=line.get_color(),
                        label=f"bandwidth roofline, batch {batch}")
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel("ms per decode step (attention)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def summary(report: dict[str, Any]) -> str:
    d = report["depth"]
    lines = [f"{report['model']} — transformers profile vs {report['device']} ({report['device_name']}), "
             f"{report['dtype']}, batch {report['batch']}; torch {report['torch_version']}, "
             f"transformers {report['transformers_version']}"
             + (f", CUDA {report['cuda_version']}, driver {report.get('driver_version') or 'unknown'}"
                if report.get("cuda_version") else ""),
             f"  depth: {d['mode']} ({d['layers_built']} of {d['layers_total']} layers built)"]
    lines.append(f"  {'context':>8} {'predicted':>16} {'measured':>16} {'error':>9} {'allocated':>12} {'peak':>12}")
    for r in report["results"]:
        alloc = fmt_auto(r["allocated_bytes"]) if r.get("allocated_bytes") is not None else "-"
        peak = fmt_auto(r["peak_bytes"]) if r.get("peak_bytes") is not None else "-"
        lines.append(f"  {r['context_len']:>8,} {r['predicted_bytes']:>16,} {r['measured_bytes']:>16,} "
                     f"{r['error']:>+9.4%} {alloc:>12} {peak:>12}")
    pg = report.get("paged")
    if pg and "predicted_bytes" in pg:
        lines.append(f"  paged (vllm layout): {pg['num_blocks']:,} blocks × {pg['bytes_per_block']:,} B: predicted "
                     f"{pg['predicted_bytes']:,}, measured {pg['measured_bytes']:,} ({pg['error']:+.4%})")
        for t in pg.get("decode", []):
            roof = f", roofline {t['roofline_ms']:.3f} ms" if t.get("roofline_ms") else ""
            frac = f" ({t['bandwidth_fraction']:.0%} of peak bandwidth)" if t.get("bandwidth_fraction") else ""
            lines.append(f"    decode read at {t['context_len']:>7,} tokens × batch {t.get('batch', 1)}: "
                         f"{t['ms_per_step']:.3f} ms{roof}{frac}")
    g = report.get("generation")
    if g:
        lines.append(f"  generation: {g['tokens_per_s_cache']:.1f} tok/s with cache, {g['tokens_per_s_no_cache']:.1f} "
                     f"without: {g['speedup']:.2f}× ({g['literature']})")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    lines.append("  PASS" if report["passed"] else "  FAIL: " + "; ".join(report["failures"]))
    return "\n".join(lines)
