"""What the Accuracy page shows, computed here (pure; no streamlit): kvplan against the golden engine
logs, a per-device summary of validate measurements, and the engine versions kvplan models.

The engine-log comparison is `kvplan.explain.accuracy.golden_records()` (kvplan explain run over every
golden row in tests/golden, each with its public URL) when this build has it; without it the logged
values are listed with no prediction and a note says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvplan.paths import bundled
from kvplan.ui.sweeps import Table

GOLDEN = bundled("golden", "tests/golden") / "engine_logs.json"
# Quantity names (explain's) in words; "_bytes" quantities are shown in GiB.
QUANTITY_WORDS = {"kv_budget_bytes": "KV budget", "kv_tokens": "KV tokens", "num_blocks": "blocks",
                  "max_concurrency": "max concurrency", "kv_bytes": "KV cache size", "k_bytes": "K size",
                  "v_bytes": "V size", "cells": "cells", "weights_bytes": "weights"}


def fmt_quantity(name: str, value: Any) -> str:
    """A logged or predicted quantity for display: bytes in GiB, counts with separators."""
    if value is None or isinstance(value, bool):
        return "—"
    if not isinstance(value, (int, float)) or abs(value) >= 1e30:
        return str(value)[:40]
    if name.endswith("_bytes"):
        return f"{value / 2**30:,.3f} GiB"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _url(source: Any) -> str | None:
    """A source that is a public URL (the rows cite one each; a row that cannot gets no link)."""
    return source if isinstance(source, str) and source.startswith("https://") else None


def golden_log_rows(golden: Path = GOLDEN) -> Table:
    """One row per logged quantity of the golden engine logs: engine, model as logged, quantity,
    logged, kvplan's prediction, the error in percent, whether it is within the log's printing
    precision, and the source URL."""
    out = Table()
    if not golden.is_file():  # an installed wheel carries no tests/: say so instead of failing
        out.errors.append("The golden engine logs (tests/golden in kvplan's repository) are not part of this "
                          "install; run the app from a checkout to see them.")
        return out
    try:
        from kvplan.explain.accuracy import GOLDEN_FILES, golden_records
    except ImportError:
        golden_records, GOLDEN_FILES = None, (golden.name,)
    logs = {r["id"]: r for name in GOLDEN_FILES if (golden.parent / name).is_file()
            for r in json.loads((golden.parent / name).read_text(encoding="utf-8"))}
    if golden_records is None:
        out.errors.append("This build has no `kvplan explain`: the logged values are listed without kvplan's "
                          "predictions.")
        for row in json.loads(golden.read_text(encoding="utf-8")):
            for name, value in (row.get("expected") or {}).items():
                out.rows.append({"id": row["id"], "engine": row["engine"], "model": row.get("model") or "?",
                                 "quantity": QUANTITY_WORDS.get(name, name.replace("_", " ")),
                                 "logged": fmt_quantity(name, value), "predicted": None, "error_pct": None,
                                 "within": None, "url": _url(row.get("source"))})
        return out
    for rec in golden_records(golden.parent):
        row = logs.get(rec["id"], {})
        model = row.get("model") or "?"
        if "error" in rec:
            out.errors.append(f"{rec['id']} ({rec.get('engine', '?')}, {model}): {rec['error']}")
            continue
        name = rec["name"]
        rel = rec.get("rel_error")
        where = f" ({rec['where']})" if rec.get("where") else ""
        out.rows.append({"id": rec["id"], "engine": rec["engine"], "model": model,
                         "quantity": QUANTITY_WORDS.get(name, name.replace("_", " ")) + where,
                         "logged": fmt_quantity(name, rec["logged"]),
                         "predicted": fmt_quantity(name, rec["predicted"]),
                         "error_pct": None if rel is None else 100 * rel,
                         "within": rec.get("within_precision"), "url": _url(rec.get("url") or row.get("source"))})
    return out


def validation_summary(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per device label: how many measurements, of which models, up to which context, worst |error|."""
    out: dict[str, str] = {}
    for device in dict.fromkeys(r["device"] for r in rows):
        rs = [r for r in rows if r["device"] == device]
        errs = [abs(r["error_pct"]) for r in rs if r["error_pct"] is not None]
        models = sorted({r["model"] for r in rs})
        worst = f"worst |error| {max(errs):.2f} %" if errs else "no error computed"
        out[device] = (f"{len(rs):,} measurement{'s' if len(rs) != 1 else ''} of {', '.join(models)} up to "
                       f"{max(r['context_len'] for r in rs):,} tokens; {worst}")
    return out


def version_rows() -> Table:
    """One row per engine: the version modelled by default, the oldest, the versions where a rule
    changes, and how many rules (from `kvplan.engines.engine_versions`)."""
    out = Table()
    try:
        from kvplan.engines import engine_versions
    except ImportError:
        return out
    for name, v in engine_versions().items():
        out.rows.append({"engine": name, "default": v.get("default") or "—", "oldest": v.get("oldest") or "—",
                         "versions": ", ".join(v.get("versions") or []) or "—", "rules": len(v.get("rules") or [])})
    return out


def rule_rows() -> list[dict[str, str]]:
    """Every version rule (engine, since, what, source) for display."""
    try:
        from kvplan.engines import engine_versions
    except ImportError:
        return []
    return [{"Engine": name, "Since": str(r.get("since", "")), "What changes": str(r.get("what", "")),
             "Source": str(r.get("source", ""))}
            for name, v in engine_versions().items() for r in v.get("rules") or []]


def summary_rows() -> list[dict[str, Any]]:
    """kvplan explain's published table per engine × attention kind (kvplan/accuracy.json, written by
    benchmarks/accuracy.py), or [] when this build does not have it."""
    try:
        from kvplan.explain.accuracy import accuracy_frames, accuracy_table
        return list(accuracy_frames(accuracy_table())["golden"])
    except (ImportError, OSError, ValueError, KeyError):
        return []
