"""Size: KV memory vs context, stacked by layer kind, with lines per engine / dtype, and the math."""

import streamlit as st

from kvplan.dtypes import KV_DTYPE_NAMES
from kvplan.engines import ENGINE_NAMES
from kvplan.ui import charts, formulas, sweeps, text, widgets
from kvplan.units import fmt_auto

QP = widgets.QP
DEFAULT_ENGINES = ["vllm", "sglang", "llama.cpp", "naive"]


def body() -> None:
    sel = widgets.selection()
    st.title("KV cache size")
    arch = widgets.require_model(sel)
    ctx = widgets.require_context(sel)
    st.caption(text.md("{} — {}. Bytes per sequence on one GPU; GiB = 2³⁰ bytes.", arch.model_id, arch.label()))

    top = st.columns([2, 2, 1])
    engines = top[0].multiselect("Engines (lines)", ENGINE_NAMES, default=DEFAULT_ENGINES,
                                 key="size_engines", bind=QP)
    extra = top[1].multiselect("More KV dtypes (lines)", [d for d in KV_DTYPE_NAMES if d != "auto"],
                               key="size_dtypes", bind=QP)
    batch = widgets.number_input(top[2], "Batch (sequences)", min_value=1, max_value=1_000_000, value=1,
                                 key="size_batch")

    hi = sweeps.max_context(arch, ctx)
    contexts = sweeps.context_grid(hi)
    dtypes = list(dict.fromkeys([sel.kv_dtype, *extra]))

    at, ests = sweeps.size_at(arch, ctx, engines=list(dict.fromkeys([sel.engine, *engines])),
                              kv_dtypes=dtypes, batch=int(batch))
    main = ests.get((sel.engine, sel.kv_dtype))
    m = st.columns(4)
    if main is not None:
        m[0].metric(text.md("KV at {:,} tokens ({})", ctx, sel.engine), fmt_auto(main.kv_bytes),
                    help=f"{main.kv_bytes:,} bytes for batch {int(batch)}")
        m[1].metric("Bytes per token", f"{main.bytes_per_token:,}",
                    help="What one more token of context costs, per sequence, before block rounding.")
        m[2].metric("KV dtype", text.escape_md(main.kv_dtype))
        m[3].metric("Layers with a cache", f"{sum(k.num_layers for k in main.breakdown if k.kind != 'padding')}")

    left, right = st.columns(2)
    with left:
        kinds = sweeps.size_by_kind(arch, contexts, engine=sel.engine, kv_dtype=sel.kv_dtype)
        widgets.show_errors(kinds.errors)
        if kinds.rows:
            st.plotly_chart(charts.memory_by_kind(kinds.rows, title=f"{sel.engine}: by layer kind"),
                            key="size_kinds")
    with right:
        lines = sweeps.size_lines(arch, contexts, engines=engines, kv_dtypes=dtypes)
        widgets.show_errors(lines.errors)
        if lines.rows:
            st.plotly_chart(charts.memory_lines(lines.rows, title="per engine · dtype", mark_context=ctx),
                            key="size_lines")

    st.subheader(f"At {ctx:,} tokens")
    widgets.show_errors(at.errors)
    widgets.table(at.rows, "kv_size", gib=("kv_bytes",))

    with st.expander("Show the math", expanded=False):
        for (engine, dtype), est in ests.items():
            st.markdown(formulas.engine_math(arch, est))
    with st.expander("Sweep data"):
        widgets.table(lines.rows, "kv_vs_context", gib=("kv_bytes",))


widgets.run_page(body)
