"""The Plan page's "Engine options": which app input becomes which kvplan option, for which engine.

Pure (no streamlit): the page draws one input per knob below and passes what was typed to
`Choices`, which turns it into what `kvplan.recommend` / `kvplan.plan` take: options for every
engine, options for one engine only (recommend's `options_by_engine`: SGLang's `dp_attention` is
not an option of vLLM), and engine specs with their versions ("vllm@0.19"). `Choices.describe`
says in words what was modelled, for the line under the answer.

Every knob's default is the engine's own (0 or blank = "as the engine does it"), so an untouched
expander changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvplan.errors import InvalidInputError, KvplanError

ENGINE_LABELS = {"vllm": "vLLM", "sglang": "SGLang", "llama.cpp": "llama.cpp", "trtllm": "TensorRT-LLM",
                 "transformers": "transformers", "naive": "textbook formula"}
# Engines whose memory budget the planner reserves LoRA slots in (planner._pool_lines; tests check
# the list against the planner), and that model a speculative-decoding draft (kvplan.api).
LORA_ENGINES = ("vllm", "sglang")
SPECULATIVE_ENGINES = ("vllm", "sglang", "llama.cpp", "trtllm")
SPECULATIVE_METHODS = ("off", "eagle", "eagle3", "mtp", "draft_model", "ngram")
# Methods whose draft can be a separate model (EAGLE drafts of another shape, or a draft model).
DRAFT_METHODS = ("eagle", "eagle3", "draft_model")
TP_LIMITS = (1, 2, 4, 8, 16)  # recommend.TP_SIZES
PP_LIMITS = (1, 2, 4, 8)  # recommend.PP_SIZES


@dataclass(frozen=True)
class Knob:
    """One engine's own numeric (or on/off) option: widget key (= URL name), label, kvplan option."""

    key: str
    label: str
    option: str
    engine: str
    default: int | bool | None  # None: blank, the engine's own default (`placeholder` says which)
    lo: int = 1
    hi: int = 1 << 16
    step: int = 1
    help: str = ""
    placeholder: str = ""

    @property
    def is_switch(self) -> bool:
        return isinstance(self.default, bool)


KNOBS = (
    Knob("vllm_block", "vLLM block size (tokens)", "block_size", "vllm", None, 1, 1 << 16, 16,
         "Tokens per KV block (vLLM --block-size). Blank = the attention backend's choice: 16 (MLA models: "
         "16 or 64 by backend).", "backend's (16)"),
    Knob("vllm_seqs", "vLLM max sequences per instance", "max_num_seqs", "vllm", None, 1, 1 << 20, 16,
         "vLLM --max-num-seqs: caps the users one instance runs at once and sizes the sampler's memory. "
         "Blank = vLLM's default (1,024 on GPUs of 70 GiB and more, else 256).", "vLLM's default"),
    Knob("sgl_page", "SGLang page size (tokens)", "block_size", "sglang", None, 1, 1 << 16, 16,
         "SGLang --page-size. Blank = SGLang's default (1 token; 64 for DeepSeek sparse attention).",
         "SGLang's (1)"),
    Knob("sgl_dp", "SGLang DP-attention size", "dp_attention", "sglang", 1, 1, 1024, 1,
         "SGLang --enable-dp-attention --dp-size N: attention runs at TP / N, so each GPU keeps N times the "
         "KV heads of its own requests. 1 = off. N must divide the TP size; other TP sizes are skipped."),
    Knob("trt_block", "TensorRT-LLM tokens per block", "block_size", "trtllm", None, 1, 1 << 16, 32,
         "TensorRT-LLM tokens_per_block. Blank = its default (32).", "default (32)"),
    Knob("lcpp_ub", "llama.cpp physical batch (-ub)", "ubatch", "llama.cpp", 512, 1, 1 << 16, 128,
         "llama.cpp -ub: a sliding-window layer keeps window + ubatch cells. Default 512."),
    Knob("lcpp_swa_full", "llama.cpp full window cache", "swa_full", "llama.cpp", False,
         help="llama.cpp --swa-full: sliding-window layers keep a cache of the whole context (needed for context "
              "shift and cache reuse) instead of the window."),
)


# The sidebar's own llama.cpp knobs (Size / Capacity / Compare / Why): the slots a llama-server shares
# its cache between and whether they share one stream. The Plan page leaves them out: there the slots
# are the planned concurrency (the launch command's -np).
SIDEBAR_KNOBS = (
    Knob("lcpp_np", "llama.cpp slots (-np)", "parallel", "llama.cpp", None, 1, 4096, 1,
         "llama.cpp -np: the sequences the context is shared between. Blank = the batch (Size page). -c is "
         "the context × the batch, split into one stream per slot unless the cache is unified.",
         "= batch"),
    Knob("lcpp_unified", "llama.cpp one cache for all slots", "kv_unified", "llama.cpp", False,
         help="llama.cpp --kv-unified: all slots share one stream of -c cells (llama-server's default when -np is not given) instead "
              "of one stream per slot: sliding-window layers then keep window × slots + ubatch cells in all."),
)
ALL_KNOBS = KNOBS + SIDEBAR_KNOBS
# Options that are not fields of an engine's Options but that kvplan.kv_cache takes (the draft's layers).
_KV_CACHE_EXTRA = ("speculative", "draft_model")


def engine_label(engine: str) -> str:
    return ENGINE_LABELS.get(engine, engine)


def knobs_for(engines: list[str] | tuple[str, ...]) -> list[Knob]:
    """The knobs of the engines chosen, in KNOBS order."""
    return [k for k in KNOBS if k.engine in engines]


def check_mm_limits(raw: str) -> str:
    """The multimodal items per prompt as typed ("image=0,video=0"), stripped; blank = the engine's
    default. Raises the KvplanError vLLM's option parser would (kvplan.pool.parse_mm_limits)."""
    from kvplan.pool import parse_mm_limits

    raw = (raw or "").strip()
    if raw:
        parse_mm_limits(raw)
    return raw


def parse_kv_memory(raw: str) -> int | None:
    """The measured KV memory per GPU ("51.38GiB", "20GB", bytes), None when blank."""
    from kvplan.units import parse_bytes

    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        n = parse_bytes(raw, "kv_memory")
    except KvplanError:
        n = 0
    if n <= 0 or n > 1 << 50:
        raise InvalidInputError("kv_memory", "write a size per GPU such as 51.38GiB or 20GB (blank = computed)")
    return n


@dataclass
class Choices:
    """What the expander says. Zero / blank / "off" values are the engine's defaults and pass nothing."""

    engines: tuple[str, ...] = ("vllm",)
    versions: dict[str, str] = field(default_factory=dict)  # engine -> version text ("" = newest)
    knobs: dict[str, Any] = field(default_factory=dict)  # Knob.key -> value
    gpu_memory_utilization: float | None = None
    kv_memory: int | None = None
    max_loras: int = 0
    max_lora_rank: int = 16
    mm_limits: str = ""
    speculative: str = "off"
    num_speculative_tokens: int | None = None
    draft_model: str | None = None
    max_tp: int = 8
    max_pp: int = 4

    def engine_specs(self) -> tuple[str, ...]:
        """The engines as recommend takes them, each with its version: ("vllm@0.19", "sglang")."""
        return tuple(f"{e}@{self.versions[e]}" if self.versions.get(e) else e for e in self.engines)

    def spec(self, engine: str) -> str:
        return f"{engine}@{self.versions[engine]}" if self.versions.get(engine) else engine

    def common(self) -> dict[str, Any]:
        """Options every engine takes (recommend / plan keyword arguments). Not the measured KV
        memory: it was measured on one layout, so it is the deployment-you-have's (`plan_options`)."""
        out: dict[str, Any] = {}
        if self.gpu_memory_utilization is not None:
            out["gpu_memory_utilization"] = self.gpu_memory_utilization
        return out

    def own(self, engine: str) -> dict[str, Any]:
        """Options for `engine` only: its knobs, and LoRA / multimodal / speculative where it models them."""
        out: dict[str, Any] = {}
        for k in (k for k in ALL_KNOBS if k.engine == engine):
            value = self.knobs.get(k.key, k.default)
            if value is not None and value != k.default:
                out[k.option] = bool(value) if k.is_switch else int(value)
        if self.max_loras and engine in LORA_ENGINES:
            out.update(max_loras=self.max_loras, max_lora_rank=self.max_lora_rank)
        if self.mm_limits.strip() and engine == "vllm":
            out["limit_mm_per_prompt"] = self.mm_limits.strip()
        if engine in SPECULATIVE_ENGINES:
            if self.speculative != "off":
                out["speculative"] = self.speculative
                if self.draft_model and self.speculative in DRAFT_METHODS:
                    out["draft_model"] = self.draft_model
            if self.num_speculative_tokens and self.speculative != "off":
                out["num_speculative_tokens"] = self.num_speculative_tokens
        return out

    def by_engine(self) -> dict[str, dict[str, Any]]:
        """recommend's `options_by_engine`: only the engines with options of their own."""
        return {e: o for e in self.engines if (o := self.own(e))}

    def plan_options(self, engine: str) -> dict[str, Any]:
        """Everything `kvplan.plan` takes for one deployment of `engine`, version included."""
        out = {**self.common(), **self.own(engine)}
        if self.kv_memory is not None:
            out["kv_memory"] = self.kv_memory
        if self.versions.get(engine):
            out["engine_version"] = self.versions[engine]
        return out

    def describe(self, versions_modelled: dict[str, str]) -> str:
        """What was modelled, in words: "Modelled on vLLM 0.28.0 (newest kvplan models); SGLang
        DP-attention size 2; KV memory 20.00 GiB per GPU (measured)". Plain text."""
        pinned = any(self.versions.get(e) for e in self.engines)
        parts = []
        for e in self.engines:
            v = versions_modelled.get(e)
            mark = (" (as asked)" if self.versions.get(e) else " (newest)") if pinned and v else ""
            parts.append(f"{engine_label(e)} {v}{mark}" if v else engine_label(e))
        newest = " (the newest releases kvplan models)" if not pinned and any(versions_modelled.values()) else ""
        out = ["Modelled on " + ", ".join(parts) + newest]
        if self.gpu_memory_utilization is not None:
            out.append(f"GPU memory fraction {self.gpu_memory_utilization:.2f}")
        if self.kv_memory is not None:
            out.append(f"KV memory {self.kv_memory / 2**30:,.2f} GiB per GPU as measured on your deployment "
                       "(replaces the computed budget)")
        for k in (k for k in ALL_KNOBS if k.engine in self.engines):
            value = self.knobs.get(k.key, k.default)
            if value is not None and value != k.default:
                out.append(f"{k.label}: {'on' if value else 'off'}" if k.is_switch else f"{k.label}: {int(value):,}")
        lora = [engine_label(e) for e in self.engines if e in LORA_ENGINES]
        if self.max_loras and lora:
            out.append(f"{self.max_loras:,} LoRA slot{'s' if self.max_loras != 1 else ''} of rank "
                       f"{self.max_lora_rank:,} ({', '.join(lora)})")
        if self.mm_limits.strip() and "vllm" in self.engines:
            out.append(f"vLLM multimodal items per prompt {self.mm_limits.strip()}")
        spec = [engine_label(e) for e in self.engines if e in SPECULATIVE_ENGINES]
        if self.speculative != "off" and spec:
            draft = f" with draft {self.draft_model}" if self.draft_model and self.speculative in DRAFT_METHODS else ""
            k = f", {self.num_speculative_tokens} tokens per step" if self.num_speculative_tokens else ""
            out.append(f"speculative decoding {self.speculative}{draft}{k} ({', '.join(spec)})")
        return "; ".join(out) + "."


def kv_cache_options(options: dict[str, Any], engine: str) -> dict[str, Any]:
    """The part of `options` (`Choices.own` / `plan_options`) that `kvplan.kv_cache` takes for `engine`:
    its Options fields and the draft; not the planner's (LoRA, multimodal, max_num_seqs, memory)."""
    import dataclasses

    from kvplan.engines import get_engine

    fields = {f.name for f in dataclasses.fields(get_engine(engine.partition("@")[0]).Options)}
    return {k: v for k, v in options.items() if k in fields or k in _KV_CACHE_EXTRA}


def option_labels(engine: str) -> dict[str, str]:
    """The app's label for each option field `engine` may name in an error (see widgets.describe)."""
    out = {k.option: k.label for k in ALL_KNOBS if k.engine == engine}
    out.update(kv_memory="Measured KV memory per GPU", max_loras="LoRA adapter slots",
               max_lora_rank="Largest LoRA rank", limit_mm_per_prompt="vLLM multimodal items per prompt",
               speculative="Speculative decoding", num_speculative_tokens="Draft tokens per step",
               draft_model="Draft model")
    return out
