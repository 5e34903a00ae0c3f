"""Plan (the landing page): a workload in, the smallest deployment that serves it out.

Inputs are in the page itself (not the sidebar: a phone collapses it), each bound to the URL.
The answer comes from `kvplan.recommend`; the curve and the longest fitting context from
`kvplan.ui.plan_view`. This page only draws.
"""

from __future__ import annotations

import streamlit as st

from kvplan.dtypes import KV_DTYPE_NAMES
from kvplan.engines import ENGINE_NAMES, resolve_engine
from kvplan.errors import KvplanError
from kvplan.gpus import list_gpus
from kvplan.registry import list_models
from kvplan.ui import cached, plan_chart, plan_options, plan_view, text, widgets
from kvplan.units import parse_tokens

QP = widgets.QP
DEFAULT_GPUS = ["H100-SXM", "H200"]
DEFAULT_ENGINES = ["vllm"]
WORKLOAD_KINDS = ("Users", "Requests/s")
WEIGHT_DTYPES = ("auto", "bf16", "fp8", "int4")
NO_DRAFT = "none (EAGLE: one layer shaped like the model's)"
# This page's labels for the field names an error from kvplan may carry (see widgets.describe).
LABELS = {"num_gpus": "GPUs you have", "tp": "TP per instance", "pp": "PP per instance", "users": "Concurrent users",
          "request_rate": "Requests per second", "prompt_tokens": "Prompt tokens", "output_tokens": "Output tokens",
          "prefix_tokens": "Shared prefix tokens", "max_model_len": "Prompt + output tokens",
          "tpot_ms": "Max ms per token", "ttft_ms": "Max ms to first token", "kv_dtype": "KV cache dtype",
          "weights_dtype": "Weights dtype", "gpu_memory_utilization": "GPU memory fraction",
          "kv_memory": "Measured KV memory per GPU", "block_size": "Block / page size (Engine options)",
          "dp_attention": "SGLang DP-attention size", "max_num_seqs": "vLLM max sequences per instance",
          "ubatch": "llama.cpp physical batch (-ub)", "max_loras": "LoRA adapter slots",
          "max_lora_rank": "Largest LoRA rank", "limit_mm_per_prompt": "vLLM multimodal items per prompt",
          "speculative": "Speculative decoding", "num_speculative_tokens": "Draft tokens per step",
          "draft_model": "Draft model", "engine_version": "Engine version", "max_tp": "Largest TP to search",
          "max_pp": "Largest PP to search", "gpu": "GPUs to consider", "engine": "Engines"}
# The expander's keys that are not in plan_options.KNOBS: a link that sets one opens the expander.
_OPTION_KEYS = ("util", "kvmem", "max_tp", "max_pp", "loras", "lora_rank", "mm", "spec", "spec_k", "draft")
# The input rows are horizontal containers (`_row`), not st.columns: one layout block per row instead of
# one per column (about 30 fewer of the ~100 messages a rerun sends, each one the browser redraws the page
# for; a users change to the updated chart went 279 -> 263 and 257 -> 244 ms, medians of two runs of 30
# changes alternating with the columns version, on a loaded 2-core machine). A row's boxes share its
# width and wrap below 128 px each; the GPU and engine lists get 2.4 and 1.6 shares of theirs (as the
# columns did) and a line each on a phone, as every Engine option does; there the alternatives are
# cards instead of a wide table.
_NARROW_CSS = """<style>
.st-key-plan_alts_cards { display: none !important; }
.st-key-gpus { flex: 2.4 1 0% !important; }
.st-key-engines { flex: 1.6 1 0% !important; }
.st-key-kv, .st-key-wdtype { flex: 1 1 0% !important; }
@media (max-width: 640px) {
  .st-key-plan_alts_table { display: none !important; }
  .st-key-plan_alts_cards { display: flex !important; }
  .st-key-gpus, .st-key-engines, [class*="st-key-plan_opts_"] > div { flex-basis: 100% !important; }
}
</style>"""


def _row(key: str | None = None, align: str = "bottom"):
    """A row of inputs (see _NARROW_CSS), their boxes level at the bottom whatever their labels' height.
    Rows keyed plan_opts_* (Engine options) stack one box per line on a phone, as columns did."""
    return st.container(horizontal=True, vertical_alignment=align, key=key)


def _describe(err: BaseException, label: str | None = None) -> str:
    return widgets.describe(err, label, labels=LABELS)


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


def _version_key(engine: str) -> str:
    return "ver_" + engine.replace(".", "")


def engine_options(engines: list[str], arch, errors: list[str], have: int) -> plan_options.Choices:
    """The "Engine options" expander: versions, memory, search limits and each engine's own knobs.
    Closed unless the link sets one of them, so the first screen stays short."""
    ch = plan_options.Choices(engines=tuple(engines))
    knobs = plan_options.knobs_for(engines)
    keys = [*_OPTION_KEYS, *(k.key for k in knobs), *(_version_key(e) for e in engines)]
    with st.expander("Engine options", expanded=any(k in st.query_params for k in keys)):
        st.caption("Rarely needed: blank keeps each engine's own default. Set here, they apply to the answer, "
                   "the chart, the memory, the launch command and the deployment you have.")
        for e in engines:  # one row per engine: its version, then its own knobs
            own = plan_options.knobs_for((e,))
            has_version = widgets._has_versions(e)
            if not has_version and not own:
                continue
            row = _row(f"plan_opts_{_version_key(e)}")  # a checkbox level with the boxes
            if has_version:
                label = f"{plan_options.engine_label(e)} version"
                raw = row.text_input(
                    label, "", key=_version_key(e), bind=QP, placeholder=f"newest: {widgets._newest(e)}",
                    help="The release whose allocation rules apply, e.g. 0.19 or 0.20.2 (llama.cpp: b4905 or ik); "
                         "blank = the newest kvplan models. The Accuracy page lists the rules that change between "
                         "versions.").strip()
                if raw:
                    try:
                        resolve_engine(e, raw)
                        ch.versions[e] = raw
                    except KvplanError as err:
                        errors.append(_describe(err, label))
            for k in own:
                if k.is_switch:
                    ch.knobs[k.key] = row.checkbox(k.label, value=k.default, key=k.key, bind=QP, help=k.help)
                else:
                    ch.knobs[k.key] = widgets.number_input(row, k.label, min_value=k.lo, max_value=k.hi,
                                                           value=k.default, step=k.step, key=k.key, help=k.help,
                                                           placeholder=k.placeholder or None, integer=True)
        m = _row("plan_opts_memory")
        ch.gpu_memory_utilization = widgets.number_input(
            m, "GPU memory fraction", min_value=0.05, max_value=1.0, value=None, placeholder="engine default",
            step=0.01, format="%.2f", key="util",
            help="The engine's memory knob: vLLM gpu_memory_utilization (default 0.92 from 0.21, 0.9 before), "
                 "SGLang mem_fraction_static, TensorRT-LLM free_gpu_memory_fraction. Blank = the engine's default.")
        raw = m.text_input("Measured KV memory per GPU", "", key="kvmem", bind=QP, disabled=not have,
                           placeholder="computed" if have else "for GPUs you have",
                           help="For the deployment you have (GPUs you have, above): the KV budget its engine "
                                "logged, e.g. vLLM's \"Available KV cache memory: 51.38 GiB\". It replaces "
                                "kvplan's computed budget on every GPU. Blank = computed.")
        try:
            ch.kv_memory = plan_options.parse_kv_memory(raw) if have else None
        except KvplanError as err:
            errors.append(_describe(err))
        ch.max_tp = widgets.selectbox(m, "Largest TP to search", plan_options.TP_LIMITS, index=3, key="max_tp",
                                   help="The largest tensor-parallel size the answer may use.")
        ch.max_pp = widgets.selectbox(m, "Largest PP to search", plan_options.PP_LIMITS, index=2, key="max_pp",
                                   help="The largest pipeline-parallel size (layers split over GPUs) the answer may use.")
        x = _row("plan_opts_extras")
        if any(e in plan_options.LORA_ENGINES for e in engines):
            ch.max_loras = widgets.number_input(
                x, "LoRA adapter slots", min_value=0, max_value=1024, value=0, key="loras",
                help="LoRA adapters served at once (vLLM --max-loras, SGLang --max-loras-per-batch); their buffers "
                     "come out of the KV budget. 0 = no LoRA. Modelled for vLLM and SGLang.")
            ch.max_lora_rank = widgets.number_input(x, "Largest LoRA rank", min_value=1, max_value=4096, value=16,
                                                    key="lora_rank", help="--max-lora-rank (default 16).")
        if any(e in plan_options.SPECULATIVE_ENGINES for e in engines):
            ch.speculative = widgets.selectbox(
                x, "Speculative decoding", plan_options.SPECULATIVE_METHODS, key="spec",
                help="The draft's own KV cache joins the pool: EAGLE adds one layer shaped like the model's, MTP the "
                     "model's own next-token layers, a draft model its layers; n-gram adds none.")
            ch.num_speculative_tokens = widgets.number_input(
                x, "Draft tokens per step", min_value=1, max_value=64, value=None, key="spec_k", integer=True,
                placeholder="method's default", help="Tokens proposed per step (vLLM hybrid models keep that many "
                                                    "more state blocks). Blank = the method's default.")
            if ch.speculative in plan_options.DRAFT_METHODS:
                draft = widgets.selectbox(st, "Draft model", [NO_DRAFT, *list_models()], key="draft",
                                     help="A bundled model as the draft (its weights and its cache are added).")
                ch.draft_model = None if draft == NO_DRAFT else draft
                if ch.speculative == "draft_model" and ch.draft_model is None:
                    errors.append("Draft model: pick the draft model that speculative decoding draft_model runs.")
        if arch is not None and arch.weight_dims.vision_num_layers and "vllm" in engines:
            raw = st.text_input(
                "vLLM multimodal items per prompt", "", key="mm", bind=QP, placeholder="engine default",
                help="vLLM --limit-mm-per-prompt: e.g. image=0,video=0 for text only (no encoder cache and no "
                     "encoder profiling run), or image=4.")
            try:
                ch.mm_limits = plan_options.check_mm_limits(raw)
            except KvplanError as err:
                ch.mm_limits = raw.strip()  # shown back as typed; the error stops the answer
                errors.append(_describe(err))
    return ch


def inputs():
    """Draw the inputs; returns (arch, settings dict, engine choices, errors)."""
    errors: list[str] = []
    arch = None
    with st.container(border=True):
        a = _row(align="top")  # the Hub and Upload pickers put a note under their box
        src = a.radio("Model source", widgets.SOURCES, key="plan_src", bind=QP, horizontal=True,
                      help="A bundled config (offline), any Hugging Face Hub id, or your config.json.")
        with a, st.container():  # the picker and what it may show under it, as one box of the row
            try:
                arch = widgets._load_model(src, "plan_")
            except KvplanError as err:
                errors.append(f"Model: {_describe(err)}")
            except Exception as err:  # noqa: BLE001 - a broken upload never shows a traceback
                errors.append(f"Model: could not load it ({type(err).__name__}: {err})")
        c = _row()
        kind = c.radio("Workload as", WORKLOAD_KINDS, key="wl", bind=QP, horizontal=True,
                       help="Concurrent users, or a request rate (concurrency follows from Little's law).")
        if kind == "Users":
            users = widgets.number_input(c, "Concurrent users", min_value=1, max_value=10_000_000, value=100,
                                         step=10, key="users")
            rate = None
        else:
            rate = widgets.number_input(c, "Requests per second", min_value=0.01, max_value=1e6, value=10.0,
                                        step=1.0, key="rate")
            users = None
        prompt = _tokens(c, "Prompt tokens", "7000", "prompt", "Mean prompt length (8000, 32k).", errors)
        output = _tokens(c, "Output tokens", "1000", "output", "Mean answer length.", errors)
        prefix = _tokens(c, "Shared prefix tokens", "0", "prefix",
                         "A system prompt every request shares, cached once (prefix caching).", errors, minimum=0)
        g = _row()
        catalog = [x.name for x in list_gpus()]
        gpus = g.multiselect("GPUs to consider", catalog, default=DEFAULT_GPUS, key="gpus", bind=QP)
        engines = g.multiselect("Engines", ENGINE_NAMES[:-1], default=DEFAULT_ENGINES, key="engines", bind=QP)
        kv_dtype = g.selectbox("KV cache dtype", KV_DTYPE_NAMES, key="kv", bind=QP,
                               help="auto = the model's dtype (llama.cpp: f16).")
        weights = g.selectbox("Weights dtype", WEIGHT_DTYPES, key="wdtype", bind=QP,
                              help="auto = as the checkpoint ships.")
        f = _row()
        tpot = widgets.number_input(f, "Max ms per token", min_value=0, max_value=10_000, value=0, step=10,
                                    key="tpot", help="Optional latency target: time per output token (0 = none).")
        ttft = widgets.number_input(f, "Max ms to first token", min_value=0, max_value=600_000, value=0, step=100,
                                    key="ttft", help="Optional latency target (0 = none).")
        have = widgets.number_input(f, "GPUs you have", min_value=0, max_value=4096, value=0, key="have",
                                    help="0 = find the fewest. Otherwise: check a deployment you have, of the first "
                                         "GPU and engine above.")
        tp = widgets.selectbox(f, "TP per instance", plan_view.TP_CHOICES, key="tp", disabled=not have,
                            help="Tensor-parallel GPUs per engine instance; the rest are replicas.")
        pp = widgets.selectbox(f, "PP per instance", plan_view.PP_CHOICES, key="pp", disabled=not have,
                            help="Pipeline stages per instance: the layers split over this many GPUs (how "
                                 "llama.cpp splits a model). GPUs you have = TP × PP × replicas.")
        choices = engine_options(engines, arch, errors, have)
    if have and tp * pp > have:
        errors.append(f"GPUs you have: {have:,} is fewer than one instance of TP {tp} × PP {pp} = {tp * pp} GPUs.")
    elif have and have % (tp * pp):
        errors.append(f"GPUs you have: {have:,} do not split into instances of TP {tp} × PP {pp} = {tp * pp} "
                      f"GPUs; use a multiple of {tp * pp}.")
    settings = dict(have=have, tp=int(tp), pp=int(pp), users=users, rate=rate, prompt_tokens=prompt,
                    output_tokens=output, prefix_tokens=prefix, gpus=gpus, engines=engines, kv_dtype=kv_dtype,
                    weights_dtype=weights, tpot_ms=int(tpot) or None, ttft_ms=int(ttft) or None)
    return arch, settings, choices, errors


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


def _options_tuple(choices: plan_options.Choices, engine: str) -> tuple:
    return tuple(sorted(choices.plan_options(engine).items()))


def _instance(d, prefix: int, choices: plan_options.Choices) -> plan_view.Instance:
    return plan_view.Instance(gpu=d.gpu, tp=d.tp, pp=d.pp, engine=d.engine, kv_dtype=d.kv_dtype,
                              weights_dtype=d.weights_dtype, prefix_tokens=prefix,
                              options=_options_tuple(choices, d.engine))


def _fixed(arch, s: dict, req: int, choices: plan_options.Choices):
    """The deployment the user has (None when they asked for the fewest GPUs)."""
    if not s["have"]:
        return None
    engine = s["engines"][0]
    return plan_view.fixed_plan(arch, gpu=s["gpus"][0], num_gpus=s["have"], tp=s["tp"], pp=s["pp"],
                                engine=engine, kv_dtype=s["kv_dtype"], weights_dtype=s["weights_dtype"],
                                prefix_tokens=s["prefix_tokens"], request_tokens=req,
                                **choices.plan_options(engine))


def _launch(arch, p, choices: plan_options.Choices) -> tuple[str, list[str]]:
    """The launch command of the deployment you have, with the engine options as flags, and a note
    naming the options it cannot set."""
    from kvplan.launch import launch_command, option_flags, unflagged_note
    cmd = launch_command(p.engine, arch.model_id, tp=p.tp, pp=p.pp, max_model_len=p.max_model_len,
                         max_num_seqs=max(1, p.max_sequences), kv_dtype=p.kv_dtype,
                         weights_dtype=p.weights_dtype, memory_fraction=p.gpu_memory_utilization)
    opts = choices.plan_options(p.engine)
    flags = option_flags(p.engine, opts)
    note = unflagged_note(p.engine, opts)
    return (f"{cmd} {flags}" if cmd and flags else cmd), ([note] if note and cmd else [])


def _versions_modelled(choices: plan_options.Choices) -> dict[str, str]:
    """Each engine's release whose rules are applied ("" for engines without versions)."""
    out = {}
    for e in choices.engines:
        try:
            out[e] = getattr(resolve_engine(e, choices.versions.get(e) or None)[1], "text", "") or ""
        except KvplanError:
            out[e] = ""
    return out


def _alternatives(rec) -> None:
    """The ranked deployments: a table on wide screens, one card per deployment on a phone (the
    table's eight columns scroll sideways at 390 px); CSS picks one by the screen's width."""
    rows = plan_view.alternatives_rows(rec)
    with st.container(key="plan_alts_table"):
        st.table(rows, hide_index=True)
    with st.container(key="plan_alts_cards"):
        st.markdown("\n\n".join(text.md("**{}**  \n{}", title, line)
                                 for title, line in plan_view.alternative_cards(rec)))


def body() -> None:
    # The phone layout's CSS first, so it is in place before the alternatives arrive (drawn as an
    # element: style-only HTML goes to Streamlit's event container, where it was lost on some reruns).
    st.html(_NARROW_CSS + '<span aria-hidden="true"></span>')
    st.title("Plan: GPUs for your users")
    st.caption("Tell kvplan your model and workload; it answers how many GPUs of which kind, in which layout "
               "and on which engine serve it — the KV cache sized to the byte by each engine's own rules.")
    answer = st.container()
    arch, s, choices, errors = inputs()
    with answer:  # where the answer would be: the first thing read, also on a phone
        for msg in dict.fromkeys(errors):
            _say("error", msg)
    if arch is None or errors:
        return
    if not s["gpus"] or not s["engines"]:
        answer.info("Pick at least one GPU and one engine.")
        return
    kwargs = dict(users=s["users"], request_rate=s["rate"], prompt_tokens=s["prompt_tokens"],
                  output_tokens=s["output_tokens"], prefix_tokens=s["prefix_tokens"], tpot_ms=s["tpot_ms"],
                  ttft_ms=s["ttft_ms"], gpus=tuple(s["gpus"]), engines=choices.engine_specs(),
                  kv_dtype=s["kv_dtype"], weights_dtype=s["weights_dtype"], max_tp=choices.max_tp,
                  max_pp=choices.max_pp, options_by_engine=choices.by_engine() or None, **choices.common())
    req = s["prompt_tokens"] + s["output_tokens"]
    try:
        fixed = _fixed(arch, s, req, choices)
        rec = _recommend(arch, tuple(kwargs.items()))
    except KvplanError as err:
        with answer:
            _say("error", _describe(err))
        return
    best = rec.best
    with answer:
        if fixed is not None:
            st.subheader(plan_view.fixed_sentence(fixed), anchor=False)
            if fixed.free_bytes < 0:  # only with a measured KV memory: the computed budget always fits
                kv, over = plan_view.gib(choices.kv_memory), plan_view.gib(-fixed.free_bytes)
                _say("warning", f"Measured KV memory per GPU: the weights, the overheads and {kv} of KV exceed the "
                                f"{fixed.gpu}'s memory by {over}; check the GPU, the layout and the measured value.")
        if best is None:
            _say("error", f"Nothing fits: {rec.why_not}")
            if rec.smallest_change:
                _say("info", f"Smallest change that would: {rec.smallest_change}")
        elif fixed is None:
            st.subheader(plan_view.answer_sentence(rec), anchor=False)
            _say("caption", plan_view.answer_details(rec))
        else:
            _say("info", f"To serve the workload: {plan_view.answer_sentence(rec)} {plan_view.answer_details(rec)}")
        _say("caption", f"Model: {arch.model_id}. {choices.describe(_versions_modelled(choices))}")
    if best is None and fixed is None:
        return

    if best is not None:
        st.subheader("Ranked alternatives", anchor=False)
        _alternatives(rec)

    max_ctx = max(arch.max_position_embeddings or 131072, req)
    rows, longest, target = [], 0, best.users if best else (s["users"] or 0)
    if fixed is not None:
        inst = plan_view.Instance(gpu=fixed.gpu, tp=fixed.tp, pp=fixed.pp, engine=fixed.engine,
                                  kv_dtype=s["kv_dtype"], weights_dtype=s["weights_dtype"],
                                  prefix_tokens=s["prefix_tokens"], options=_options_tuple(choices, fixed.engine))
        curve = _curve(arch, inst, max_ctx, req)
        longest = _longest(arch, inst, -(-target // fixed.dp) if target else 0, max_ctx, curve)
        rows += plan_view.deployment_rows(curve, fixed.dp, f"yours: {fixed.num_gpus:,} × {fixed.gpu}")
    for i, d in enumerate(rec.deployments[:2]):  # two lines read clearly; each costs a sweep
        inst = _instance(d, s["prefix_tokens"], choices)
        curve = _curve(arch, inst, max_ctx, req)
        if fixed is None and i == 0:
            longest = _longest(arch, inst, -(-d.users // d.replicas), max_ctx, curve)
        rows += plan_view.deployment_rows(curve, d.replicas, plan_view.deployment_label(d))
    if rows:
        data, spec = plan_chart.users_vs_context(rows, target_users=target, request_tokens=req, longest=longest,
                                                 title="Users held vs tokens per request")
        st.vega_lite_chart(data, spec, width="stretch")
        st.caption("KV memory limit only: whole requests at that length, a shared prefix stored once. "
                   "A latency target can lower it (see the table).")

    shown = fixed if fixed is not None else best
    ledger = plan_view.fixed_ledger_rows(fixed) if fixed is not None else plan_view.ledger_rows(best)
    total = fixed.gpu_memory_bytes if fixed is not None else best.memory.gpu_memory_bytes
    st.subheader(f"Memory per GPU ({shown.gpu})", anchor=False)
    left, right = st.columns([1, 1])
    left.html(plan_chart.memory_ledger(ledger, title="GiB per GPU"))
    right.table(plan_view.ledger_table(ledger, total, kv_measured=choices.kv_memory is not None), hide_index=True)

    if best is not None:
        st.subheader(f"Latency estimate: {plan_view.deployment_label(best)}", anchor=False)
        for line in plan_view.latency_notes(rec):
            st.caption(line)
    launch, notes = _launch(arch, fixed, choices) if fixed is not None else (best.launch, list(best.notes))
    if launch:
        st.subheader("Launch command", anchor=False)
        st.code(plan_view.shell_lines(launch), language="bash", wrap_lines=True)
        for note in notes:
            _say("caption", note[:1].upper() + note[1:])


widgets.run_page(body)
