"""`kvplan explain` as text: the comparison table, the answers, and where the memory went."""

from __future__ import annotations

from kvplan.explain.compare import Explanation, Quantity
from kvplan.units import fmt_auto


def _fmt(q: Quantity, value) -> str:
    if value is None:
        return "-"
    if q.unit == "bytes":
        return fmt_auto(int(value))
    if q.unit == "x":
        return f"{value:.2f}x"
    return f"{int(value):,}"


def text_report(ex: Explanation) -> str:
    """Plain text (log-derived strings are printed as data, never as markup)."""
    out = [f"{ex.engine} {ex.engine_variant} {ex.engine_version or '(version not logged)'}: model {ex.model} "
           f"[{ex.model_source}]"]
    if ex.failure:
        out.append(f"  FAILED: {ex.failure}")
    out.append(f"  fits: {'yes' if ex.fits else 'no' if ex.fits is False else 'unknown'}")
    if ex.quantities:
        out.append(f"  {'quantity':<22} {'where':<14} {'logged':>14} {'kvplan':>14} {'diff':>12}  ok")
        for q in ex.quantities:
            diff = "-" if q.difference is None else (_fmt(q, q.difference) if q.unit != "bytes" else
                                                     f"{q.difference / 2**30:+.3f} GiB")
            ok = {True: "yes", False: "NO", None: "-"}[q.within_precision]
            out.append(f"  {q.name:<22} {(q.rank or q.cache or '')[:14]:<14} {q.printed:>14} {_fmt(q, q.predicted):>14} "
                       f"{diff:>12}  {ok}")
        moved = [q for q in ex.quantities if q.within_precision is False and q.rule]
        for q in moved:
            out.append(f"  {q.name} differs: moved by {q.rule}")
    if ex.context_limit:
        out.append(f"  context: {ex.context_limit}")
    for alt in ex.more_users:
        extra = ", ".join(f"{k} {v}" for k, v in alt.items() if k != "flag")
        out.append(f"  more users: {alt['flag']}: {extra}")
    for m in ex.memory:
        logged = "-" if m["logged_bytes"] is None else fmt_auto(m["logged_bytes"])
        pred = "-" if m["predicted_bytes"] is None else fmt_auto(m["predicted_bytes"])
        out.append(f"  memory: {m['part']:<32} logged {logged:>12}  kvplan {pred:>12}")
    for note in ex.notes:
        out.append(f"  note: {note}")
    return "\n".join(out)
