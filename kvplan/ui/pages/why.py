"""Why a KV cache: the K/V work a generation repeats without a cache, against the memory it costs."""

import streamlit as st

from kvplan.ui import cached, sweeps, text, widgets

QP = widgets.QP
COLUMNS = {"generated_tokens": ("Generated tokens", "int"),
           "tokens_projected_without_cache": ("Token projections, no cache", "int"),
           "tokens_projected_with_cache": ("Token projections, with cache", "int"),
           "kv_flops_without_cache": ("K/V FLOPs, no cache", "int"),
           "kv_flops_with_cache": ("K/V FLOPs, with cache", "int"), "cache_bytes": ("Cache (GiB)", "gib")}


def body() -> None:
    sel = widgets.selection()
    st.title("Why a KV cache?")
    arch = widgets.require_model(sel)
    widgets.summary(sel, gpu=False, context=False)
    st.markdown(
        "Each new token attends to every earlier token's **keys and values**. Without a cache, each "
        "decoding step recomputes K and V for the whole sequence so far: generating *n* tokens after a "
        "*p*-token prompt projects Σ(p + t) ≈ p·n + n²/2 tokens — **O(n²)**. A cache computes each "
        "token's K/V once (p + n tokens, **O(n)**) and keeps them in GPU memory instead. That memory is "
        "what this tool sizes.")
    c = st.columns(2)
    prompt = widgets.number_input(c[0], "Prompt tokens", min_value=0, max_value=1 << 22, value=1024, step=256,
                                  key="why_prompt")
    gen = widgets.number_input(c[1], "Generated tokens", min_value=16, max_value=1 << 20, value=4096, step=256,
                               key="why_gen")
    prompt, gen = int(prompt), int(gen)
    gens = sorted({max(1, gen * i // 40) for i in range(1, 41)})
    out = cached.cache_tradeoff(arch, prompt_len=prompt, gen_lens=gens, engine=sel.engine_spec,
                                kv_dtype=sel.kv_dtype, options=sel.options_key([sel.engine_spec]))
    widgets.show_errors(out.errors, labels=sel.labels)
    if not out.rows:
        return
    last = out.rows[-1]
    per_tok = sweeps.kv_projection_flops_per_token(arch)
    m = st.columns(3)
    m[0].metric("K/V FLOPs without cache", text.sci(last["kv_flops_without_cache"]))
    m[1].metric("K/V FLOPs with cache", text.sci(last["kv_flops_with_cache"]),
                help=f"{per_tok:,} FLOPs per token (2 · hidden · K/V width, summed over layers)")
    m[2].metric(text.md("Cache memory ({})", sel.engine), f"{last['cache_bytes'] / 2**30:,.2f} GiB")
    if per_tok == 0:
        st.info("This model has no attention layers with a K/V projection (state layers only).")
    st.plotly_chart(cached.chart("cache_tradeoff", out.rows, title=f"{arch.model_id}: recompute vs remember"),
                    key="why_chart")
    st.caption(f"The cache saves {last['tokens_projected_without_cache'] - last['tokens_projected_with_cache']:,}"
               f" token projections per layer over {gen:,} generated tokens, for "
               f"{last['cache_bytes'] / 2**30:,.2f} GiB of memory per sequence.")
    widgets.table(out.rows, "kv_cache_tradeoff", COLUMNS)


widgets.run_page(body)
