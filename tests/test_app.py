"""AppTest: every page renders by default, reacts to each main input, and shows bad input inline.

`not at.exception` is asserted after every run: no traceback ever reaches the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = "kvplan/ui/pages"
TIMEOUT = 60


def _app(page: str = "size", **params: str) -> AppTest:
    """The app opened with `params` in the URL, on `page` (Plan is the landing page; the sidebar
    tests below are Size's, so that is the default here)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    if page != "plan":
        at.switch_page(f"{PAGES}/{page}.py").run()
    return at


def _page(name: str, **params: str) -> AppTest:
    at = _app(name, **params)
    assert not at.exception
    return at


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    return at


def _charts(at: AppTest) -> int:
    return len(at.get("plotly_chart")) + len(at.get("vega_lite_chart"))


def _capacity_drawn(at: AppTest) -> bool:
    """Capacity's users chart (Vega-Lite) and its memory bars (HTML, one bar per GPU)."""
    bars = [h for h in at.get("html") if "Memory per GPU at" in h.proto.body]
    return len(at.get("vega_lite_chart")) == 1 and len(bars) == 1


def _plain(elements) -> list[str]:
    """What messages say on screen (the app escapes user text: kvplan.ui.text)."""
    from kvplan.ui.text import unescape_md
    return [unescape_md(e.value) for e in elements]


def _errors(at: AppTest) -> list[str]:
    return _plain(at.error)


# --- Size (default page) ---------------------------------------------------------------------

def test_size_default_render():
    at = _ok(_app())
    assert at.title[0].value == "KV cache size"
    assert _charts(at) == 2
    assert not _errors(at)
    # Llama-3.1-8B, bf16, 32k tokens on vLLM: 32 layers × 8 heads × 128 × 2 × 2 B × 32768 = 4 GiB.
    assert [m.value for m in at.metric][:2] == ["4.00 GiB", "131,072"]
    assert len(at.get("download_button")) >= 2


@pytest.mark.parametrize("key,value", [
    ("model", "google/gemma-3-1b-it"), ("model", "deepseek-ai/DeepSeek-V3"),
    ("model", "Qwen/Qwen3-Next-80B-A3B-Thinking"), ("engine", "llama.cpp"), ("engine", "transformers"),
    ("kv_dtype", "fp8"), ("gpu", "A100-80GB"),
])
def test_size_sidebar_inputs(key, value):
    at = _ok(_app())
    at.sidebar.selectbox(key=key).set_value(value).run()
    _ok(at)
    assert _charts(at) == 2 or (key == "kv_dtype" and _charts(at) >= 1)


def test_size_page_inputs_change_the_view():
    at = _ok(_app())
    at.multiselect(key="size_engines").set_value(["trtllm", "naive"]).run()
    at.multiselect(key="size_dtypes").set_value(["fp8", "q8_0"]).run()
    _ok(at)
    assert _charts(at) == 2
    # Only the engines that can store a dtype draw it: q8_0 for llama.cpp, never an error for vLLM.
    assert not _plain(at.warning), _plain(at.warning)
    at.number_input(key="size_batch").set_value(4).run()
    _ok(at)
    assert at.metric[0].value == "16.00 GiB"


def test_size_context_and_whatif():
    at = _ok(_app(ctx="128k"))
    assert at.metric[0].value == "16.00 GiB"
    at.sidebar.selectbox(key="attn").set_value("MHA").run()
    _ok(at)
    assert at.metric[0].value == "64.00 GiB"  # 32 KV heads instead of 8
    at.sidebar.selectbox(key="attn").set_value("MQA").run()
    assert _ok(at).metric[0].value == "2.00 GiB"
    at.sidebar.number_input(key="max_ctx").set_value(1 << 20).run()
    assert _charts(_ok(at)) == 2


def test_window_whatif_on_a_sliding_model():
    at = _ok(_app(model="google/gemma-2-9b", engine="llama.cpp", ctx="8k"))
    before = at.metric[0].value
    at.sidebar.number_input(key="window").set_value(1024).run()
    _ok(at)
    assert at.metric[0].value != before and not _errors(at)


def test_size_show_the_math_mentions_the_model_numbers():
    at = _ok(_app())
    text = "\n".join(m.value for m in at.markdown)
    assert "2 (K,V) × H_kv 8 × D 128 × 2 B = 4,096 B" in text
    assert "**total: 4,294,967,296 B**" in text


@pytest.mark.parametrize("params,needle", [
    ({"ctx": "lots"}, "cannot read 'lots'"),
    ({"ctx": "0"}, "Context length: must be between 1"),
    ({"model": "google/gemma-2-9b", "window": "0"}, None),  # default: fine
    ({"attn": "MHA", "model": "deepseek-ai/DeepSeek-V3"}, "MHA/MQA does not apply"),
    ({"window": "4096"}, "no sliding-window layers"),
    ({"gpu": "custom", "gpu_mem": "eighty"}, "GPU memory"),
])
def test_bad_inputs_show_inline(params, needle):
    at = _ok(_app(**params))
    if needle:
        assert any(needle in e for e in _errors(at)), _errors(at)
    else:
        assert not _errors(at)


def test_unknown_bundled_model_in_url_falls_back():
    # An invalid bound value is dropped by Streamlit: the default model renders.
    at = _ok(_app(model="no/such-model"))
    assert _charts(at) == 2


def test_uploaded_config_and_broken_upload(tmp_path):
    from kvplan.registry import bundled_config
    at = _ok(_app(src="Upload"))
    assert any("Upload" in i.value for i in at.info)
    # AppTest cannot drive st.file_uploader; the upload path is covered by the browser test, and the
    # parsing it relies on (parse_json + parse_config) by the core tests.
    assert bundled_config("Qwen/Qwen3-8B")["model_type"] == "qwen3"


def test_hub_source_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = _ok(_app(src="Hub"))
    assert any("Hub model id" in i.value or "Type a Hub" in i.value for i in at.info)
    at.sidebar.text_input(key="hub").input("not-a-real-org/not-a-real-model-xyz").run()
    _ok(at)
    assert _errors(at), "a Hub failure must show an inline message"


# --- Capacity ----------------------------------------------------------------------------------

def test_capacity_default_render():
    at = _page("capacity")
    assert _capacity_drawn(at)
    # Llama-3.1-8B at 32k on one H100, newest vLLM defaults (gpu_memory_utilization 0.92, CUDA-graph
    # estimate in the budget): concurrency 13.72, so 13 whole sequences is the headline.
    assert at.success and "**13 users** of 32,768 tokens" in _plain(at.success)[0] and "13.72" in _plain(at.success)[0]


def test_capacity_inputs():
    at = _page("capacity")
    at.multiselect(key="cap_gpus").set_value(["A100-80GB", "L40S"]).run()
    _ok(at)
    assert _capacity_drawn(at)
    assert sum(h.proto.body.count('role="img"') for h in at.get("html")) == 3  # a memory bar per GPU
    at.sidebar.selectbox(key="tp").set_value(2).run()
    for key, value in [("cap_num", 4), ("cap_util", 0.8), ("cap_prefix", 2048), ("cap_users", 8)]:
        at.number_input(key=key).set_value(value).run()
        _ok(at)
    assert at.success or _errors(at)
    at.sidebar.selectbox(key="engine").set_value("sglang").run()
    assert _capacity_drawn(_ok(at))


def test_capacity_does_not_fit_says_what_would():
    at = _page("capacity", model="meta-llama/Llama-3.1-70B")
    errs = _errors(at)
    assert errs and "Does not fit" in errs[0] and "What would fit" in errs[0], errs
    assert _capacity_drawn(at)  # the curves and bars still draw (at 0 users)


def test_tp_offers_only_valid_sizes():
    at = _page("capacity")
    # Llama-3.1-8B: 32 attention heads, 8 KV heads -> 1..32 (16 and 32 replicate KV heads, as the
    # engines do); 3 or 64 would not start on any engine.
    assert [int(o) for o in at.sidebar.selectbox(key="tp").options] == [1, 2, 4, 8, 16, 32]
    at = _page("capacity", tp="3")  # a hand-edited link: dropped, TP 1
    assert at.sidebar.selectbox(key="tp").value == 1 and not _errors(at)
    at = _page("capacity", model="Qwen/Qwen3-8B")  # 32 heads / 8 KV heads as well; no 16+
    assert 3 not in [int(o) for o in at.sidebar.selectbox(key="tp").options]


def test_capacity_custom_gpu():
    at = _page("capacity", gpu="custom", gpu_mem="48GiB")
    assert _capacity_drawn(at)


# --- Compare -----------------------------------------------------------------------------------

def test_compare_default_render():
    at = _page("compare")
    assert _charts(at) == 3
    assert at.dataframe and len(at.get("download_button")) == 2


def test_compare_inputs():
    at = _page("compare")
    at.multiselect(key="cmp_models").set_value(["google/gemma-3-1b-it", "Qwen/Qwen3-Next-80B-A3B-Thinking"]).run()
    at.multiselect(key="cmp_engines").set_value(["sglang", "transformers", "naive"]).run()
    _ok(at)
    assert _charts(at) == 3
    at.multiselect(key="cmp_engines").set_value([]).run()
    _ok(at)
    assert any("Pick at least one" in i.value for i in at.info)


def test_kv_dtypes_are_filtered_per_engine():
    at = _page("compare", engine="llama.cpp", kv_dtype="q4_0")
    assert "q4_0" in at.sidebar.selectbox(key="kv_dtype").options
    assert at.sidebar.selectbox(key="kv_dtype").value == "q4_0"
    assert not _plain(at.warning)  # vLLM (no q4_0) is compared at auto, said in the caption
    at = _page("size", engine="vllm", kv_dtype="q4_0")  # vLLM cannot store q4_0: not offered
    assert "q4_0" not in at.sidebar.selectbox(key="kv_dtype").options


# --- Validate ----------------------------------------------------------------------------------

def test_accuracy_default_render():
    at = _page("accuracy")
    reports = list((ROOT / "docs" / "validation").glob("*.json"))
    if reports:
        assert _charts(at) == 1
    else:
        assert any("No committed reports" in i.value for i in at.info)


def test_validation_rows_recompute_error_and_reject_junk():
    from kvplan.ui.sweeps import validation_rows
    good = {"model": "m", "engine": "transformers", "device": "cuda",
            "results": [{"context_len": 1024, "predicted_bytes": 1010, "measured_bytes": 1000}]}
    t = validation_rows(good, "r")
    assert t.rows[0]["error_pct"] == 1.0 and not t.errors
    assert validation_rows([1, 2], "x").errors
    assert validation_rows({"results": [{"context_len": "a"}]}, "y").errors
    assert validation_rows(json.loads('{"results": []}'), "z").errors


# --- Why a KV cache ----------------------------------------------------------------------------

def test_why_default_and_inputs():
    at = _page("why")
    assert _charts(at) == 1
    at.number_input(key="why_gen").set_value(16384).run()
    at.number_input(key="why_prompt").set_value(0).run()
    _ok(at)
    assert _charts(at) == 1
    at.sidebar.selectbox(key="model").set_value("deepseek-ai/DeepSeek-V3").run()
    assert _charts(_ok(at)) == 1


# --- Pure pieces -------------------------------------------------------------------------------

def test_charts_are_pure_and_log_scaled():
    import sys

    from kvplan import load_model
    from kvplan.ui import charts, sweeps
    arch = load_model("google/gemma-2-9b")
    grid = sweeps.context_grid(sweeps.max_context(arch))
    assert grid[0] == 1024 and grid[-1] == 8192
    fig = charts.memory_by_kind(sweeps.size_by_kind(arch, grid, engine="vllm", kv_dtype="auto").rows, title="t")
    assert fig.layout.xaxis.type == "log" and {t.name for t in fig.data} == {"sliding window", "full attention"}
    assert "streamlit" not in sys.modules or charts.__dict__.get("st") is None


def test_whatif_errors_name_the_field():
    from kvplan import InvalidInputError, load_model
    from kvplan.ui.whatif import WhatIf, apply
    arch = load_model("meta-llama/Llama-3.1-8B")
    assert apply(arch, WhatIf()) is arch
    mha = apply(arch, WhatIf("MHA"))
    assert mha.layers[0].num_kv_heads == 32 and "[MHA]" in mha.model_id
    with pytest.raises(InvalidInputError, match="window"):
        apply(arch, WhatIf(window=4096))


def test_hub_box_offline_uses_the_bundled_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = _ok(_app(src="Hub", hub="Qwen/Qwen3-8B"))
    assert not _errors(at), _errors(at)
    assert any("bundled copy" in i for i in _plain(at.info))
    assert _charts(at) == 2


# --- The sidebar's Engine options: each reaches the numbers as kvplan.kv_cache / kvplan.plan ------

L8, G1 = "meta-llama/Llama-3.1-8B", "google/gemma-3-1b-it"


def _open(page: str = "size", **params: str) -> AppTest:
    """A link to `page` opened directly (as a shared /size?... URL is): its parameters reach that
    page's sidebar, not the Plan page's inputs of the same name first."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(f"{PAGES}/{page}.py")
    for k, v in params.items():
        at.query_params[k] = v
    return _ok(at.run())


def _size_metrics(kv) -> list[str]:
    return [f"{kv.kv_bytes / 2**30:,.2f} GiB", f"{kv.bytes_per_token:,}"]


@pytest.mark.parametrize("params,api", [
    # URL -> the same inputs as kvplan.kv_cache arguments (context, batch, engine, layout, options)
    ({"sb_vllm_block": "2048", "ctx": "3000"}, dict(context_len=3000, block_size=2048)),
    ({"engine": "sglang", "sb_sgl_page": "4096", "ctx": "3000"}, dict(context_len=3000, engine="sglang", block_size=4096)),
    ({"engine": "trtllm", "sb_trt_block": "4096", "ctx": "3000"}, dict(context_len=3000, engine="trtllm", block_size=4096)),
    ({"engine": "sglang", "tp": "2", "sb_sgl_dp": "2"}, dict(context_len=32768, engine="sglang", tp=2, dp_attention=2)),
    ({"sb_pp": "2", "model": "Qwen/Qwen3-8B"}, dict(model="Qwen/Qwen3-8B", context_len=32768, pp=2)),
    ({"sb_spec": "eagle"}, dict(context_len=32768, speculative="eagle")),
    ({"sb_spec": "draft_model", "sb_draft": "meta-llama/Llama-3.2-1B"},
     dict(context_len=32768, speculative="draft_model", draft_model="meta-llama/Llama-3.2-1B")),
    ({"model": G1, "engine": "llama.cpp", "size_batch": "4", "sb_lcpp_np": "2", "ctx": "8k"},
     dict(model=G1, context_len=8192, batch=4, engine="llama.cpp", parallel=2)),
    ({"model": G1, "engine": "llama.cpp", "size_batch": "8", "sb_lcpp_unified": "true", "ctx": "8k"},
     dict(model=G1, context_len=8192, batch=8, engine="llama.cpp", kv_unified=True)),
    ({"model": G1, "engine": "llama.cpp", "sb_lcpp_ub": "8192", "size_batch": "4"},
     dict(model=G1, context_len=32768, batch=4, engine="llama.cpp", ubatch=8192)),
    ({"model": G1, "engine": "llama.cpp", "sb_lcpp_swa_full": "true"},
     dict(model=G1, context_len=32768, engine="llama.cpp", swa_full=True)),
])
def test_size_engine_options_reach_the_numbers(params, api):
    import kvplan
    at = _ok(_open(**params))
    assert not _errors(at), _errors(at)
    api = {"model": L8, **api}
    options = {k: api[k] for k in api if k not in ("model", "context_len", "batch", "engine", "tp")}
    base = {k: v for k, v in api.items() if k not in options}
    want = _size_metrics(kvplan.kv_cache(base.pop("model"), **base, **options))
    default = _size_metrics(kvplan.kv_cache(api["model"], **base))
    assert want != default, "pick inputs the option changes"  # so the test can fail
    assert [m.value for m in at.metric][:2] == want
    expander = next(e for e in at.sidebar.expander if e.label == "Engine options")
    assert expander.proto.expanded  # a link that sets an option opens it
    assert "change them in the sidebar" in at.caption[0].value


@pytest.mark.parametrize("params,api", [
    ({"sb_kvmem": "20GiB"}, dict(kv_memory="20GiB")),
    ({"sb_loras": "8", "sb_lora_rank": "256"}, dict(max_loras=8, max_lora_rank=256)),
    ({"sb_vllm_seqs": "8", "cap_users": "4"}, dict(max_num_seqs=8, users=4)),
    ({"sb_spec": "eagle"}, dict(speculative="eagle")),
    ({"sb_vllm_block": "4096", "ctx": "3000"}, dict(block_size=4096, max_model_len=3000)),
    ({"engine": "sglang", "sb_pp": "2", "model": "Qwen/Qwen3-8B"},
     dict(model="Qwen/Qwen3-8B", engine="sglang", pp=2, num_gpus=2)),
    ({"model": "google/gemma-3-27b-it", "sb_mm": "image=0,video=0"},
     dict(model="google/gemma-3-27b-it", limit_mm_per_prompt="image=0,video=0")),
    ({"model": G1, "engine": "llama.cpp", "sb_lcpp_swa_full": "true"}, dict(model=G1, engine="llama.cpp", swa_full=True)),
])
def test_capacity_engine_options_reach_the_plan(params, api):
    import kvplan
    at = _ok(_open("capacity", **params))
    assert not _errors(at), _errors(at)
    api = {"model": L8, "max_model_len": 32768, "gpu": "H100-SXM", **api}
    planner = ("model", "max_model_len", "gpu", "users", "engine")
    options = {k: v for k, v in api.items() if k not in planner}
    base = {k: v for k, v in api.items() if k in planner}

    def banner(p) -> tuple[str, str]:
        return (f"**{p.total_sequences:,} user{'s' if p.total_sequences != 1 else ''}**",
                f"KV budget {p.kv_budget_bytes / 2**30:,.2f} GiB per GPU")

    want, default = banner(kvplan.plan(base.pop("model"), **base, **options)), banner(kvplan.plan(api["model"], **base))
    assert want != default, "pick inputs the option changes"
    shown = _plain(at.success)[0]
    assert want[0] in shown and want[1] in shown, (want, shown)


def test_engine_options_apply_only_where_they_can():
    at = _ok(_open())  # vLLM on Size: its block size and speculative decoding; no llama.cpp knob, no Capacity input
    keys = {w.key for w in at.sidebar.number_input} | {w.key for w in at.sidebar.selectbox}
    assert {"sb_vllm_block", "sb_spec", "sb_pp"} <= keys
    assert not keys & {"sb_lcpp_np", "sb_lcpp_ub", "sb_loras", "sb_vllm_seqs", "sb_sgl_page"}
    assert not [t for t in at.sidebar.text_input if t.key == "sb_kvmem"]
    expander = next(e for e in at.sidebar.expander if e.label == "Engine options")
    assert not expander.proto.expanded  # nothing set: closed
    at = _ok(_open("capacity", engine="llama.cpp"))  # the planner picks the slots: no -np on Capacity
    keys = {w.key for w in at.sidebar.number_input}
    assert "sb_lcpp_ub" in keys and "sb_lcpp_np" not in keys and "sb_pp" not in {w.key for w in at.sidebar.selectbox}
    assert [t for t in at.sidebar.text_input if t.key == "sb_kvmem"]


def test_an_option_the_engine_rejects_is_named_and_left_out():
    import kvplan
    # Llama-3.1-8B has no MTP layers: one line naming the input, the page sized without it.
    at = _ok(_open(sb_spec="mtp"))
    errs = [e for e in _plain(at.sidebar.error)]
    assert len(errs) == 1 and errs[0].startswith("Speculative decoding: ") and "speculative:" not in errs[0]
    assert [m.value for m in at.metric][:2] == _size_metrics(kvplan.kv_cache(L8, context_len=32768))
    assert any("Fix Speculative decoding in the sidebar" in w for w in _plain(at.warning))
    at = _ok(_open(engine="sglang", tp="2", sb_sgl_dp="4"))  # DP size must divide TP
    errs = _plain(at.sidebar.error)
    assert len(errs) == 1 and errs[0].startswith("SGLang DP-attention size: "), errs


def test_engine_options_key_the_cache():
    # Two option sets never share a cached result: the second block size is computed, not replayed.
    from kvplan.ui import cached
    arch = __import__("kvplan").load_model(L8)
    a, _ = cached.size_at(arch, 3000, engines=["vllm"], kv_dtypes=["auto"], options=(("vllm", (("block_size", 16),)),))
    b, _ = cached.size_at(arch, 3000, engines=["vllm"], kv_dtypes=["auto"], options=(("vllm", (("block_size", 2048),)),))
    assert a.rows[0]["kv_bytes"] != b.rows[0]["kv_bytes"]


def test_gpu_line_label_on_a_log_axis_stays_in_range():
    # Plotly places an annotation on a log axis at log10(y): the GPU's "79.2 GiB" label once sat at
    # 10^79.2 and stretched the Size chart's axis to 1e84, flattening every line to the bottom.
    import math

    from kvplan.ui import charts
    rows = [{"series": "vllm · bf16", "context_len": c, "kv_bytes": c * 131072} for c in (1024, 131072)]
    gpu = 85 * 10**9
    fig = charts.memory_lines(rows, title="t", log_y=True, log_x=True, gpu_line=("H100-SXM", gpu))
    (note,) = [a for a in fig.layout.annotations if "H100-SXM" in a.text]
    assert note.y == pytest.approx(math.log10(gpu / 2**30))
    assert [s.y0 for s in fig.layout.shapes if s.y0 == s.y1] == [gpu / 2**30]


def test_log_memory_axes_label_only_1_2_5_ticks_and_the_gpu_line_is_no_series_colour():
    # Plotly labels every 2..9 on a log axis spanning few decades ("10 9 8 7 6 5 4 3 2" overlapped on the
    # Size page's by-kind chart); kvplan labels 1, 2, 5 × 10^k only, spanning the data.
    from kvplan.ui import charts
    rows = [{"series": "vllm · bf16", "context_len": c, "kv_bytes": c * 69632} for c in (1024, 131072)]
    gpu = 85 * 10**9
    fig = charts.memory_lines(rows, title="t", log_y=True, log_x=True, gpu_line=("H100-SXM", gpu))
    vals = list(fig.layout.yaxis.tickvals)
    assert all(f"{v:g}".lstrip("0.").rstrip("0").rstrip(".")[:1] in "125" for v in vals)
    lo, hi = 1024 * 69632 / 2**30, gpu / 2**30  # 0.066 GiB .. 79.2 GiB
    assert vals[0] <= lo < vals[1] and vals[-2] < hi <= vals[-1]
    assert list(fig.layout.yaxis.ticktext)[:3] == ["0.05", "0.1", "0.2"] and "100" in fig.layout.yaxis.ticktext
    (gpu_shape,) = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert gpu_shape.line.color == charts.GPU_LINE
    assert gpu_shape.line.color not in {t.line.color for t in fig.data}
    stacked = charts.memory_by_kind([{"kind": k, "context_len": c, "bytes": c * 4096} for k in ("full", "sliding")
                                     for c in (1024, 8192)], title="t", log_y=True)
    assert list(stacked.layout.yaxis.ticktext) == ["0.005", "0.01", "0.02", "0.05", "0.1"]


def test_compare_takes_the_sidebar_engine_options():
    # Compare's table: Llama-3.1-8B on vLLM with 2048-token blocks at 3,000 tokens shows the bytes
    # kvplan.kv_cache gives for the same inputs (one 2048-token block more than the default 16-token ones).
    import kvplan
    at = _ok(_open("compare", sb_vllm_block="2048", ctx="3000"))
    assert not _errors(at), _errors(at)
    rows = at.dataframe[0].value
    row = rows[(rows["Model"] == L8) & (rows["Engine"] == "vllm")].iloc[0]
    want = kvplan.kv_cache(L8, context_len=3000, block_size=2048).bytes_per_token
    assert kvplan.kv_cache(L8, context_len=3000).kv_bytes != kvplan.kv_cache(L8, context_len=3000, block_size=2048).kv_bytes
    assert str(row["Bytes per token"]).replace(",", "") == str(want)
    gib = kvplan.kv_cache(L8, context_len=3000, block_size=2048).kv_bytes / 2**30
    assert str(row["KV per sequence (GiB)"]) == f"{gib:,.2f}"
