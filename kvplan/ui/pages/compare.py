"""Compare: several models side by side per engine — bytes per token, KV at a context, and users per
GPU at the smallest TP that fits, every engine given the same share of the GPU."""

import streamlit as st

import kvplan
from kvplan.engines import ENGINE_NAMES
from kvplan.errors import KvplanError
from kvplan.registry import list_models
from kvplan.ui import cached, text, widgets

QP = widgets.QP
DEFAULT_MODELS = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-8B", "google/gemma-2-9b", "deepseek-ai/DeepSeek-V3"]
MAX_MODELS = 8
COLUMNS = {"model": ("Model", "text"), "engine": ("Engine", "text"), "kv_dtype": ("KV dtype", "text"),
           "bytes_per_token": ("Bytes per token", "int"), "kv_bytes": ("KV per sequence (GiB)", "gib"),
           "tp": ("Smallest TP that fits", "int"), "users": ("Users at that TP", "int"),
           "users_per_gpu": ("Users per GPU", "float")}


def body() -> None:
    sel = widgets.selection()
    st.title("Compare models")
    ctx = widgets.require_context(sel)
    widgets.summary(sel)
    models = list_models()
    c = st.columns([3, 2, 1])
    chosen = c[0].multiselect("Models", models, default=[m for m in DEFAULT_MODELS if m in models],
                              max_selections=MAX_MODELS, key="cmp_models", bind=QP, help="Bundled models.")
    engines = c[1].multiselect("Engines", ENGINE_NAMES, default=["vllm", "llama.cpp"], key="cmp_engines",
                               bind=QP)
    fraction = widgets.number_input(c[2], "Memory fraction", min_value=0.05, max_value=1.0, value=0.9,
                                    step=0.05, format="%.2f", key="cmp_frac",
                                    help="The same share of the GPU for every engine: vLLM/SGLang/TRT-LLM "
                                         "through their own knob, llama.cpp and HF as a GPU that size.")
    add_sidebar = st.checkbox("Add the sidebar model", key="cmp_sidebar", bind=QP,
                              help="The sidebar's model with its what-if edits (a Hub id or upload too).")

    archs, errors = [], []
    for m in chosen:
        try:
            archs.append(kvplan.load_model(m))
        except KvplanError as err:
            errors.append(f"{m}: {widgets.describe(err)}")
    if add_sidebar and sel.arch is not None and sel.arch.model_id not in chosen:
        archs.insert(0, sel.arch)
    if not archs or not engines:
        st.info("Pick at least one model and one engine.")
        return
    has_gpu = bool(sel.gpu or sel.gpu_memory)
    gpu_label = sel.gpu_label()
    st.caption(text.md("At {:,} tokens per sequence, KV dtype {} (auto where an engine cannot store it). "
                       "Users: whole sequences on {} at the smallest TP where one fits, every engine given "
                       "{:.0%} of the GPU. GiB = 2³⁰ bytes.", ctx, sel.kv_dtype, gpu_label, fraction))
    table = cached.compare_models(archs, context_len=ctx, engines=engines, kv_dtype=sel.kv_dtype,
                                  gpu_label=gpu_label, gpu=sel.gpu,
                                  gpu_memory=None if sel.gpu else sel.gpu_memory,
                                  gpu_memory_bytes=sel.gpu_memory_bytes(), fraction=fraction,
                                  options=sel.options_key(engines), plan_options=sel.options_key(engines, plan=True))
    widgets.show_errors(errors + table.errors, labels=sel.labels)
    if not table.rows:
        return
    a, b = st.columns(2)
    a.plotly_chart(cached.chart("compare_bars", table.rows, value="bytes_per_token", title="bytes per token",
                                       y_title="bytes per token"), key="cmp_bpt")
    b.plotly_chart(cached.chart("compare_bars", table.rows, value="kv_bytes", title=f"KV at {ctx:,} tokens",
                                       y_title="GiB per sequence", scale=2**30), key="cmp_kv")
    if has_gpu and any(r["users_per_gpu"] is not None for r in table.rows):
        rows = [{**r, "label": f"{r['model']} (TP {r['tp']})" if r["tp"] else r["model"]} for r in table.rows]
        st.plotly_chart(cached.chart("compare_bars", rows, value="users_per_gpu", label="label",
                                            title=f"concurrent {ctx:,}-token users per GPU ({gpu_label})",
                                            y_title="users per GPU"), key="cmp_users")
    widgets.table(table.rows, "compare", COLUMNS)


widgets.run_page(body)
