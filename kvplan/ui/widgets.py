"""Streamlit pieces shared by every page: the sidebar (model, engine, dtype, GPU, context, what-ifs),
error display, and CSV/JSON downloads.

Every widget has a `key` and `bind="query-params"`, so a copied URL reproduces the view. The sidebar
is drawn by `app.py` on every rerun (query params are cleared on a page switch, so shared inputs must
live there); pages read the result with `selection()`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from kvplan.engines import DEFAULT_ENGINE, ENGINE_NAMES
from kvplan.errors import InvalidInputError, KvplanError
from kvplan.gpus import get_gpu, list_gpus
from kvplan.hf_config import parse_config
from kvplan.layers import ModelArch
from kvplan.registry import list_models, load_model, parse_json
from kvplan.ui import cached, plan_options, sweeps, tables, text
from kvplan.ui.whatif import ATTENTION_CHOICES, WhatIf, apply
from kvplan.units import parse_bytes, parse_tokens

log = logging.getLogger("kvplan.ui")

QP = "query-params"
DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"
DEFAULT_GPU = "H100-SXM"
CUSTOM_GPU = "custom"
DEFAULT_CONTEXT = "32k"
# Bound widgets put the *shown* option in the URL (?src=Hub), so the options are short words.
SOURCES = ("Bundled", "Hub", "Upload")
MAX_UPLOAD_MB = 4
_STATE_KEY = "_kvplan_selection"


@dataclass
class Selection:
    """What the sidebar says; `arch` is None when the model could not be loaded (see `errors`)."""

    arch: ModelArch | None = None
    engine: str = DEFAULT_ENGINE
    engine_spec: str = DEFAULT_ENGINE  # the engine with its version ("vllm@0.19"): what the core is given
    kv_dtype: str = "auto"
    gpu: str | None = DEFAULT_GPU  # a catalog name, or None for a custom GPU (see gpu_memory)
    gpu_memory: int | None = None
    context_len: int | None = None  # what to size: the typed context, capped at the model's maximum
    asked_context: int | None = None  # what was typed
    tp: int = 1
    pp: int = 1  # pipeline stages per instance (vLLM / SGLang / TRT-LLM; llama.cpp's layer split is `tp`)
    whatif: WhatIf = field(default_factory=WhatIf)
    page: str = ""  # the page the sidebar was drawn for: which engine options it offered
    # The "Engine options" expander: Choices.own(engine) is every option of one engine; the pages take
    # theirs through kv_options / plan_options, so an engine is never given another's knob.
    choices: plan_options.Choices = field(default_factory=plan_options.Choices)
    kv_memory: int | None = None  # Capacity: the measured KV budget per GPU (replaces the computed one)
    labels: dict[str, str] = field(default_factory=dict)  # option field -> the app's label, for errors
    errors: list[str] = field(default_factory=list)
    error_fields: list[str] = field(default_factory=list)  # the sidebar labels with a problem

    def kv_options(self, engine: str) -> dict[str, Any]:
        """The engine options `kvplan.kv_cache` takes for `engine` ("vllm@0.19" too): the same
        arguments as `kvplan size --block-size ... --speculative ...`."""
        base = sweeps.base_engine(engine)
        return plan_options.kv_cache_options(self.choices.own(base), base)

    def plan_options(self, engine: str) -> dict[str, Any]:
        """The engine and planner options `kvplan.plan` takes for `engine` (LoRA, multimodal,
        max_num_seqs, the measured KV memory): `kvplan plan --block-size ... --kv-memory ...`."""
        out = self.choices.own(sweeps.base_engine(engine))
        if self.kv_memory is not None:
            out["kv_memory"] = self.kv_memory
        return out

    def options_key(self, engines: list[str] | tuple[str, ...], *, plan: bool = False) -> tuple:
        """Each engine's options as a hashable value (part of every cached result's key)."""
        get = self.plan_options if plan else self.kv_options
        return tuple((e, tuple(sorted(get(e).items()))) for e in engines)

    def plan_gpu(self) -> dict[str, Any]:
        """The GPU arguments of `kvplan.plan` for the sidebar's GPU."""
        return {"gpu": self.gpu} if self.gpu else {"gpu_memory": self.gpu_memory}

    def gpu_label(self) -> str:
        return self.gpu or (f"custom {self.gpu_memory / 2**30:,.1f} GiB GPU" if self.gpu_memory else "no GPU")

    def gpu_memory_bytes(self) -> int | None:
        """Total memory of the sidebar's GPU (bytes), None when there is none."""
        if self.gpu:
            try:
                return get_gpu(self.gpu).memory_bytes
            except KvplanError:
                return None
        return self.gpu_memory

    def fail(self, label: str, message: str) -> None:
        """Record a problem with the sidebar input `label` and show `message` (plain text) there."""
        self.errors.append(message)
        if label not in self.error_fields:
            self.error_fields.append(label)
        text.error(message)


# The app's label for each API / CLI field name an error may carry, so messages name what the user sees.
LABELS = {"context": "Context length", "context_len": "Context length", "max_model_len": "Context length",
          "gpu_memory": "GPU memory", "window": "Sliding window", "max_context": "Max context",
          "attention": "Attention", "batch": "Batch (sequences)", "tp": "GPUs per instance (TP)", "pp": "GPUs per instance (layer split)",
          "num_gpus": "GPUs", "users": "Target users", "prefix_tokens": "Shared prefix tokens",
          "gpu_memory_utilization": "Memory fraction", "kv_dtype": "KV cache dtype", "engine": "Engine",
          "gpu": "GPU"}
# The sidebar's pipeline-parallel sizes (those above the model's layer count are not offered).
PP_SIZES = (1, 2, 4, 8)
PP_ENGINES = ("vllm", "sglang", "trtllm")  # llama.cpp's layer split is the GPUs-per-instance box
NO_DRAFT = "none (EAGLE: one layer shaped like the model's)"


def describe(err: BaseException, label: str | None = None, labels: dict[str, str] | None = None) -> str:
    """One line for an error, with the app's label in place of the API field name (plain text: show
    it with `text.error`). `labels`: a page's own labels for field names, before the sidebar's."""
    msg = str(err)
    field_name = getattr(err, "field", None)
    shown = label or (labels or {}).get(field_name or "") or LABELS.get(field_name or "")
    if isinstance(err, KvplanError) and field_name and shown and msg.startswith(f"{field_name}: "):
        return f"{shown}: {msg[len(field_name) + 2:]}"
    if shown and label:
        return f"{shown}: {msg}"
    return msg


def _url_number_problem(raw: Any, lo: float, hi: float, integer: bool) -> str | None:
    """Why a URL value cannot seed a number input (None if it can): Streamlit's own parser turns
    `?window=1e999` into `int(inf)` and raises outside the app's error handling."""
    value = raw[-1] if isinstance(raw, list) and raw else raw
    s = str(value).strip()
    if len(s) > 40:
        return "is not a number in range"
    try:
        x = float(s)
    except ValueError:
        return "is not a number"
    if x != x or x in (float("inf"), float("-inf")):
        return "is not a finite number"
    if integer and x != int(x):
        return "is not a whole number"
    if not lo <= x <= hi:
        return f"must be between {lo:,} and {hi:,}"
    return None


def _initial_url_value(key: str) -> list[str] | None:
    """The value the page's URL gave `key` (what a bound widget is seeded from), or None."""
    try:
        from streamlit.runtime.state.session_state_proxy import get_session_state
        with get_session_state().query_params() as qp:
            v = qp.get_initial_value(key)
    except (AttributeError, ImportError):  # another Streamlit: the current URL is the next best thing
        v = st.query_params.get_all(key) if key in st.query_params else None
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


def _drop_url_value(key: str) -> None:
    """Forget a bad URL value, so the bound widget starts from its default instead of parsing it."""
    try:
        from streamlit.runtime.state.session_state_proxy import get_session_state
        with get_session_state().query_params() as qp:
            getattr(qp, "_initial_query_params", {}).pop(key, None)
    except (AttributeError, ImportError):
        pass
    if key in st.query_params:
        del st.query_params[key]


def number_input(where: Any, label: str, *, key: str, min_value: int | float, max_value: int | float,
                 value: int | float | None, step: int | float | None = None, help: str | None = None,
                 format: str | None = None, placeholder: str | None = None, integer: bool | None = None) -> Any:
    """`st.number_input` bound to the URL, whose URL value is checked first: a value that is not a
    finite number in range is dropped (the default is used) with a one-line message naming `label`.
    Whole numbers when `value` is an int (or `integer`, for a blank default)."""
    if integer is None:
        integer = isinstance(value, int) and not isinstance(value, bool)
    raw = _initial_url_value(key)
    if raw:
        problem = _url_number_problem(raw, min_value, max_value, integer)
        if problem:
            default = "the default" if value is None else f"{value:,}"
            _refuse_link_value(where, key, label, raw[-1], f"{problem}; using {default}")
    kwargs = {"step": step} if step is not None else {}
    if format:
        kwargs["format"] = format
    if placeholder:
        kwargs["placeholder"] = placeholder
    out = where.number_input(label, min_value=min_value, max_value=max_value, value=value, key=key, bind=QP,
                             help=help, **kwargs)
    if out is None:
        return None
    return int(out) if integer else float(out)


def _refuse_link_value(where: Any, key: str, label: str, raw: Any, why: str) -> None:
    """Drop a link's value for `key` and say so in one line naming `label` (the value quoted, cut)."""
    _drop_url_value(key)
    shown = str(raw)
    shown = shown if len(shown) <= 40 else shown[:40] + "…"
    msg = f"{label}: the link's value {shown!r} {why}."
    if where is st:
        text.warning(msg)
    else:
        with where:
            text.warning(msg)


def selectbox(where: Any, label: str, options: Any, *, key: str, index: int = 0, help: str | None = None,
              disabled: bool = False) -> Any:
    """`st.selectbox` bound to the URL, whose URL value is checked first: Streamlit silently shows the
    default for a value that is not an option (`?pp=3` of 1, 2, 4, 8), so the link's reader is told."""
    options = list(options)
    raw = _initial_url_value(key)
    if raw and str(raw[-1]) not in [str(o) for o in options]:
        _refuse_link_value(where, key, label, raw[-1], f"is not one of the choices; using {options[index]}")
    return where.selectbox(label, options, index=index, key=key, bind=QP, help=help, disabled=disabled)


def checkbox(where: Any, label: str, *, key: str, value: bool = False, help: str | None = None) -> bool:
    """`st.checkbox` bound to the URL, whose URL value is checked first: Streamlit silently shows the
    default for anything but true / false (`?swa_full=maybe`), so the link's reader is told."""
    raw = _initial_url_value(key)
    if raw and str(raw[-1]).strip().lower() not in ("true", "false"):
        _refuse_link_value(where, key, label, raw[-1], f"is not true or false; using {'on' if value else 'off'}")
    return bool(where.checkbox(label, value=value, key=key, bind=QP, help=help))


@st.cache_data(ttl=3600, show_spinner="Fetching config.json from the Hugging Face Hub…")
def _hub(repo_id: str) -> ModelArch:
    from kvplan.hub import load_hub_model  # lazy: huggingface_hub is optional
    return load_hub_model(repo_id)


def _load_model(src: str, prefix: str = "") -> ModelArch | None:
    """The chosen model's arch (before what-ifs); shows an inline message and returns None on failure.

    `prefix` namespaces the widget keys (and URL names): the Plan page draws its own model inputs,
    and two widgets sharing a key on different pages hand each other stale state on a page switch."""
    if src == "Hub":
        repo = st.text_input("Hub model id", key=f"{prefix}hub", bind=QP, placeholder="org/model",
                             help="Any public (or token-accessible) Hugging Face model id. Only "
                                  "config.json is fetched; no model code is ever run.").strip()
        if not repo:
            st.info("Type a Hub model id, e.g. `Qwen/Qwen3-8B`.")  # kvplan's own text: Markdown
            return None
        try:
            return _hub(repo)
        except ImportError:
            if repo in list_models():
                text.info(f"Hub support is not installed: using kvplan's bundled copy of {repo}.")
                return load_model(repo)
            st.error("Hub support not installed (`pip install huggingface_hub`); bundled and uploaded "
                     "models still work.")
            return None
        except KvplanError:
            # Offline or the Hub failing: a bundled id still works (its config.json is kept verbatim),
            # where the Hub's message would advise environment variables a browser user cannot set.
            if repo in list_models():
                text.info(f"The Hub could not be reached: using kvplan's bundled copy of {repo}'s config.json.")
                return load_model(repo)
            raise
    if src == "Upload":
        up = st.file_uploader("config.json", type=["json"], key=f"{prefix}upload", max_upload_size=MAX_UPLOAD_MB)
        if up is None:
            st.info("Upload a model's `config.json`.")
            return None
        # The file name becomes the model id: shown only through text.escape_md / charts' plot_text.
        name = up.name.removesuffix(".json")
        return parse_config(parse_json(up.getvalue()), "uploaded" if name == "config" else name)
    models = list_models()
    model = st.selectbox("Bundled model", models, index=models.index(DEFAULT_MODEL)
                         if DEFAULT_MODEL in models else 0, key=f"{prefix}model", bind=QP,
                         help="Type to search the bundled configs (they work offline).")
    return load_model(model)  # parsed once per server (and one object: its cache digest is computed once)


def _has_versions(engine: str) -> bool:
    try:
        from kvplan.engines import engine_versions
        return bool(engine_versions(engine).get("versions"))
    except (ImportError, KvplanError):
        return False


def _newest(engine: str) -> str:
    from kvplan.engines import engine_versions
    return str(engine_versions(engine).get("default") or "")


def sidebar(page: str = "") -> Selection:
    """Draw the shared sidebar and remember its result for the page (see `selection()`). `page` (the
    page's URL path) picks the engine options offered: Capacity's planner options only there."""
    sel = Selection(page=page)
    try:
        _sidebar(sel)
    except Exception as err:  # noqa: BLE001 - (st.stop / rerun are not Exceptions) never a traceback
        log.error("sidebar failed:\n%s", traceback.format_exc())
        sel.arch = None
        sel.errors.append(f"Sidebar: {type(err).__name__}: {err}")
        with st.sidebar:
            text.error(sel.errors[-1])
    st.session_state[_STATE_KEY] = sel
    return sel


def _sidebar(sel: Selection) -> None:
    with st.sidebar:
        src = st.radio("Model source", SOURCES, key="src", bind=QP, horizontal=True,
                       help="A bundled config (offline), any Hugging Face Hub id, or your config.json.")
        base: ModelArch | None = None
        try:
            base = _load_model(src)
        except KvplanError as err:
            sel.fail("Model", f"Model: {describe(err)}")
        except Exception as err:  # noqa: BLE001 - a broken upload must never show a traceback
            log.warning("model load failed:\n%s", traceback.format_exc())
            sel.fail("Model", f"Model: could not be read ({type(err).__name__}: {err})")
        sel.engine = st.selectbox("Engine", ENGINE_NAMES, key="engine", bind=QP,
                                  help="Whose allocation rules to apply (naive = textbook formula).")
        sel.engine_spec = sel.engine
        if _has_versions(sel.engine):
            newest = _newest(sel.engine)
            version = st.text_input("Engine version", "", key="engine_version", bind=QP,
                                    placeholder=f"newest modelled: {newest}",
                                    help="The release whose allocation rules to apply, e.g. 0.19 or 0.20.2 "
                                         "(llama.cpp: b4905); empty = the newest kvplan models. The Accuracy "
                                         "page lists every rule that changes between versions.").strip()
            if version:
                try:
                    from kvplan.engines import resolve_engine
                    resolve_engine(sel.engine, version)
                    sel.engine_spec = f"{sel.engine}@{version}"
                except KvplanError as err:
                    sel.fail("Engine version", describe(err, "Engine version")
                             .replace("Engine version: engine_version: ", "Engine version: "))
        dtypes = sweeps.kv_dtype_choices(sel.engine)
        if st.session_state.get("kv_dtype") not in (None, *dtypes):
            st.session_state["kv_dtype"] = "auto"  # the engine changed and cannot store the old dtype
        sel.kv_dtype = st.selectbox("KV cache dtype", dtypes, key="kv_dtype", bind=QP,
                                    help="The dtypes this engine can store; auto = the model's dtype "
                                         "(llama.cpp: f16).")
        names = [g.name for g in list_gpus()] + [CUSTOM_GPU]
        gpu = st.selectbox("GPU", names, index=names.index(DEFAULT_GPU), key="gpu", bind=QP)
        if gpu == CUSTOM_GPU:
            sel.gpu = None
            mem = st.text_input("GPU memory", "80GB", key="gpu_mem", bind=QP,
                                help="Device total as torch reports it, e.g. 80GB, 48GiB.")
            try:
                sel.gpu_memory = parse_bytes(mem, "gpu_memory")
                if sel.gpu_memory <= 0:
                    raise ValueError
            except (KvplanError, ValueError):
                sel.gpu_memory = None
                sel.fail("GPU memory", f"GPU memory: cannot read {mem!r}; write e.g. 80GB or 48GiB")
        else:
            sel.gpu = gpu
        ctx = st.text_input("Context length", DEFAULT_CONTEXT, key="ctx", bind=QP,
                            help="Tokens per sequence: 8192, 32k, 128K, 1M.")
        try:
            sel.asked_context = parse_tokens(ctx, "context")
            if not 1 <= sel.asked_context <= 1 << 34:
                raise InvalidInputError("context", f"must be between 1 and {1 << 34:,} tokens")
        except KvplanError as err:
            sel.asked_context = None
            sel.fail("Context length", describe(err, "Context length"))
        with st.expander("What-if edits", expanded=False):
            attn = st.selectbox("Attention", ATTENTION_CHOICES, key="attn", bind=QP,
                                help="MHA: one KV head per attention head; MQA: a single KV head.")
            window = number_input(st, "Sliding window (0 = as configured)", min_value=0, max_value=1 << 24,
                                  value=0, step=512, key="window")
            max_ctx = number_input(st, "Max context (0 = as configured)", min_value=0, max_value=1 << 34,
                                   value=0, step=8192, key="max_ctx")
            sel.whatif = WhatIf(attn, int(window), int(max_ctx))
        if base is not None:
            try:
                sel.arch = apply(base, sel.whatif)
            except KvplanError as err:
                sel.fail("What-if edits", f"What-if: {describe(err)}")
        if sel.arch is not None:
            tps = cached.tp_choices(sel.arch)
            if st.session_state.get("tp") not in (None, *tps):
                st.session_state["tp"] = 1
            sel.tp = st.selectbox("GPUs per instance (TP)", tps, key="tp", bind=QP,
                                  help="GPUs one model instance is split over: tensor parallel (llama.cpp "
                                       "splits layers instead). Only sizes that divide this model's heads "
                                       "are offered.")
            st.caption(text.md("**{}** · {} · {} · max context {:,}", sel.arch.model_id, sel.arch.label(),
                               sel.arch.dtype, sel.arch.max_position_embeddings or 0))
        if sel.asked_context is not None:
            sel.context_len = sel.asked_context
            if sel.arch is not None and sel.arch.max_position_embeddings \
                    and sel.asked_context > sel.arch.max_position_embeddings:
                allow = st.checkbox("Allow beyond the model's maximum", key="allow_long", bind=QP,
                                    help="Size contexts past max_position_embeddings, as an engine override "
                                         "would (quality past the trained length is unknown).")
                sel.context_len, warn = sweeps.context_limit(sel.arch, sel.asked_context, engine=sel.engine,
                                                             allow_beyond=allow)
                if warn:
                    text.warning(warn)
        _engine_options(sel)


def _engine_options(sel: Selection) -> None:
    """The "Engine options" expander: PP and the selected engine's own knobs (those of `kvplan size
    --help` / `kvplan plan --help`), each bound to the URL; closed unless the link sets one. Only the
    options that apply to the engine (and to the page) are drawn. A value the engine rejects is shown
    as one line naming its label and left out, so the page sizes with the engine's default."""
    engine, page = sel.engine, sel.page
    capacity = page == "capacity"
    knobs = [k for k in plan_options.ALL_KNOBS if k.engine == engine
             and (capacity or k.option in plan_options.kv_cache_options({k.option: 1}, engine))
             and not (capacity and k.option == "parallel")]  # Capacity: the slots are the users that fit
    spec = engine in plan_options.SPECULATIVE_ENGINES
    lora = capacity and engine in plan_options.LORA_ENGINES
    mm = capacity and engine == "vllm" and sel.arch is not None and bool(sel.arch.weight_dims.vision_num_layers)
    pp_sizes = [n for n in PP_SIZES if sel.arch is None or n <= max(1, sel.arch.num_layers)]
    keys = [f"sb_{k.key}" for k in knobs] + (["sb_pp"] if engine in PP_ENGINES else []) \
        + (["sb_spec", "sb_spec_k", "sb_draft"] if spec else []) + (["sb_kvmem"] if capacity else []) \
        + (["sb_loras", "sb_lora_rank"] if lora else []) + (["sb_mm"] if mm else [])
    if not keys:
        return
    labels = plan_options.option_labels(engine)
    ch = plan_options.Choices(engines=(engine,))
    problems: list[tuple[str, str]] = []
    with st.expander("Engine options", expanded=any(k in st.query_params for k in keys)):
        text.caption(f"The {plan_options.engine_label(engine)} settings kvplan sizes with; blank keeps the "
                     "engine's own default." + (" Other engines' lines use their defaults." if page == "size"
                                                else ""))
        if engine in PP_ENGINES:
            if st.session_state.get("sb_pp") not in (None, *pp_sizes):
                st.session_state["sb_pp"] = 1
            sel.pp = int(selectbox(st, "Pipeline stages (PP)", pp_sizes, key="sb_pp",
                                   help="GPUs the layers are split over, one stage each; each instance is "
                                        "TP × PP GPUs (kvplan sizes the most-loaded stage)."))
            labels["pp"] = "Pipeline stages (PP)"
        for k in knobs:
            if k.is_switch:
                ch.knobs[k.key] = checkbox(st, k.label, value=bool(k.default), key=f"sb_{k.key}", help=k.help)
            else:
                ch.knobs[k.key] = number_input(st, k.label, min_value=k.lo, max_value=k.hi, value=k.default,
                                               step=k.step, key=f"sb_{k.key}", help=k.help,
                                               placeholder=k.placeholder or None, integer=True)
        if spec:
            ch.speculative = selectbox(st, "Speculative decoding", plan_options.SPECULATIVE_METHODS, key="sb_spec",
                                       help="The draft's own KV cache joins the pool: EAGLE adds one layer shaped "
                                            "like the model's, MTP the model's own next-token layers, a draft "
                                            "model its layers; n-gram adds none.")
            if ch.speculative != "off":
                ch.num_speculative_tokens = number_input(
                    st, "Draft tokens per step", min_value=1, max_value=64, value=None, key="sb_spec_k",
                    integer=True, placeholder="method's default",
                    help="Tokens proposed per step (vLLM hybrid models keep that many more state blocks).")
            if ch.speculative in plan_options.DRAFT_METHODS:
                draft = selectbox(st, "Draft model", [NO_DRAFT, *list_models()], key="sb_draft",
                                  help="A bundled model as the draft (its cache is added).")
                ch.draft_model = None if draft == NO_DRAFT else draft
                if ch.speculative == "draft_model" and ch.draft_model is None:
                    problems.append(("Draft model", "Draft model: pick the draft model that speculative decoding "
                                                    "draft_model runs (or another method)."))
                    ch.speculative = "off"
        if capacity:
            raw = st.text_input("Measured KV memory per GPU", "", key="sb_kvmem", bind=QP, placeholder="computed",
                                help="The KV budget your engine logged, e.g. vLLM's \"Available KV cache memory: "
                                     "51.38 GiB\". It replaces kvplan's computed budget. Blank = computed.")
            try:
                sel.kv_memory = plan_options.parse_kv_memory(raw)
            except KvplanError as err:
                problems.append(("Measured KV memory per GPU", describe(err, labels=labels)))
        if lora:
            ch.max_loras = number_input(st, "LoRA adapter slots", min_value=0, max_value=1024, value=0, key="sb_loras",
                                        help="LoRA adapters served at once (vLLM --max-loras, SGLang "
                                             "--max-loras-per-batch); their buffers come out of the KV budget. "
                                             "0 = no LoRA.")
            if ch.max_loras:
                ch.max_lora_rank = number_input(st, "Largest LoRA rank", min_value=1, max_value=4096, value=16,
                                                key="sb_lora_rank", help="--max-lora-rank (default 16).")
        if mm:
            raw = st.text_input("vLLM multimodal items per prompt", "", key="sb_mm", bind=QP,
                                placeholder="engine default",
                                help="e.g. image=0,video=0 for text only (no encoder cache), or image=4.")
            try:
                ch.mm_limits = plan_options.check_mm_limits(raw)
            except KvplanError as err:
                problems.append(("vLLM multimodal items per prompt", describe(err, labels=labels)))
                ch.mm_limits = ""
        sel.choices, sel.labels = ch, labels
        _check_options(sel, problems)
        for label, msg in problems:  # in the expander, by the inputs (a link that set one opened it)
            sel.fail(label, msg)


def _check_options(sel: Selection, problems: list[tuple[str, str]]) -> None:
    """Size once with the options (cheap: one context) so a value the engine rejects is named here,
    by its label, and left out; the pages then never see it."""
    if sel.arch is None:
        return
    import kvplan

    for _ in range(8):  # each round drops the option the engine named
        opts = sel.kv_options(sel.engine)
        if not opts and sel.pp == 1:
            return
        try:
            kvplan.kv_cache(sel.arch, context_len=sel.context_len or 4096, engine=sel.engine_spec,
                            kv_dtype=sel.kv_dtype, **sweeps.split(sel.engine, sel.tp, sel.pp), **opts)
            return
        except KvplanError as err:
            name = getattr(err, "field", None)
            label = sel.labels.get(name or "") or LABELS.get(name or "") or "Engine options"
            problems.append((label, describe(err, labels=sel.labels)))
            if not _drop_option(sel, name):
                sel.choices = plan_options.Choices(engines=sel.choices.engines)
                sel.pp = 1
                return


def _drop_option(sel: Selection, name: str | None) -> bool:
    """Forget the option `name` (an engine field) so the engine's default is used; False if unknown."""
    ch = sel.choices
    if name == "pp":
        sel.pp = 1
        return True
    for k in plan_options.ALL_KNOBS:
        if k.option == name and k.key in ch.knobs:
            ch.knobs.pop(k.key)
            return True
    if name in ("speculative", "draft_model"):
        ch.speculative, ch.draft_model = "off", None
        return True
    if name == "num_speculative_tokens":
        ch.num_speculative_tokens = None
        return True
    return False


def selection() -> Selection:
    """The sidebar's result for this rerun (drawn by app.py before the page runs)."""
    sel = st.session_state.get(_STATE_KEY)
    return sel if isinstance(sel, Selection) else sidebar()


def _fix_sidebar(sel: Selection) -> None:
    fields = ", ".join(sel.error_fields) or "the inputs"
    text.warning(f"Fix {fields} in the sidebar (the message is shown there; on a phone open it with the "
                 f"arrow at the top left).")


def require_model(sel: Selection) -> ModelArch:
    """The model, or an inline message and a stop when there is none (the error itself is in the sidebar)."""
    if sel.arch is None:
        if sel.errors:
            _fix_sidebar(sel)
        else:
            st.info("Choose a model in the sidebar.")
        st.stop()
    return sel.arch


def require_context(sel: Selection) -> int:
    if sel.context_len is None:
        _fix_sidebar(sel)
        st.stop()
    return sel.context_len


def summary(sel: Selection, *, gpu: bool = True, context: bool = True) -> None:
    """One line under the title with the sidebar's inputs, so a phone user (sidebar collapsed) knows
    what the page shows and where to change it."""
    parts = [sel.arch.model_id if sel.arch else "no model", sel.engine_spec,
             f"KV {sel.kv_dtype}"]
    if sel.tp * sel.pp > 1:
        parts.append(layout_words(sel))
    parts += options_words(sel)
    if gpu:
        parts.append(sel.gpu_label())
    if context and sel.context_len:
        parts.append(f"{sel.context_len:,} tokens")
    st.caption(text.md("{} — change them in the sidebar (» at the top left on a phone).", " · ".join(parts)))
    if sel.error_fields:  # the message is in the sidebar, which a phone keeps closed
        _fix_sidebar(sel)


def options_words(sel: Selection) -> list[str]:
    """The engine options set in the sidebar, in words ("vLLM block size (tokens): 32")."""
    out = sel.choices.describe({}).rstrip(".").split("; ")[1:]  # [0] is "Modelled on ..."
    if sel.kv_memory is not None:
        out.append(f"measured KV memory {sel.kv_memory / 2**30:,.2f} GiB per GPU")
    return out


def run_page(body: Callable[[], None]) -> None:
    """Run a page body; expected errors show their one-line message, anything else a short error."""
    try:
        body()
    except KvplanError as err:
        text.error(describe(err))
    except Exception as err:  # noqa: BLE001 - the UI never shows a traceback
        log.error("page failed:\n%s", traceback.format_exc())
        text.error(f"Something went wrong: {type(err).__name__}: {err}")


def show_errors(errors: list[str], *, limit: int = 6, labels: dict[str, str] | None = None) -> None:
    """Each message once, as plain text; `labels` (option field -> the app's label) renames the field a
    core message starts its reason with ("vllm / auto: block_size: ..." -> "...: vLLM block size: ...")."""
    if labels:
        errors = [_relabel(m, labels) for m in errors]
    errors = list(dict.fromkeys(errors))  # the same message once
    for msg in errors[:limit]:
        text.warning(msg)
    if len(errors) > limit:
        text.warning(f"… and {len(errors) - limit} more")


def _relabel(message: str, labels: dict[str, str]) -> str:
    for name, label in labels.items():
        message = message.replace(f": {name}: ", f": {label}: ")
    return message


def layout_words(sel: Selection) -> str:
    """"TP 2", "TP 2 × PP 2": the sidebar's GPUs per instance, in the engine's terms."""
    return f"TP {sel.tp}" + (f" × PP {sel.pp}" if sel.pp > 1 else "")


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def table(rows: list[dict[str, Any]], name: str, columns: dict[str, tuple[str, str]]) -> None:
    """Show rows as a readable table (`columns`: key -> (label, kind), see kvplan.ui.tables) and offer
    the raw rows as CSV and JSON downloads."""
    if not rows:
        return
    shown = tables.display_rows(rows, columns)
    config = {label: st.column_config.TextColumn(label, alignment="right")
              for label in tables.numeric_labels(columns)}
    st.dataframe(shown, hide_index=True, column_config=config)
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("CSV", _csv(rows), f"{name}.csv", "text/csv", key=f"dl_csv_{name}", on_click="ignore",
                         icon=":material/download:")
    right.download_button("JSON", json.dumps(rows, indent=2, default=str), f"{name}.json", "application/json",
                          key=f"dl_json_{name}", on_click="ignore", icon=":material/download:")
