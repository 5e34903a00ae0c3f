"""Accuracy: kvplan against real engine logs (the golden rows it is tested on), kvplan validate
measurements with their true device, and the engine versions whose rules kvplan models."""

import json

import streamlit as st

from kvplan.errors import KvplanError
from kvplan.paths import bundled
from kvplan.registry import parse_json
from kvplan.ui import accuracy, cached, sweeps, text, widgets

REPORTS = bundled("validation", "docs/validation")
MAX_REPORT_MB = 8
LOG_COLUMNS = {"engine": ("Engine", "text"), "model": ("Model (as logged)", "text"),
               "quantity": ("Quantity", "text"), "logged": ("Logged", "text"), "predicted": ("kvplan", "text"),
               "error_pct": ("Error", "pct"), "within": ("Within the log's precision", "bool"),
               "url": ("Source", "text")}
SUMMARY_COLUMNS = {"engine": ("Engine", "text"), "attention": ("Attention", "text"), "logged": ("Logged", "int"),
                   "predicted": ("kvplan predicts", "int"), "within": ("Within precision", "int"),
                   "within_pct": ("Within precision (%)", "float")}
VAL_COLUMNS = {"report": ("Report", "text"), "model": ("Model", "text"), "device": ("Measured on", "text"),
               "engine": ("Profile", "text"), "context_len": ("Context (tokens)", "int"),
               "batch": ("Sequences", "int"), "predicted_bytes": ("Predicted (GiB)", "gib"),
               "measured_bytes": ("Measured (GiB)", "gib"), "error_pct": ("Error", "pct")}
DECODE_COLUMNS = {"model": ("Model", "text"), "device": ("Measured on", "text"),
                  "context_len": ("Context (tokens)", "int"), "batch": ("Sequences", "int"),
                  "us_per_step": ("Measured (µs per step)", "int"), "roofline_us": ("Roofline (µs)", "int"),
                  "peak_pct": ("Share of peak bandwidth (%)", "float")}
GENERATION_COLUMNS = {"model": ("Model", "text"), "device": ("Measured on", "text"),
                      "prompt_len": ("Prompt (tokens)", "int"), "new_tokens": ("Generated (tokens)", "int"),
                      "tokens_per_s_cache": ("With the cache (tokens/s)", "float"),
                      "tokens_per_s_no_cache": ("Without (tokens/s)", "float"), "speedup": ("Speed-up (×)", "float")}
VERSION_COLUMNS = {"engine": ("Engine", "text"), "default": ("Modelled by default", "text"),
                   "oldest": ("Oldest modelled", "text"), "versions": ("Versions where a rule changes", "text"),
                   "rules": ("Rules", "int")}
RULE_COLUMNS = {"engine": ("Engine", "text"), "since": ("Since", "text"), "what": ("What changes", "text"),
                "source": ("Source", "text")}


@st.cache_data(show_spinner=False)
def _committed(mtimes: tuple[tuple[str, float], ...]) -> list[tuple[str, object]]:
    out = []
    for name, _ in mtimes:
        try:
            out.append((name, json.loads((REPORTS / name).read_text(encoding="utf-8"))))
        except (OSError, ValueError) as err:
            out.append((name, f"cannot read: {err}"))
    return out


@st.cache_data(show_spinner="Comparing kvplan with the engine logs…", max_entries=2)
def _golden() -> accuracy.Table:
    return accuracy.golden_log_rows()


def body() -> None:
    st.title("Accuracy")
    st.markdown("How close kvplan is to what engines really allocate: **engine logs** from public issues "
                "(the rows kvplan's tests check), **measurements** taken with `kvplan validate`, and the "
                "**engine versions** whose rules kvplan models.")
    _engine_logs()
    _measurements()
    _versions()


def _engine_logs() -> None:
    st.header("Engine logs")
    logs = _golden()
    if logs.rows:
        within = sum(1 for r in logs.rows if r["within"])
        predicted = sum(1 for r in logs.rows if r["predicted"] not in (None, "", "—"))
        c = st.columns(3)
        c[0].metric("Public logs", len({r["id"] for r in logs.rows}))
        c[1].metric("Logged quantities kvplan predicts", f"{predicted:,} of {len(logs.rows):,}")
        c[2].metric("Within the log's printing precision", f"{within:,}")
    summary = accuracy.summary_rows()
    if summary:
        st.caption("Per engine and attention kind: the logged quantities, those kvplan predicts, and those it "
                   "reproduces within the log's printing precision.")
        widgets.table(summary, "accuracy_summary", SUMMARY_COLUMNS)
    if logs.rows:
        st.caption("Each row is one number an engine printed at startup (KV budget, blocks, tokens, cache "
                   "size) against kvplan's prediction with the same settings; the source link is the public "
                   "issue or repository the log was pasted in.")
        shown = [{**r, "url": r["url"]} for r in logs.rows]
        st.dataframe(_with_links(shown), hide_index=True,
                     column_config={"Source": st.column_config.LinkColumn("Source", display_text="log"),
                                    **{label: st.column_config.TextColumn(label, alignment="right")
                                       for label in ("Logged", "kvplan", "Error")}})
    widgets.show_errors(logs.errors)


def _with_links(rows: list[dict]) -> list[dict]:
    from kvplan.ui import tables
    out = tables.display_rows(rows, LOG_COLUMNS)
    for shown, raw in zip(out, rows):
        if "Source" in shown:
            shown["Source"] = raw["url"]
    return out


def _measurements() -> None:
    st.header("Measured with kvplan validate")
    st.markdown("Reports from `kvplan validate MODEL --context N,... --out report.json`: the KV cache kvplan "
                "predicts against what torch measured. A **CPU** run measures the cache tensors' bytes (the "
                "layout kvplan predicts), not a GPU allocator; a **GPU** run measures allocated memory too.")
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
    rows, errors, decode, generation, software = [], [], [], [], {}
    for name, report in reports:
        if isinstance(report, str):
            errors.append(f"{name}: {report}")
            continue
        t = sweeps.validation_rows(report, name)
        rows += t.rows
        errors += t.errors
        decode += sweeps.decode_rows(report, name)
        generation += sweeps.generation_rows(report, name)
        env = sweeps.environment_label(report)
        if t.rows and env:
            software.setdefault(sweeps.device_label(report), set()).add(env)
    widgets.show_errors(errors)
    if not rows:
        return
    for device, summary in accuracy.validation_summary(rows).items():
        text.caption(f"{device}: {summary}" + "".join(f"; {s}" for s in sorted(software.get(device, ()))))
    st.plotly_chart(cached.chart("validation_chart", rows, title="predicted vs measured KV cache"), key="val_chart")
    widgets.table(rows, "validation", VAL_COLUMNS)
    if decode:
        st.subheader("Decode reads against the bandwidth roofline (GPU runs)")
        st.caption("One decode step's attention over the paged cache (vLLM's layout), every attention layer, "
                   "against the time to read each cached byte once at the GPU's datasheet bandwidth, timed "
                   "with torch's SDPA. Small reads are bound by kernel launches, so the share of peak grows "
                   "with the batch; reads with one KV head (MQA, MLA's latent) run on few thread blocks there "
                   "and stay far below it (a paged decode kernel such as FlashMLA splits the sequence).")
        widgets.table(decode, "decode_reads", DECODE_COLUMNS)
    if generation:
        st.subheader("Generation with and without the cache")
        st.caption("Greedy `generate` tokens/s with the KV cache and with `use_cache=False` (the prefix "
                   "recomputed every step). The KV-cache literature quotes 3.5–4.1× for 1.5B–13B models; at "
                   "batch 1 on a fast GPU both runs are bound by per-token overhead, so the gap is small.")
        widgets.table(generation, "generation", GENERATION_COLUMNS)


def _versions() -> None:
    st.header("Engine versions modelled")
    versions = accuracy.version_rows()
    if not versions.rows:
        st.info("This build does not list engine versions.")
        return
    st.caption("kvplan models each engine's newest behaviour by default; rules that changed between versions "
               "are kept, each with its source, and chosen with the engine version (`--engine-version`, "
               "`vllm@0.19`).")
    widgets.table(versions.rows, "engine_versions", VERSION_COLUMNS)
    with st.expander("Every version rule, with its source"):
        shown = accuracy.rule_rows()
        st.dataframe(shown, hide_index=True, column_config={"Source": st.column_config.TextColumn("Source")})


widgets.run_page(body)
