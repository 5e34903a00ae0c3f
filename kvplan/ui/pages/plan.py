"""Plan (the landing page): a workload in, the smallest deployment that serves it out.

Inputs are in the page itself (not the sidebar: a phone collapses it), each bound to the URL.
The answer comes from `kvplan.recommend`; the curve and the longest fitting context from
`kvplan.ui.plan_view`. This page only draws.
"""

from __future__ import annotations

import streamlit as st

from kvplan.dtypes import KV_DTYPE_NAMES
from kvplan.engines import ENGINE_NAMES
from kvplan.errors import KvplanError
from kvplan.gpus import list_gpus
from kvplan.ui import cached, plan_chart, plan_view, widgets

try:
    from kvplan.ui import text
except ImportError:  # until kvplan/ui/text.py lands: escape every Markdown character here
    import string as _string
    import types

    def _plain(kind: str):
        return lambda m: getattr(st, kind)("".join("\\" + c if c in _string.punctuation else c for c in str(m)))

    text = types.SimpleNamespace(**{k: _plain(k) for k in ("error", "warning", "info", "success", "caption")})
from kvplan.units import parse_tokens

QP = widgets.QP
DEFAULT_GPUS = ["H100-SXM", "H200"]
DEFAULT_ENGINES = ["vllm"]
WORKLOAD_KINDS = ("Users", "Requests/s")
WEIGHT_DTYPES = ("auto", "bf16", "fp8", "int4")


def _tokens(where, label: str, default: str, key: str, help: str, errors: list[str], minimum: int = 1) -> int:
    raw = where.text_input(label, default, key=key, bind=QP, help=help)
    try:
        n = parse_tokens(raw, key)
        if not minimum <= n <= 1 << 34:
            raise ValueError
        return n
    except (KvplanError, ValueError):
        errors.append(f"{label}: cannot read that value; write a token count such as 8000 or 32k")
        return 0


def inputs():
    """Draw the inputs; returns (arch, settings dict, errors)."""
    errors: list[str] = []
    arch = None
    with st.container(border=True):
        a, b = st.columns([1, 3])
        src = a.radio("Model source", widgets.SOURCES, key="plan_src", bind=QP, horizontal=True,
                      help="A bundled config (offline), any Hugging Face Hub id, or your config.json.")
        with b:
            try:
                arch = widgets._load_model(src, "plan_")
            except KvplanError as err:
                errors.append(f"Model: {err}")
            except Exception as err:  # noqa: BLE001 - a broken upload never shows a traceback
                errors.append(f"Model: could not load it ({type(err).__name__}: {err})")
        c = st.columns([1.2, 1.2, 1, 1, 1])
        kind = c[0].radio("Workload as", WORKLOAD_KINDS, key="wl", bind=QP, horizontal=True,
                          help="Concurrent users, or a request rate (concurrency follows from Little's law).")
        if kind == "Users":
            users = int(c[1].number_input("Concurrent users", min_value=1, max_value=10_000_000, value=100,
                                          step=10, key="users", bind=QP))
            rate = None
        else:
            rate = float(c[1].number_input("Requests per second", min_value=0.01, max_value=1e6, value=10.0,
                                           step=1.0, key="rate", bind=QP))
            users = None
        prompt = _tokens(c[2], "Prompt tokens", "7000", "prompt", "Mean prompt length (8000, 32k).", errors)
        output = _tokens(c[3], "Output tokens", "1000", "output", "Mean answer length.", errors)
        prefix = _tokens(c[4], "Shared prefix tokens", "0", "prefix",
                         "A system prompt every request shares, cached once (prefix caching).", errors, minimum=0)
        g = st.columns([2.4, 1.6, 1, 1])
        catalog = [x.name for x in list_gpus()]
        gpus = g[0].multiselect("GPUs to consider", catalog, default=DEFAULT_GPUS, key="gpus", bind=QP)
        engines = g[1].multiselect("Engines", ENGINE_NAMES[:-1], default=DEFAULT_ENGINES, key="engines",
                                   bind=QP)
        kv_dtype = g[2].selectbox("KV cache dtype", KV_DTYPE_NAMES, key="kv", bind=QP,
                                  help="auto = the model's dtype (llama.cpp: f16).")
        weights = g[3].selectbox("Weights dtype", WEIGHT_DTYPES, key="wdtype", bind=QP,
                                 help="auto = as the checkpoint ships.")
        f = st.columns(5)
        tpot = f[0].number_input("Max ms per token", min_value=0, max_value=10_000, value=0, step=10, key="tpot",
                                 bind=QP, help="Optional latency target: time per output token (0 = none).")
        ttft = f[1].number_input("Max ms to first token", min_value=0, max_value=600_000, value=0, step=100,
                                 key="ttft", bind=QP, help="Optional latency target (0 = none).")
        ver = f[2].text_input("Engine version", "", key="ver", bind=QP, placeholder="newest modelled",
                              help="e.g. 0.19 for vLLM 0.19; blank = the newest behaviour kvplan models.").strip()
        have = int(f[3].number_input("GPUs you have", min_value=0, max_value=4096, value=0, key="have", bind=QP,
                                     help="0 = find the fewest. Otherwise: check a deployment you have, of "
                                          "the first GPU and engine above."))
        tp = f[4].selectbox("TP per instance", plan_view.TP_CHOICES, key="tp", bind=QP, disabled=not have,
                            help="Tensor-parallel GPUs per engine instance; the rest are replicas.")
    settings = dict(engine_version=ver, have=have, tp=int(tp), users=users, rate=rate, prompt_tokens=prompt, output_tokens=output, prefix_tokens=prefix,
                    gpus=gpus, engines=engines, kv_dtype=kv_dtype, weights_dtype=weights,
                    tpot_ms=int(tpot) or None, ttft_ms=int(ttft) or None)
    return arch, settings, errors


def _say(kind: str, message) -> None:
    """Plain text in an alert box: messages may quote the user's input, never rendered as Markdown."""
    getattr(text, kind)(message)


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=cached.HASH_FUNCS)
def _recommend(arch, kwargs: tuple):
    from kvplan.recommend import recommend
    return recommend(arch, **dict(kwargs))


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=cached.HASH_FUNCS)
def _curve(arch, inst: plan_view.Instance, max_context: int, request_tokens: int) -> plan_view.Curve:
    grid = plan_view.context_points(max_context, request_tokens, start=plan_view.MIN_CONTEXT + inst.prefix_tokens)
    return plan_view.instance_curve(arch, inst, grid)


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=cached.HASH_FUNCS)
def _longest(arch, inst: plan_view.Instance, need: int, max_context: int, _curve: plan_view.Curve) -> int:
    """Cached apart from the curve: a new user count moves only this (`_curve` brackets it, unhashed)."""
    return plan_view.longest_context_for(arch, inst, need, max_context, curve=_curve) if need else 0


def _instance(d, prefix: int) -> plan_view.Instance:
    return plan_view.Instance(gpu=d.gpu, tp=d.tp, pp=d.pp, engine=d.engine, kv_dtype=d.kv_dtype,
                              weights_dtype=d.weights_dtype, prefix_tokens=prefix)


def _fixed(arch, s: dict, req: int):
    """The deployment the user has (None when they asked for the fewest GPUs)."""
    if not s["have"]:
        return None
    return plan_view.fixed_plan(arch, gpu=s["gpus"][0], num_gpus=s["have"], tp=min(s["tp"], s["have"]),
                                engine=s["engines"][0], kv_dtype=s["kv_dtype"], weights_dtype=s["weights_dtype"],
                                prefix_tokens=s["prefix_tokens"], request_tokens=req,
                                engine_version=s["engine_version"] or None)


def _launch(arch, p) -> str:
    from kvplan.launch import launch_command
    return launch_command(p.engine, arch.model_id, tp=p.tp, pp=p.pp, max_model_len=p.max_model_len,
                          max_num_seqs=max(1, p.max_sequences), kv_dtype=p.kv_dtype,
                          weights_dtype=p.weights_dtype, memory_fraction=p.gpu_memory_utilization)


def body() -> None:
    st.title("Plan: GPUs for your users")
    st.caption("Tell kvplan your model and workload; it answers how many GPUs of which kind, in which layout "
               "and on which engine serve it — the KV cache sized to the byte by each engine's own rules.")
    answer = st.container()
    arch, s, errors = inputs()
    for msg in errors:
        _say("error", msg)
    if arch is None or errors:
        return
    if not s["gpus"] or not s["engines"]:
        answer.info("Pick at least one GPU and one engine.")
        return
    kwargs = dict(users=s["users"], request_rate=s["rate"], prompt_tokens=s["prompt_tokens"],
                  output_tokens=s["output_tokens"], prefix_tokens=s["prefix_tokens"], tpot_ms=s["tpot_ms"],
                  ttft_ms=s["ttft_ms"], gpus=tuple(s["gpus"]), engines=tuple(s["engines"]),
                  kv_dtype=s["kv_dtype"], weights_dtype=s["weights_dtype"],
                  engine_version=s["engine_version"] or None)
    req = s["prompt_tokens"] + s["output_tokens"]
    try:
        fixed = _fixed(arch, s, req)
        rec = _recommend(arch, tuple(kwargs.items()))
    except KvplanError as err:
        with answer:
            _say("error", widgets.describe(err) if hasattr(widgets, "describe") else err)
        return
    best = rec.best
    with answer:
        if fixed is not None:
            st.subheader(plan_view.fixed_sentence(fixed), anchor=False)
        if best is None:
            _say("error", f"Nothing fits: {rec.why_not}")
            if rec.smallest_change:
                _say("info", f"Smallest change that would: {rec.smallest_change}")
        elif fixed is None:
            st.subheader(plan_view.answer_sentence(rec), anchor=False)
            _say("caption", plan_view.answer_details(rec))
        else:
            _say("info", f"To serve the workload: {plan_view.answer_sentence(rec)} {plan_view.answer_details(rec)}")
        _say("caption", f"Model: {arch.model_id}")
    if best is None and fixed is None:
        return

    if best is not None:
        st.subheader("Ranked alternatives", anchor=False)
        st.table(plan_view.alternatives_rows(rec), hide_index=True)

    max_ctx = max(arch.max_position_embeddings or 131072, req)
    rows, longest, target = [], 0, best.users if best else (s["users"] or 0)
    if fixed is not None:
        inst = plan_view.Instance(gpu=fixed.gpu, tp=fixed.tp, pp=fixed.pp, engine=fixed.engine,
                                  kv_dtype=s["kv_dtype"], weights_dtype=s["weights_dtype"],
                                  prefix_tokens=s["prefix_tokens"])
        curve = _curve(arch, inst, max_ctx, req)
        longest = _longest(arch, inst, -(-target // fixed.dp) if target else 0, max_ctx, curve)
        rows += plan_view.deployment_rows(curve, fixed.dp, f"yours: {fixed.num_gpus:,} × {fixed.gpu}")
    for i, d in enumerate(rec.deployments[:2]):  # two lines read clearly; each costs a sweep
        inst = _instance(d, s["prefix_tokens"])
        curve = _curve(arch, inst, max_ctx, req)
        if fixed is None and i == 0:
            longest = _longest(arch, inst, -(-d.users // d.replicas), max_ctx, curve)
        rows += plan_view.deployment_rows(curve, d.replicas, plan_view.deployment_label(d))
    if rows:
        st.plotly_chart(plan_chart.users_vs_context(
            rows, target_users=target, request_tokens=req, longest=longest,
            title="Users held vs tokens per request"), key="plan_users_chart")
        st.caption("KV memory limit only: whole requests at that length, a shared prefix stored once. "
                   "A latency target can lower it (see the table).")

    shown = fixed if fixed is not None else best
    ledger = plan_view.fixed_ledger_rows(fixed) if fixed is not None else plan_view.ledger_rows(best)
    total = fixed.gpu_memory_bytes if fixed is not None else best.memory.gpu_memory_bytes
    st.subheader(f"Memory per GPU ({shown.gpu})", anchor=False)
    left, right = st.columns([1, 1])
    left.plotly_chart(plan_chart.memory_ledger(ledger, title="GiB per GPU"), key="plan_ledger")
    right.table(plan_view.ledger_table(ledger, total), hide_index=True)

    if best is not None:
        st.subheader(f"Latency estimate: {plan_view.deployment_label(best)}", anchor=False)
        for line in plan_view.latency_notes(rec):
            st.caption(line)
    launch = _launch(arch, fixed) if fixed is not None else best.launch
    if launch:
        st.subheader("Launch command", anchor=False)
        st.code(launch, language="bash", wrap_lines=True)
        for note in (() if fixed is not None else best.notes):
            _say("caption", note)


widgets.run_page(body)
