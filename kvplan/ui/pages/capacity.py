"""Capacity: GPU(s), count, TP, engine, memory fraction -> how many full-length users the deployment
runs at once vs context, the memory split per GPU, and a banner that answers with whole users and
says what would fit. All numbers from kvplan.plan / kvplan.min_gpus."""

import streamlit as st

from kvplan.errors import KvplanError
from kvplan.gpus import list_gpus
from kvplan.ui import cached, plan_chart, sweeps, text, widgets
from kvplan.weights import WEIGHT_DTYPES

QP = widgets.QP
COLUMNS = {"gpu": ("GPU", "text"), "num_gpus": ("GPUs", "int"), "tp": ("TP", "int"),
           "total_sequences": ("Users (whole sequences)", "int"), "users_per_gpu": ("Users per GPU", "float"),
           "kv_budget_bytes": ("KV budget per GPU (GiB)", "gib"), "weights_bytes": ("Weights per GPU (GiB)", "gib"),
           "kv_tokens": ("KV tokens per instance", "int"), "max_model_len_that_fits": ("Longest context (tokens)", "int"),
           "gpu_memory_utilization": ("Memory fraction", "float"),
           "decode_tokens_per_s_per_user": ("Decode tokens/s per user", "float"),
           "decode_ms_per_step": ("Decode step (ms)", "ms"), "prefill_ms": ("Prefill (ms)", "ms")}
FRACTION_NAME = {"vllm": "gpu_memory_utilization", "sglang": "mem_fraction_static",
                 "trtllm": "free_gpu_memory_fraction"}


def _plural(n: int, word: str) -> str:
    return text.plural(n, word)


def body() -> None:
    sel = widgets.selection()
    st.title("Capacity: how many users fit")
    arch = widgets.require_model(sel)
    ctx = widgets.require_context(sel)
    widgets.summary(sel)

    c = st.columns([3, 1, 1.3, 1.3, 1.2, 1.2])
    catalog = [g.name for g in list_gpus()]
    extra = c[0].multiselect("Also compare GPUs", catalog, key="cap_gpus", bind=QP,
                             help="One line per GPU; the sidebar's GPU is always first.")
    per_instance = sel.tp * sel.pp
    num_gpus = widgets.number_input(c[1], "GPUs", min_value=1, max_value=1024, value=per_instance, key="cap_num",
                                    help="GPUs in the deployment: instances of TP × PP GPUs side by side.")
    util = widgets.number_input(c[2], "Memory fraction", min_value=0.05, max_value=1.0, value=None,
                                placeholder="engine default", step=0.05, format="%.2f", key="cap_util",
                                help="The engine's memory knob (vLLM gpu_memory_utilization, SGLang "
                                     "mem_fraction_static, TRT-LLM free_gpu_memory_fraction). Empty = the "
                                     "engine's default, shown below.")
    prefix = widgets.number_input(c[3], "Shared prefix tokens", min_value=0, max_value=1 << 24, value=0,
                                  step=512, key="cap_prefix",
                                  help="A system prompt every user shares, cached once (prefix caching).")
    users = widgets.number_input(c[4], "Target users (0 = none)", min_value=0, max_value=1_000_000, value=0,
                                 key="cap_users")
    wdtype = c[5].selectbox("Weights dtype", WEIGHT_DTYPES, key="cap_wdtype", bind=QP,
                            help="auto = the checkpoint's own (its quantization if any).")
    if num_gpus % per_instance:
        text.warning(f"GPUs: {num_gpus:,} does not split into {widgets.layout_words(sel)} instances; using "
                     f"{_plural(per_instance * -(-num_gpus // per_instance), 'GPU')}.")
        num_gpus = per_instance * -(-num_gpus // per_instance)

    gpus = {}
    if sel.gpu:
        gpus[sel.gpu] = {"gpu": sel.gpu}
    elif sel.gpu_memory:
        gpus[sel.gpu_label()] = {"gpu_memory": sel.gpu_memory}
    for g in extra:
        gpus.setdefault(g, {"gpu": g})
    if not gpus:
        st.info("Choose a GPU in the sidebar.")
        return
    # The same arguments as `kvplan plan` with the sidebar's engine options (--block-size, --kv-memory, ...).
    common = dict(num_gpus=num_gpus, **sweeps.split(sel.engine, sel.tp, sel.pp), engine=sel.engine_spec,
                  kv_dtype=sel.kv_dtype, weights_dtype=wdtype,
                  gpu_memory_utilization=util, prefix_tokens=prefix, **sel.plan_options(sel.engine))

    first_label = next(iter(gpus))
    rows, bars, errors, longest_plan = [], [], [], {}
    for label, gargs in gpus.items():
        try:
            p = cached.raise_if_error(cached.plan(arch, max_model_len=ctx, users=users or None, **gargs, **common))
        except KvplanError as err:
            if label == first_label:
                text.error(f"{label}: {widgets.describe(err, labels=sel.labels)}")
            else:
                errors.append(f"{label}: {widgets.describe(err, labels=sel.labels)}")
            continue
        rows.append({"gpu": label, **{k: getattr(p, k, None) for k in COLUMNS if k != "gpu"}})
        bars += sweeps.memory_rows(p, label)
        longest_plan[label] = p
        if label == first_label:
            _banner(arch, p, label, gargs, common, ctx, users, prefix)
    widgets.show_errors(errors, labels=sel.labels)

    hi = sweeps.max_context(arch, ctx)
    grid = [x for x in sweeps.context_grid(hi, points=32) if x >= prefix]  # a prefix fits in the context
    curve = cached.users_vs_context(arch, grid, gpus=gpus, **common)
    widgets.show_errors(curve.errors, labels=sel.labels)
    left, right = st.columns([3, 2])
    if curve.rows:
        longest = sweeps.longest_fitting(curve.rows, users=users)
        where = f"{num_gpus} × GPU, {widgets.layout_words(sel)}" if num_gpus > 1 else f"1 GPU, TP {sel.tp}"
        data, spec = plan_chart.users_vs_context(
            [{"deployment": r["gpu"], "context_len": r["context_len"], "users": r["users"]} for r in curve.rows],
            target_users=users, request_tokens=ctx, longest=longest, request_label="your context",
            title=f"{arch.model_id} · {sel.engine_spec} · {where}", y_title="concurrent users (whole sequences)")
        left.vega_lite_chart(data, spec, width="stretch")
        left.caption("Whole sequences of that many tokens the deployment holds at once (log scale). In the "
                     "shaded band nothing fits; ◆ marks, for each GPU, the longest context drawn at which "
                     + (f"{users:,} users fit" if users else "one user fits")
                     + " (the answer above gives the exact longest for the first).")
    if bars:
        right.html(plan_chart.memory_ledgers(bars, title=f"Memory per GPU at {ctx:,} tokens (GiB)"))
    if rows:
        st.subheader("Plans")
        widgets.table(rows, "capacity", COLUMNS)


def _banner(arch, p, label: str, gargs: dict, common: dict, ctx: int, users: int, prefix: int) -> None:
    """The answer in whole users for the deployment; what would fit when it does not (or with fewer GPUs)."""
    split = f"TP {p.tp}" if p.pp == 1 else f"layers split over {p.pp}" if p.tp == 1 else f"TP {p.tp} × PP {p.pp}"
    where = (f"{p.num_gpus} × {label} ({split}{f' × {p.dp} replicas' if p.dp > 1 else ''}), {p.engine} "
             f"with {p.kv_dtype} KV")  # plain text: goes into text.md fields
    frac = FRACTION_NAME.get(p.engine)
    knob = (text.md(" Memory fraction {:.2f} ({}{}).", p.gpu_memory_utilization, frac,
                    ", the engine's default" if common.get("gpu_memory_utilization") is None else "")
            if frac and p.gpu_memory_utilization is not None else "")
    if common.get("kv_memory") is not None:  # the measured budget replaces what the fraction would give
        knob = text.md(" The KV budget is the one you measured (Engine options); the memory fraction does not change it.")
    if p.kv_budget_bytes <= 0:
        st.error(text.md("**Does not fit** on {}: the weights ({:,.2f} GiB per GPU) and the engine's overheads "
                         "leave no memory for the KV cache (budget {:,.2f} GiB). No context length fits: split "
                         "the model over more GPUs (TP), use lower-precision weights, or a larger GPU.", where,
                         p.weights_bytes / 2**30, p.kv_budget_bytes / 2**30) + knob + _what_fits(
            arch, gargs, common, ctx, users))
        return
    if p.max_sequences < 1:
        st.error(text.md("**Does not fit** on {}: one {:,}-token request needs {:,.2f} GiB of KV per GPU; the "
                         "KV budget is {:,.2f} GiB, enough for {:,} tokens. Shorten the context, use fp8 KV, "
                         "or more GPUs.", where, ctx, p.kv_bytes_per_sequence / 2**30, p.kv_budget_bytes / 2**30,
                         p.max_model_len_that_fits) + knob + _what_fits(arch, gargs, common, ctx, users))
        return
    n = p.total_sequences
    msg = text.md("**{}** of {:,} tokens each fit on {} ({:,.2f} per GPU); KV budget {:,.2f} GiB per GPU, "
                  "{:,} tokens per instance.", _plural(n, "user"), ctx, where, p.users_per_gpu,
                  p.kv_budget_bytes / 2**30, p.kv_tokens) + knob
    if prefix:
        msg += text.md(" With a {:,}-token shared prefix cached once: {}.", prefix,
                       _plural(p.users_with_prefix, "user"))
    if users:
        if p.fits:
            msg += text.md(" {} fit at up to {:,} tokens each.", _plural(users, "target user"),
                           p.max_context_for_users or ctx)
            st.success(msg + _what_fits(arch, gargs, common, ctx, users, fewer_than=p.num_gpus))
        else:
            st.error(text.md("**{} do not fit**: ", _plural(users, "target user")) + msg
                     + (text.md(" At {:,} users the longest context that fits is {:,}.", users,
                                p.max_context_for_users) if p.max_context_for_users else "")
                     + _what_fits(arch, gargs, common, ctx, users))
        return
    st.success(msg)
    for note in p.notes:
        text.caption(note)


def _what_fits(arch, gargs: dict, common: dict, ctx: int, users: int, *, fewer_than: int | None = None) -> str:
    """The smallest layout of this GPU that holds the users (kvplan.min_gpus), as Markdown; with
    `fewer_than`, only when it needs fewer GPUs than the current layout."""
    # Not the measured KV memory: it was measured on this layout, not on the ones searched.
    kw = {k: v for k, v in common.items() if k not in ("num_gpus", "tp", "pp", "kv_memory")}
    if sweeps.base_engine(common["engine"]) == "llama.cpp":  # min_gpus searches tensor-parallel sizes; llama.cpp splits layers
        return text.md(" llama.cpp: split the layers over more GPUs (the sidebar's GPUs per instance) or "
                       "offload layers to the CPU.")
    m = cached.min_gpus(arch, max_model_len=ctx, users=users or 1, **gargs, **kw)
    try:
        m = cached.raise_if_error(m)
    except KvplanError:
        return text.md(" Not even 8-way TP of this GPU holds one {:,}-token request: pick a larger GPU, "
                       "lower-precision weights or fp8 KV.", ctx)
    if fewer_than is not None and m.num_gpus >= fewer_than:
        return ""
    lead = " **Fewer GPUs would do:**" if fewer_than is not None else " **What would fit:**"
    return text.md(lead + " {} × this GPU at TP {}{} for {} of {:,} tokens.", m.num_gpus, m.tp,
                   f" ({m.dp} replicas)" if m.dp > 1 else "", _plural(users or 1, "user"), ctx)


widgets.run_page(body)
