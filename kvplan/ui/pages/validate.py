"""Validate: committed measurement reports (docs/validation/*.json) and uploaded `kvplan validate` reports."""

import json
from pathlib import Path

import streamlit as st

from kvplan.errors import KvplanError
from kvplan.registry import parse_json
from kvplan.ui import charts, sweeps, text, widgets

REPORTS = Path(__file__).resolve().parents[3] / "docs" / "validation"
MAX_REPORT_MB = 8


@st.cache_data(show_spinner=False)
def _committed(mtimes: tuple[tuple[str, float], ...]) -> list[tuple[str, object]]:
    out = []
    for name, _ in mtimes:
        try:
            out.append((name, json.loads((REPORTS / name).read_text(encoding="utf-8"))))
        except (OSError, ValueError) as err:
            out.append((name, f"cannot read: {err}"))
    return out


def body() -> None:
    st.title("Validate: predicted vs measured")
    st.markdown("Reports from `kvplan validate MODEL --context N,... --out report.json`, run on a real GPU: "
                "the KV cache kvplan predicts against what torch measured (allocated bytes).")
    files = tuple(sorted((p.name, p.stat().st_mtime) for p in REPORTS.glob("*.json"))) if REPORTS.is_dir() else ()
    reports = _committed(files)
    up = st.file_uploader("Add a report (JSON)", type=["json"], key="val_upload", max_upload_size=MAX_REPORT_MB)
    if up is not None:
        try:
            reports = [*reports, (f"uploaded: {up.name}", parse_json(up.getvalue()))]
        except KvplanError as err:
            text.error(f"{up.name}: {err}")
    if not reports:
        st.info("No committed reports in docs/validation/ yet. Run `kvplan validate` on a GPU box and "
                "upload its JSON here.")
        return
    rows, errors = [], []
    for name, report in reports:
        if isinstance(report, str):
            errors.append(f"{name}: {report}")
            continue
        t = sweeps.validation_rows(report, name)
        rows += t.rows
        errors += t.errors
    widgets.show_errors(errors)
    if not rows:
        return
    worst = max((abs(r["error_pct"]) for r in rows if r["error_pct"] is not None), default=None)
    c = st.columns(3)
    c[0].metric("Reports", len({r["report"] for r in rows}))
    c[1].metric("Measurements", len(rows))
    c[2].metric("Worst |error|", "—" if worst is None else f"{worst:.2f} %")
    st.plotly_chart(charts.validation_chart(rows, title="predicted vs measured KV cache"), key="val_chart")
    widgets.table(rows, "validation", gib=("predicted_bytes", "measured_bytes"))


widgets.run_page(body)
