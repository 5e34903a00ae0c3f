"""Compare: several models side by side per engine — bytes per token, KV at a context, users per GPU."""

import streamlit as st

import kvplan
from kvplan.engines import ENGINE_NAMES
from kvplan.errors import KvplanError
from kvplan.registry import list_models
from kvplan.ui import charts, sweeps, text, widgets

QP = widgets.QP
DEFAULT_MODELS = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-8B", "google/gemma-2-9b", "deepseek-ai/DeepSeek-V3"]
MAX_MODELS = 8


def body() -> None:
    sel = widgets.selection()
    st.title("Compare models")
    ctx = widgets.require_context(sel)
    models = list_models()
    c = st.columns([3, 2])
    chosen = c[0].multiselect("Models", models, default=[m for m in DEFAULT_MODELS if m in models],
                              max_selections=MAX_MODELS, key="cmp_models", bind=QP,
                              help="Bundled models; the sidebar's model (with its what-ifs) is added.")
    engines = c[1].multiselect("Engines", ENGINE_NAMES, default=["vllm", "llama.cpp"], key="cmp_engines",
                               bind=QP)
    gpu_label = sel.gpu or f"custom {sel.gpu_memory or 0:,} B"
    st.caption(text.md("At {:,} tokens per sequence, KV dtype {}, users per GPU on {} (sidebar). Bytes per "
                       "sequence on one GPU; GiB = 2³⁰ bytes.", ctx, sel.kv_dtype, gpu_label))

    archs, errors = [], []
    for m in chosen:
        try:
            archs.append(kvplan.load_model(m))
        except KvplanError as err:
            errors.append(f"{m}: {widgets.describe(err)}")
    if sel.arch is not None and sel.arch.model_id not in chosen:
        archs.insert(0, sel.arch)
    if not archs or not engines:
        st.info("Pick at least one model and one engine.")
        return
    plan_fn = getattr(kvplan, "plan", None)
    has_gpu = bool(sel.gpu or sel.gpu_memory)
    table = sweeps.compare_models(archs, context_len=ctx, engines=engines, kv_dtype=sel.kv_dtype,
                                  plan_fn=plan_fn if has_gpu else None, gpu_label=gpu_label,
                                  **(sel.plan_gpu() if has_gpu else {}))
    widgets.show_errors(errors + table.errors)
    if plan_fn is None:
        st.info("Users per GPU appear once the planner (`kvplan.plan`) is available.")
    if not table.rows:
        return
    a, b = st.columns(2)
    a.plotly_chart(charts.compare_bars(table.rows, value="bytes_per_token", title="bytes per token",
                                       y_title="bytes per token"), key="cmp_bpt")
    b.plotly_chart(charts.compare_bars(table.rows, value="kv_bytes", title=f"KV at {ctx:,} tokens",
                                       y_title="GiB per sequence", scale=2**30), key="cmp_kv")
    if any(r["users_per_gpu"] is not None for r in table.rows):
        st.plotly_chart(charts.compare_bars(table.rows, value="users_per_gpu",
                                            title=f"concurrent users per GPU ({gpu_label})",
                                            y_title="users per GPU"), key="cmp_users")
    widgets.table(table.rows, "compare", gib=("kv_bytes",))


widgets.run_page(body)
