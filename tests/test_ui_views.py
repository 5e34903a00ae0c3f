"""The pure pieces behind the app's pages (kvplan.ui.sweeps / tables / accuracy / charts): what a page
shows is computed here and checked with numbers, so the pages only draw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kvplan
from kvplan.ui import accuracy, charts, sweeps, tables, text

LLAMA_8B = "meta-llama/Llama-3.1-8B"


@pytest.fixture(scope="module")
def llama():
    return kvplan.load_model(LLAMA_8B)


def test_tp_choices_divide_the_heads(llama):
    # 32 attention heads, 8 KV heads: 16 and 32 replicate KV heads (engines allow it); 64 does not divide 32.
    assert sweeps.tp_choices(llama) == [1, 2, 4, 8, 16, 32]
    assert sweeps.tp_choices(llama, max_tp=8) == [1, 2, 4, 8]
    # DeepSeek-V3: MLA, 128 heads -> every power of two up to 64
    assert sweeps.tp_choices(kvplan.load_model("deepseek-ai/DeepSeek-V3")) == [1, 2, 4, 8, 16, 32, 64]


def test_kv_dtypes_per_engine():
    assert "q8_0" in sweeps.kv_dtype_choices("llama.cpp") and "fp8" not in sweeps.kv_dtype_choices("llama.cpp")
    assert "fp8" in sweeps.kv_dtype_choices("vllm") and "q8_0" not in sweeps.kv_dtype_choices("vllm")
    assert sweeps.kv_dtype_choices("vllm@0.19")[0] == "auto"


def test_layout_llamacpp_splits_layers():
    assert sweeps.layout("vllm", 4) == {"tp": 4, "pp": 1}
    assert sweeps.layout("llama.cpp", 4) == {"tp": 1, "pp": 4}
    assert sweeps.layout("llama.cpp@b5000", 2) == {"tp": 1, "pp": 2}


def test_context_beyond_the_model_maximum(llama):
    assert sweeps.context_limit(llama, 8192, engine="vllm", allow_beyond=False) == (8192, None)
    ctx, warn = sweeps.context_limit(llama, 1 << 20, engine="vllm", allow_beyond=False)
    assert ctx == 131072 and "131,072" in warn and "VLLM_ALLOW_LONG_MAX_MODEL_LEN" in warn
    ctx, warn = sweeps.context_limit(llama, 1 << 20, engine="sglang", allow_beyond=True)
    assert ctx == 1 << 20 and "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN" in warn


def test_identical_engine_lines_are_merged(llama):
    rows = sweeps.size_lines(llama, [1000, 4000], engines=["sglang", "naive", "llama.cpp"], kv_dtypes=["auto"]).rows
    merged = sweeps.merge_identical_series(rows)
    names = {r["series"] for r in merged}
    # Llama-3.1-8B bf16: SGLang's token pool and the textbook formula agree to the byte; llama.cpp pads
    # n_ctx to 256 cells (1000 -> 1024), so its line stays its own.
    assert names == {"sglang · bf16 = naive · bf16", "llama.cpp · fp16"} and len(merged) == len(rows) - 2


def test_size_lines_follow_the_batch_and_skip_unstorable_dtypes(llama):
    one = sweeps.size_lines(llama, [32768], engines=["vllm"], kv_dtypes=["auto"]).rows[0]["kv_bytes"]
    four = sweeps.size_lines(llama, [32768], engines=["vllm"], kv_dtypes=["auto"], batch=4).rows[0]["kv_bytes"]
    assert one == 4 * 2**30 and four == 4 * one  # the chart agrees with the batch metric
    t = sweeps.size_lines(llama, [1024], engines=["vllm", "llama.cpp"], kv_dtypes=["q8_0"])
    assert {r["engine"] for r in t.rows} == {"llama.cpp"} and not t.errors


def test_users_vs_context_counts_whole_users(llama):
    t = sweeps.users_vs_context(llama, [32768, 1 << 20], gpus={"H100": {"gpu": "H100-SXM"}}, engine="vllm",
                                max_position_embeddings=None) if False else \
        sweeps.users_vs_context(llama, [32768, 131072], gpus={"H100": {"gpu": "H100-SXM"}}, engine="vllm")
    at32k = t.rows[0]
    p = kvplan.plan(llama, gpu="H100-SXM", max_model_len=32768)
    assert isinstance(at32k["users"], int) and at32k["users"] == p.total_sequences == int(p.max_concurrency)
    assert sweeps.longest_fitting(t.rows) == {"H100": 131072}
    assert sweeps.longest_fitting(t.rows, users=at32k["users"]) == {"H100": 32768}
    # 70B on one H100: the weights alone overflow, every context is 0 users (drawn in the band)
    big = sweeps.users_vs_context(kvplan.load_model("meta-llama/Llama-3.1-70B"), [1024, 8192],
                                  gpus={"H100": {"gpu": "H100-SXM"}}, engine="vllm")
    assert [r["users"] for r in big.rows] == [0, 0] and not big.errors
    assert sweeps.longest_fitting(big.rows) == {}


def test_compare_uses_the_smallest_fitting_tp_and_one_memory_fraction():
    arch = kvplan.load_model("meta-llama/Llama-3.1-70B")
    t = sweeps.compare_models([arch], context_len=8192, engines=["vllm", "llama.cpp"], kv_dtype="auto",
                              gpu_label="H100-SXM", gpu="H100-SXM", gpu_memory_bytes=None, fraction=0.9)
    by = {r["engine"]: r for r in t.rows}
    # 131 GiB of bf16 weights: at TP 2 and 0.9 of each H100, vLLM keeps 0.73 GiB for KV, less than one
    # 8k request (1.25 GiB per GPU); TP 4 is the smallest that fits.
    two = kvplan.plan(arch, gpu="H100-SXM", max_model_len=8192, tp=2, num_gpus=2, gpu_memory_utilization=0.9)
    assert two.max_sequences == 0 and by["vllm"]["tp"] == 4 and by["vllm"]["users"] > 0
    n = by["llama.cpp"]["tp"]  # llama.cpp splits layers over n GPUs of 0.9 × 80 GB each
    assert n in (2, 4, 8) and by["llama.cpp"]["users"] > 0
    half = kvplan.plan(arch, gpu_memory=int(kvplan.gpus.get_gpu("H100-SXM").memory_bytes * 0.9), max_model_len=8192,
                       engine="llama.cpp", pp=n // 2, num_gpus=n // 2)
    assert half.max_sequences == 0
    gpu = kvplan.gpus.get_gpu("H100-SXM")
    assert sweeps.same_fraction_gpu("llama.cpp", gpu="H100-SXM", gpu_memory=None, gpu_memory_bytes=gpu.memory_bytes,
                                    fraction=0.9) == {"gpu_memory": int(gpu.memory_bytes * 0.9)}
    assert sweeps.same_fraction_gpu("vllm", gpu="H100-SXM", gpu_memory=None, gpu_memory_bytes=None,
                                    fraction=0.8) == {"gpu": "H100-SXM", "gpu_memory_utilization": 0.8}


def test_tables_are_readable():
    rows = [{"engine": "vllm", "kv_bytes": 4 * 2**30, "tokens": 436656, "note": None, "huge": 10**400,
             "fits": True, "empty": None}]
    cols = {"engine": ("Engine", "text"), "kv_bytes": ("KV (GiB)", "gib"), "tokens": ("Tokens", "int"),
            "note": ("Note", "text"), "huge": ("Bytes", "int"), "fits": ("Fits", "bool"), "empty": ("Empty", "int")}
    shown = tables.display_rows(rows, cols)
    assert shown == [{"Engine": "vllm", "KV (GiB)": "4.00", "Tokens": "436,656", "Bytes": "too large",
                      "Fits": "yes"}]  # all-empty columns (Note, Empty) are dropped
    two = tables.display_rows([*rows, {**rows[0], "note": "x"}], cols)
    assert two[0]["Note"] == "—" and two[1]["Note"] == "x"  # a missing value is a dash, never "None"
    assert tables.numeric_labels(cols) == ["KV (GiB)", "Tokens", "Bytes", "Empty"]


def test_validation_rows_reject_absurd_numbers_and_name_the_device():
    report = {"model": 10**5000, "engine": "transformers", "device": "cpu", "device_name": "x86_64",
              "results": [{"context_len": 128, "predicted_bytes": 10**400, "measured_bytes": 1},
                          {"context_len": 128, "predicted_bytes": 1024, "measured_bytes": 1000}]}
    t = sweeps.validation_rows(report, "r")
    assert len(t.rows) == 1 and t.rows[0]["device"] == "CPU (x86_64)" and t.rows[0]["model"] == "?"
    assert "results[0]" in t.errors[0] and "2^62" in t.errors[0]
    assert sweeps.device_label({"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}) == "NVIDIA H100 80GB HBM3"
    summary = accuracy.validation_summary(t.rows)
    assert summary == {"CPU (x86_64)": "1 measurement of ? up to 128 tokens; worst |error| 2.40 %"}


def test_committed_reports_say_where_they_ran():
    from pathlib import Path
    paths = sorted((Path(__file__).resolve().parents[1] / "docs" / "validation").glob("*.json"))
    assert {p.name.split("-")[0] for p in paths} == {"cpu", "cuda"}
    for path in paths:
        rows = sweeps.validation_rows(json.loads(path.read_text()), path.name).rows
        label = "CPU" if path.name.startswith("cpu-") else "NVIDIA H200"
        assert rows and all(r["device"].startswith(label) for r in rows), path.name


def test_golden_log_rows_have_a_source_each():
    t = accuracy.golden_log_rows()
    logs = [r for f in accuracy.GOLDEN.parent.glob("*.json") for r in json.loads(f.read_text())
            if isinstance(r, dict) and "id" in r]
    assert {r["id"] for r in t.rows} <= {r["id"] for r in logs}
    assert len({r["id"] for r in t.rows}) >= 30
    sources = {r["id"]: r["source"] for r in logs}
    assert all(r["url"] == sources[r["id"]] if sources[r["id"]].startswith("https://") else r["url"] is None
               for r in t.rows)  # a row whose source is not a URL gets no link
    vllm = [r for r in t.rows if r["id"] == "vllm-qwen3-235b-a22b-fp8-tp4-h100" and r["quantity"].startswith("KV tokens")]
    assert vllm and vllm[0]["logged"] == "178,880" and not t.errors, t.errors


def test_engine_versions_are_listed():
    rows = {r["engine"]: r for r in accuracy.version_rows().rows}
    if not rows:
        pytest.skip("this build has no engine version tables")
    assert rows["vllm"]["default"] == kvplan.engines.engine_versions("vllm")["default"]
    assert rows["vllm"]["rules"] >= 1 and any(r["Engine"] == "vllm" and r["Source"] for r in accuracy.rule_rows())


def test_words_and_numbers():
    assert text.plural(1, "user") == "1 user" and text.plural(2, "user") == "2 users"
    assert text.plural(1000, "user") == "1,000 users"
    assert text.sci(7.6e15) == "7.6 × 10¹⁵" and text.sci(512) == "512"
    assert accuracy.fmt_quantity("kv_budget_bytes", 8.11 * 2**30) == "8.110 GiB"
    assert accuracy.fmt_quantity("kv_tokens", 178880) == "178,880"


def test_users_chart_reads_in_whole_users():
    rows = [{"gpu": "H100", "context_len": c, "users": u, "users_per_gpu": float(u)}
            for c, u in [(1024, 430), (32768, 13), (131072, 3), (262144, 0)]]
    fig = charts.users_lines(rows, title="t", target_users=20, longest={"H100": 131072})
    y = fig.layout.yaxis
    assert y.type == "log" and list(y.ticktext) == ["1", "2", "5", "10", "20", "50", "100", "200", "500"]
    assert fig.data[0].y[-1] == 0.5 and list(fig.data[0].customdata) == [430, 13, 3, 0]  # 0 drawn in the band
    shapes = fig.layout.shapes
    assert any(s.type == "rect" and s.y1 == 1 for s in shapes)  # shaded "does not fit"
    assert any(s.type == "line" and s.y0 == 20 for s in shapes)  # the target users
    assert fig.data[1].x == (131072,)  # the marker at the longest context that fits


def test_users_chart_as_one_dict_is_the_figure_plotly_helpers_build():
    """charts.users_lines builds its figure as one dict (fast); the same figure built with plotly's
    helpers (add_hrect / add_hline / add_vline / update_*), as it was, must come out identical."""
    import math

    import plotly.graph_objects as go

    rows = [{"gpu": g, "context_len": c, "users": u} for g in ("H100-SXM", "<b>H200</b>")
            for c, u in [(1024, 430), (2048, 300), (32768, 13), (131072, 3), (262144, 0)]]
    for kw in (dict(target_users=20, longest={"H100-SXM": 131072}, mark_context=32768), dict(target_users=0),
               dict(target_users=1, mark_context=2048, longest={"<b>H200</b>": 2048})):
        fig = go.Figure()
        top = max([r["users"] for r in rows] + [kw["target_users"], 2])
        for gpu in ("H100-SXM", "<b>H200</b>"):
            rs = [r for r in rows if r["gpu"] == gpu]
            fig.add_trace(go.Scatter(x=[r["context_len"] for r in rs], y=[r["users"] or 0.5 for r in rs],
                                     customdata=[r["users"] for r in rs], name=text.plot_text(gpu), mode="lines",
                                     line_shape="hv", hovertemplate="%{customdata:,} users at %{x:,} tokens"))
            at = kw.get("longest", {}).get(gpu)
            if at:
                fig.add_trace(go.Scatter(x=[at], y=[next(r["users"] for r in rs if r["context_len"] == at)],
                                         mode="markers+text", showlegend=False, marker=dict(size=10, symbol="diamond"),
                                         text=[f"{at:,} tokens"], textposition="top left",
                                         hovertemplate="longest that fits: %{x:,} tokens"))
        fig.update_layout(title=dict(text="t &lt;", y=0.98, yanchor="top"), margin=dict(l=10, r=10, t=40, b=10),
                          height=440, legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
                          hovermode="x unified", template="plotly_white")
        fig.update_xaxes(title="context per user (tokens)", type="log")
        fig.update_yaxes(title="concurrent users (whole sequences)", rangemode="tozero")
        vals, labels = charts._count_ticks(top)
        fig.update_yaxes(type="log", tickvals=vals, ticktext=labels, range=[math.log10(0.35), math.log10(top * 1.6)],
                         rangemode="normal")
        fig.add_hrect(y0=0.35, y1=1, fillcolor="#d62728", opacity=0.08, line_width=0)
        fig.add_annotation(x=0.01, xref="paper", y=math.log10(0.6), yref="y", text="does not fit", showarrow=False,
                           xanchor="left", font=dict(color="#d62728"))
        fig.add_hline(y=1, line_color="#d62728", line_width=1)
        if kw["target_users"]:
            fig.add_hline(y=kw["target_users"], line_dash="dash", line_color="#2ca02c")
            fig.add_annotation(x=0.01, xref="paper", y=math.log10(kw["target_users"]), yref="y", yanchor="bottom",
                               xanchor="left", showarrow=False, font=dict(color="#2ca02c"),
                               text=f"target: {charts.text_users(kw['target_users'])}")
        charts._context_ticks(fig, sorted({r["context_len"] for r in rows}))
        if kw.get("mark_context"):
            fig.add_vline(x=kw["mark_context"], line_dash="dot", line_color="#888")
        got = charts.users_lines(rows, title="t <", **kw)
        assert json.dumps(got.to_plotly_json(), sort_keys=True) == json.dumps(fig.to_plotly_json(), sort_keys=True)


def test_negative_budget_gets_advice_that_can_help():
    p = kvplan.plan("meta-llama/Llama-3.1-70B", gpu="H100-SXM", max_model_len=8192)
    assert p.kv_budget_bytes < 0
    with pytest.raises(kvplan.DoesNotFitError) as err:
        p.check()
    msg = str(err.value)
    assert "no context length fits" in msg and "decreas" not in msg and "more GPUs" in msg


def test_golden_rows_without_the_repository(tmp_path):
    t = accuracy.golden_log_rows(tmp_path / "engine_logs.json")
    assert not t.rows and "not part of this install" in t.errors[0]


def test_gpu_report_rows_from_the_committed_h200_run():
    """The Accuracy page's decode and generation tables read the committed H200 reports
    (docs/validation/cuda-*.json, from scripts/gpu_validate.sh) and survive hand-edited numbers."""
    import json

    from kvplan.ui import sweeps

    report = json.loads((Path(__file__).resolve().parents[1] / "docs/validation/cuda-llama-3.2-1b.json").read_text())
    assert sweeps.device_label(report) == "NVIDIA H200"
    env = sweeps.environment_label(report)
    assert env.startswith("driver 580.") and "CUDA 13.0" in env and "transformers 5.24.0" in env
    rows = sweeps.decode_rows(report, "r")
    assert {(r["context_len"], r["batch"]) for r in rows} >= {(1024, 1), (32768, 1), (1024, 32)}
    for r, d in zip(rows, report["paged"]["decode"]):
        assert r["us_per_step"] == round(1000 * d["ms_per_step"]) and 0 < r["peak_pct"] <= 100
    (g,) = sweeps.generation_rows(report, "r")
    assert g["speedup"] == report["generation"]["tokens_per_s_cache"] / report["generation"]["tokens_per_s_no_cache"]
    bad = {"model": "x", "device": "cuda", "generation": {"tokens_per_s_cache": 1e999, "tokens_per_s_no_cache": 0},
           "paged": {"decode": [{"context_len": 10**400, "ms_per_step": 1}, {"context_len": 8, "ms_per_step": "nan"},
                                {"context_len": 8, "ms_per_step": 2.0, "roofline_ms": True}, "junk"]}}
    assert sweeps.generation_rows(bad, "b") == []
    kept = [(r["context_len"], r["roofline_us"], r["peak_pct"]) for r in sweeps.decode_rows(bad, "b")]
    assert kept == [(8, None, None)]
