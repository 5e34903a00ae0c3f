"""The pure pieces behind the app's pages (kvplan.ui.sweeps / tables / accuracy / charts): what a page
shows is computed here and checked with numbers, so the pages only draw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kvplan
from kvplan.ui import accuracy, plan_chart, sweeps, tables, text

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


def test_capacity_chart_marks_each_gpus_longest_drawn_point():
    """Capacity draws the Plan page's users chart with one marker per GPU: the longest swept context
    where the target fits (a grid point; the page's caption says so), on the target line; 0 users in
    the band."""
    rows = [{"deployment": gpu, "context_len": c, "users": u} for gpu, pts in
            (("H100", [(1024, 430), (32768, 13), (131072, 3), (262144, 0)]), ("H200", [(1024, 800), (131072, 20)]))
            for c, u in pts]
    data, spec = plan_chart.users_vs_context(rows, target_users=10, request_tokens=32768, request_label="your context",
                                             longest={"H100": 32768, "H200": 131072}, title="t",
                                             y_title="concurrent users (whole sequences)")
    marks = [(d["context_len"], d["y"], d["label"]) for d in data if d["kind"] == "longest"]
    assert marks == [(32768, 10, "H100: 10 users fit at 32,768 tokens"),
                     (131072, 10, "H200: 10 users fit at 131,072 tokens")]
    assert [d["label"] for d in data if d["kind"].startswith("request")] == ["your context: 32,768 tokens"]
    assert [d["y"] for d in data if d["kind"] == "line"][3] == plan_chart.FLOOR  # 0 users at 262,144
    assert "whole sequences" in str(spec["layer"])
    one = plan_chart.users_vs_context(rows, longest={"H100": 131072})[0]
    assert [d["label"] for d in one if d["kind"] == "longest"] == ["H100: 1 user fits at 131,072 tokens"]


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
    cpu = json.loads((Path(__file__).resolve().parents[1] / "docs/validation/cpu-llama-3.2-1b.json").read_text())
    assert cpu["paged"]["decode"] and sweeps.decode_rows(cpu, "c") == []  # no roofline on a CPU: no rows
