"""Size: KV memory vs context, stacked by layer kind, with lines per engine / dtype, and the math."""

import streamlit as st

from kvplan.engines import ENGINE_NAMES
from kvplan.ui import cached, formulas, sweeps, text, widgets

QP = widgets.QP
DEFAULT_ENGINES = ["vllm", "sglang", "llama.cpp", "naive"]
AT_COLUMNS = {"engine": ("Engine", "text"), "kv_dtype": ("KV dtype", "text"), "batch": ("Sequences", "int"),
              "bytes_per_token": ("Bytes per token", "int"), "kv_bytes": ("KV cache (GiB)", "gib"),
              "k_bytes": ("K (GiB)", "gib"), "v_bytes": ("V (GiB)", "gib"), "state_bytes": ("State (GiB)", "gib"),
              "block_size": ("Block (tokens)", "int"), "notes": ("Notes", "text")}
SWEEP_COLUMNS = {"series": ("Engine · dtype", "text"), "context_len": ("Context (tokens)", "int"),
                 "kv_bytes": ("KV cache (GiB)", "gib")}


def body() -> None:
    sel = widgets.selection()
    st.title("KV cache size")
    arch = widgets.require_model(sel)
    ctx = widgets.require_context(sel)
    widgets.summary(sel)

    top = st.columns([2, 2, 1, 1])
    engines = top[0].multiselect("Engines (lines)", ENGINE_NAMES, default=DEFAULT_ENGINES,
                                 key="size_engines", bind=QP)
    offered = sorted({d for e in [sel.engine_spec, *engines] for d in sweeps.kv_dtype_choices(e) if d != "auto"})
    extra = top[1].multiselect("More KV dtypes (lines)", offered, key="size_dtypes", bind=QP,
                               help="Each line is drawn for the engines that can store that dtype.")
    batch = widgets.number_input(top[2], "Batch (sequences)", min_value=1, max_value=1_000_000, value=1,
                                 key="size_batch")
    scale = top[3].radio("Axes", ("log-log", "linear"), key="size_scale", bind=QP, horizontal=True,
                         help="log-log: short and long contexts both readable, and linear growth is a "
                              "straight line. linear: the bytes as they are, long contexts dominate.")
    who = "per sequence" if batch == 1 else f"for {batch:,} sequences"
    st.caption(text.md("KV cache {} on one GPU{}; GiB = 2³⁰ bytes. {}", who,
                       f" ({widgets.layout_words(sel)}: the most-loaded GPU)" if sel.tp * sel.pp > 1 else "",
                       "Both axes are logarithmic: a straight line is linear growth; a line that flattens is a "
                       "sliding window or a fixed state." if scale == "log-log" else "Both axes are linear."))

    hi = sweeps.max_context(arch, ctx)
    contexts = sweeps.context_grid(hi)
    dtypes = list(dict.fromkeys([sel.kv_dtype, *extra]))
    line_engines = list(dict.fromkeys([sel.engine_spec, *engines]))

    options = sel.options_key(line_engines)  # each engine's own options (the sidebar's Engine options)
    at, ests = cached.size_at(arch, ctx, engines=line_engines, kv_dtypes=dtypes, batch=batch, tp=sel.tp, pp=sel.pp,
                              options=options)
    main = ests.get((sel.engine_spec, sel.kv_dtype))
    m = st.columns(4)
    if main is not None:
        m[0].metric(text.md("KV at {:,} tokens", ctx), f"{main.kv_bytes / 2**30:,.2f} GiB",
                    help=text.md("{:,} bytes, {}, {}", main.kv_bytes, who, sel.engine_spec))
        m[1].metric("Bytes per token", f"{main.bytes_per_token:,}",
                    help="What one more token of context costs, per sequence, before block rounding.")
        m[2].metric("KV dtype", text.escape_md(main.kv_dtype))
        m[3].metric("Layers with a cache", f"{sum(k.num_layers for k in main.breakdown if k.kind != 'padding')}")

    gpu_bytes = sel.gpu_memory_bytes()
    gpu_line = (sel.gpu_label(), gpu_bytes) if gpu_bytes else None
    y_title = f"KV cache {who} (GiB)"
    left, right = st.columns(2)
    with left:
        kinds = cached.size_by_kind(arch, contexts, engine=sel.engine_spec, kv_dtype=sel.kv_dtype, tp=sel.tp,
                                    pp=sel.pp, batch=batch, options=options)
        widgets.show_errors(kinds.errors, labels=sel.labels)
        if kinds.rows:
            st.plotly_chart(cached.chart("memory_by_kind", kinds.rows, title=f"{sel.engine_spec}: by layer kind",
                                         log_x=scale == "log-log", log_y=scale == "log-log", y_title=y_title),
                            key="size_kinds")
    with right:
        lines = cached.size_lines(arch, contexts, engines=line_engines, kv_dtypes=dtypes, tp=sel.tp, pp=sel.pp,
                                  batch=batch, options=options)
        widgets.show_errors(lines.errors, labels=sel.labels)
        if lines.rows:
            merged = sweeps.merge_identical_series(lines.rows)
            st.plotly_chart(cached.chart("memory_lines", merged, title="per engine · dtype", mark_context=ctx,
                                         log_y=scale == "log-log", log_x=scale == "log-log", gpu_line=gpu_line,
                                         y_title=y_title), key="size_lines")
            if len({r["series"] for r in merged}) < len({r["series"] for r in lines.rows}):
                st.caption("Engines that allocate the same bytes share one line (named \"a = b\").")

    st.subheader(f"At {ctx:,} tokens")
    widgets.show_errors(at.errors, labels=sel.labels)
    widgets.table(at.rows, "kv_size", AT_COLUMNS)

    with st.expander("Show the math", expanded=False):
        for (engine, dtype), est in ests.items():
            st.markdown(formulas.engine_math(arch, est))
    with st.expander("Sweep data"):
        widgets.table(lines.rows, "kv_vs_context", SWEEP_COLUMNS)


widgets.run_page(body)
