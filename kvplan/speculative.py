"""Speculative decoding: the draft's own cache layers, added to the target's.

EAGLE / EAGLE-3 drafts, MTP heads and separate draft models keep K/V for every token they see, in
the same engine pool as the target (vLLM: Llama-3.1-8B + an EAGLE layer = 33 layers of 4 KiB per
token, vllm#19996), in a draft pool of the same token count (SGLang), or in a draft context of the
same size (llama.cpp `-md`). kvplan models all three as the target's layers plus the draft's, marked
`draft=True` and placed after the target's last layer (on the last pipeline stage, where engines put
the draft). n-gram speculation has no draft model and adds no cache.

How many tokens are speculated (`num_speculative_tokens`) is an engine option: it only changes the
per-request state of hybrid recurrent models (vLLM keeps k more conv rows and k more state blocks).
"""

from __future__ import annotations

from dataclasses import replace

from kvplan.errors import InvalidInputError
from kvplan.layers import MLA, FullAttention, LayerSpec, ModelArch, RecurrentState

METHODS = ("eagle", "eagle3", "mtp", "draft_model", "ngram")
_ALIASES = {"eagle-3": "eagle3", "deepseek_mtp": "mtp", "qwen3_next_mtp": "mtp", "nextn": "mtp",
            "draft": "draft_model", "standalone": "draft_model", "ngram": "ngram", "lookahead": "ngram"}

# MTP families whose config does not say how many MTP layers they have: one (vLLM qwen3_next_mtp).
_ONE_MTP_LAYER = {"qwen3_next", "qwen3_5", "qwen3_5_moe", "qwen3_5_text", "qwen3_5_moe_text", "mimo"}


def method_name(method: str | None, draft_model: object | None) -> str | None:
    """The canonical method name, or None when speculation is off; a draft model alone means draft_model."""
    if method is None or str(method).strip().lower() in ("", "none", "off"):
        return "draft_model" if draft_model is not None else None
    key = str(method).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise InvalidInputError("speculative", f"unknown method {str(method)[:40]!r}; choose one of "
                                               f"{', '.join(METHODS)}")
    return key


def draft_layers(target: ModelArch, method: str, draft: ModelArch | None) -> tuple[LayerSpec, ...]:
    """The draft's cache layers, numbered after the target's (index num_layers, num_layers + 1, ...)."""
    if method == "ngram":
        if draft is not None:
            raise InvalidInputError("draft_model", "n-gram speculation uses no draft model; drop --draft-model")
        return ()
    if draft is not None:
        if method == "mtp":
            raise InvalidInputError("draft_model", "MTP heads are part of the target checkpoint; drop --draft-model")
        source = tuple(s for s in draft.layers if isinstance(s, (FullAttention, MLA, RecurrentState)))
    elif method == "draft_model":
        raise InvalidInputError("draft_model", "speculative method draft_model needs --draft-model ID")
    elif method == "mtp":
        count = target.weight_dims.num_nextn_predict_layers or (1 if target.model_type in _ONE_MTP_LAYER else 0)
        if not count:
            raise InvalidInputError("speculative", f"{target.model_id} has no MTP layers "
                                                   "(num_nextn_predict_layers is 0); use eagle3 or a draft model")
        source = (_last_attention(target),) * count
    else:
        # EAGLE / EAGLE-3 drafts are one decoder layer with the target's attention shape (yuhuili's and
        # SpecForge's Llama drafts: num_hidden_layers 1, the target's heads and head_dim).
        source = (_last_attention(target),)
    base = target.num_layers
    return tuple(replace(s, index=base + i, draft=True) for i, s in enumerate(source))


def _last_attention(arch: ModelArch) -> LayerSpec:
    for spec in reversed(arch.layers):
        if type(spec) in (FullAttention, MLA):
            return spec
    raise InvalidInputError("speculative", f"{arch.model_id} has no full-attention layer to copy for the "
                                           "draft; pass --draft-model")


def with_draft(target: ModelArch, method: str, draft: ModelArch | None) -> ModelArch:
    """`target` with the draft's cache layers appended (model id gets a "+method" suffix)."""
    layers = draft_layers(target, method, draft)
    if not layers:
        return target
    name = f"{target.model_id} + {draft.model_id if draft is not None else method}"
    return replace(target, model_id=name, layers=target.layers + layers)
