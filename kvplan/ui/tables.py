"""Rows for people: human column names, thousand separators, units, no "None" (pure; no streamlit).

Pages pass the raw rows (which the CSV/JSON downloads keep, with their machine keys) and a column
spec; `display_rows` turns them into strings, so a table never shows snake_case, bare byte counts,
`None` or a number too large for the table widget (ints past 2^63 break Arrow; they are text here).
"""

from __future__ import annotations

import math
from typing import Any

from kvplan.units import GiB

# kind -> how a value is written. "gib": bytes shown in GiB (2^30) with 2 decimals.
KINDS = ("text", "int", "gib", "pct", "float", "bool", "ms")
MISSING = "—"
TOO_LARGE = 10**30


def fmt_value(value: Any, kind: str) -> str:
    """One cell as text."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, float) and not math.isfinite(value):
        return MISSING
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "text" or isinstance(value, (str, bool)):
        return str(value)
    if isinstance(value, int) and abs(value) >= TOO_LARGE:
        return "too large"  # 10**400 from a hand-edited report: no float, no 4,300-digit string
    if kind == "int":
        return f"{int(value):,}"
    if kind == "gib":
        return f"{value / GiB:,.2f}"
    if kind == "pct":
        return f"{value:+,.2f} %"
    if kind == "ms":
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def display_rows(rows: list[dict[str, Any]], columns: dict[str, tuple[str, str]]) -> list[dict[str, str]]:
    """`rows` with only the `columns` (key -> (label, kind)), in that order, each cell written by
    `fmt_value`; a column with no value in any row is left out."""
    keep = {k: v for k, v in columns.items() if any(r.get(k) not in (None, "") for r in rows)}
    return [{label: fmt_value(r.get(k), kind) for k, (label, kind) in keep.items()} for r in rows]


def numeric_labels(columns: dict[str, tuple[str, str]]) -> list[str]:
    """Labels of the columns that hold numbers (right-aligned in the table)."""
    return [label for label, kind in columns.values() if kind not in ("text", "bool")]
