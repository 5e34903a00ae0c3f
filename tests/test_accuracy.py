"""The published accuracy table (kvplan/accuracy.json, written by benchmarks/accuracy.py) against the
golden rows: CI fails when a golden quantity that was within printing precision no longer is, and when
the stored table, README and docs no longer match what the script writes."""

from __future__ import annotations

from pathlib import Path

from kvplan.explain.accuracy import accuracy_frames, accuracy_markdown, accuracy_table, golden_records, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_no_golden_row_regresses():
    table = accuracy_table()
    now = {f"{r['id']}|{r['name']}|{r['where'] or ''}" for r in golden_records() if r.get("within_precision")}
    lost = sorted(set(table["golden_within"]) - now)
    assert not lost, f"golden quantities no longer within printing precision: {lost}"
    gained = sorted(now - set(table["golden_within"]))
    assert not gained, f"newly reproduced: run `python benchmarks/accuracy.py` to publish {gained}"


def test_golden_rows_carry_urls_and_every_case_explains():
    recs = golden_records()
    assert not [r for r in recs if "error" in r], [r["error"] for r in recs if "error" in r]
    assert all(r["url"].startswith("https://") for r in recs)
    engines = {r["engine"] for r in recs}
    assert engines == {"vllm", "sglang", "llama.cpp", "trtllm", "tgi"}
    cells = summarize(recs)["by_engine_attention"]
    assert {c["attention"] for c in cells} >= {"dense", "sliding", "mla", "hybrid"}


def test_readme_and_docs_show_the_stored_table():
    table = accuracy_table()
    md = accuracy_markdown(table)
    assert f"kvplan {table['kvplan_version']}, generated {table['generated']}" in md
    assert md in (ROOT / "README.md").read_text()
    assert md in (ROOT / "docs" / "accuracy.md").read_text()


def test_frames_for_the_app_page():
    """accuracy_frames: what the app's Accuracy page draws, computed here (pages only draw)."""
    f = accuracy_frames(accuracy_table())
    assert f["meta"]["kvplan_version"] and f["meta"]["generated"]
    assert {r["engine"] for r in f["golden"]} >= {"vllm", "sglang", "llama.cpp", "trtllm"}
    for r in f["golden"] + f["golden_quantities"]:
        assert r["within"] <= r["predicted"]
        assert r["within_pct"] is None or 0 <= r["within_pct"] <= 100
    if f["comparison"]:  # present when the table was generated with the llm-d campaign logs
        assert [r["quantity"] for r in f["comparison"]] == ["weights", "KV cache memory", "max concurrency"]
        assert all(r["llmd_planner_n"] == 52 for r in f["comparison"])
