"""Capacity: GPU(s), count, TP, engine, utilization -> concurrent users per GPU vs context, the memory
split per GPU, and a fits / does-not-fit banner that says what would fit. All numbers from kvplan.plan."""

import streamlit as st

from kvplan.errors import DoesNotFitError, KvplanError
from kvplan.gpus import list_gpus
from kvplan.ui import charts, sweeps, text, widgets
from kvplan.units import fmt_auto

QP = widgets.QP
PLAN_FIELDS = ("gpu_memory_bytes", "weights_bytes", "activation_bytes", "non_torch_bytes", "cuda_graph_bytes",
               "kv_budget_bytes", "free_bytes", "num_blocks", "kv_tokens", "max_concurrency", "users_per_gpu",
               "max_sequences", "fits", "max_context_for_users", "users_with_prefix", "decode_ms_per_step",
               "decode_tokens_per_s_per_user", "prefill_ms")


def _planner():
    try:
        from kvplan.planner import plan
    except ImportError:
        return None
    return plan


def _row(label: str, p) -> dict:
    d = {"gpu": label}
    for f in PLAN_FIELDS:
        v = getattr(p, f, None)
        d[f] = v if v is None or isinstance(v, (int, float, bool, str)) else str(v)
    return d


def body() -> None:
    sel = widgets.selection()
    st.title("Capacity: users per GPU")
    arch = widgets.require_model(sel)
    ctx = widgets.require_context(sel)
    plan = _planner()
    if plan is None:
        st.info("The capacity planner (`kvplan.plan`) is not installed in this build yet.")
        return

    c = st.columns([3, 1, 1, 1.3, 1.3, 1.2])
    catalog = [g.name for g in list_gpus()]
    extra = c[0].multiselect("Also compare GPUs", catalog, key="cap_gpus", bind=QP,
                             help="One line per GPU; the sidebar's GPU is always first.")
    num_gpus = widgets.number_input(c[1], "GPUs", min_value=1, max_value=1024, value=1, key="cap_num")
    tp = widgets.number_input(c[2], "TP", min_value=1, max_value=1024, value=1, key="cap_tp")
    util = widgets.number_input(c[3], "Utilization (0 = engine default)", min_value=0.0, max_value=1.0,
                                value=0.0, step=0.05, format="%.2f", key="cap_util")
    prefix = widgets.number_input(c[4], "Shared prefix tokens", min_value=0, max_value=1 << 24, value=0,
                                  step=512, key="cap_prefix",
                                  help="A system prompt every user shares, cached once (prefix caching).")
    users = widgets.number_input(c[5], "Target users (0 = none)", min_value=0, max_value=1_000_000, value=0,
                                 key="cap_users")

    gpus = {}
    if sel.gpu:
        gpus[sel.gpu] = {"gpu": sel.gpu}
    elif sel.gpu_memory:
        gpus[f"custom {fmt_auto(sel.gpu_memory)}"] = {"gpu_memory": sel.gpu_memory}
    for g in extra:
        gpus.setdefault(g, {"gpu": g})
    if not gpus:
        st.info("Choose a GPU in the sidebar.")
        return
    common = dict(num_gpus=num_gpus, tp=tp, engine=sel.engine, kv_dtype=sel.kv_dtype,
                  gpu_memory_utilization=util or None, prefix_tokens=prefix)

    # The banner: the sidebar GPU at the sidebar context.
    first_label = next(iter(gpus))
    plans, bars, errors = [], [], []
    for label, gargs in gpus.items():
        try:
            p = plan(arch, max_model_len=ctx, users=users or None, **gargs, **common)
        except KvplanError as err:
            if label == first_label:
                text.error(f"{label}: {widgets.describe(err)}")
            else:
                errors.append(f"{label}: {err}")
            continue
        plans.append(_row(label, p))
        bars += sweeps.memory_rows(p, label)
        if label == first_label:
            _banner(p, label, ctx, users, num_gpus, prefix, lambda: _what_fits(arch, gargs, common, ctx, users))
    widgets.show_errors(errors)

    hi = sweeps.max_context(arch, ctx)
    grid = [c for c in sweeps.context_grid(hi, points=32) if c >= prefix]  # a prefix fits in the context
    curve = sweeps.users_vs_context(arch, grid, gpus=gpus, plan_fn=plan, **common)
    widgets.show_errors(curve.errors)
    left, right = st.columns([3, 2])
    if curve.rows:
        left.plotly_chart(charts.users_lines(curve.rows, title=f"{arch.model_id} · {sel.engine} · TP {tp}",
                                             mark_context=ctx), key="cap_users_chart")
    if bars:
        right.plotly_chart(charts.memory_bars(bars, title=f"memory per GPU at {ctx:,} tokens"),
                           key="cap_bars")
    if plans:
        st.subheader("Plans")
        widgets.table(plans, "capacity", gib=("kv_budget_bytes", "weights_bytes"))


def _what_fits(arch, gargs: dict, common: dict, ctx: int, users: int) -> str:
    """The smallest layout of this GPU that would hold the users (kvplan.min_gpus), as a sentence."""
    from kvplan.planner import min_gpus
    kw = {k: v for k, v in common.items() if k not in ("num_gpus", "tp")}
    try:
        m = min_gpus(arch, max_model_len=ctx, users=users or 1, **gargs, **kw)
    except KvplanError:
        return text.md(" Not even 8-way TP of this GPU holds one request: pick a larger GPU or fp8 weights/KV.")
    return text.md(" **What would fit:** {}× this GPU at TP {} ({:,.2f} users per GPU at {:,} tokens).",
                   m.num_gpus, m.tp, m.users_per_gpu, ctx)


def _banner(p, label: str, ctx: int, users: int, num_gpus: int, prefix: int, what_fits) -> None:
    """Fits / does-not-fit, with what would fit (the planner's own message when it does not)."""
    where = f"{num_gpus}× {label}, TP {p.tp}, {p.engine} ({p.kv_dtype} KV)"
    if not p.fits:
        try:
            p.check()
        except DoesNotFitError as err:
            st.error(text.md("**Does not fit** on {}: {}", where, err) + what_fits())
        return
    msg = text.md("**Fits** on {}: **{:,.2f} concurrent {:,}-token users per GPU** ({:,} full-length "
                  "sequences in all) — KV budget {} per GPU, {:,} tokens.", where, p.users_per_gpu, ctx,
                  p.total_sequences, fmt_auto(p.kv_budget_bytes), p.kv_tokens)
    if prefix:
        msg += text.md(" With a {:,}-token shared prefix cached once: {:,} users.", prefix, p.users_with_prefix)
    if users and p.max_context_for_users:
        msg += text.md(" {:,} users fit up to {:,} tokens each.", users, p.max_context_for_users)
    st.success(msg)
    for note in p.notes:
        text.caption(note)


widgets.run_page(body)
