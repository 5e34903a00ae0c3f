"""What an engine keeps on each GPU beside the target's weights and the KV cache, as budget lines.

- **Draft weights** for speculative decoding (the draft's KV is sized by the engine profiles, see
  `kvplan.speculative`): a separate draft model's weights, the checkpoint's MTP layers, or one EAGLE
  decoder layer.
- **LoRA adapter slots**: vLLM (`--enable-lora --max-loras N --max-lora-rank R`) and SGLang
  (`--max-loras-per-batch N --max-lora-rank R`) preallocate, for every LoRA-wrapped linear layer, an A
  buffer [N, R, in] and a B buffer [N, out, R] in the model dtype when the model loads, so they come
  out of the KV budget. Column-parallel layers keep A whole and split B's `out` over TP; row-parallel
  ones split A's `in` and keep B whole (vLLM `*WithLoRA.create_lora_weights`, fully_sharded_loras off).
  Merged projections hold one A/B pair per slice (q, k, v; gate, up). MoE expert weights are not
  LoRA-wrapped here (vLLM's fused-MoE LoRA is opt-in), nor is the LM head.
- **Multimodal encoder cache** (vLLM V1): the encoder outputs of images in flight, budgeted in tokens
  ("Encoder cache will be initialized with a budget of N tokens": max(max_num_batched_tokens, the
  largest item)) × hidden size × model dtype. Text-only serving (`--limit-mm-per-prompt` all 0, vllm PR
  #25631) skips it and the encoder's profiling run; the profiling peak itself depends on the processor's
  largest dummy image or video and is not estimated: give it as `mm_profile_bytes` when known.

Pure arithmetic on a `ModelArch`; the planner subtracts these lines from the KV budget.
"""

from __future__ import annotations

from typing import Any

from kvplan.errors import InvalidInputError
from kvplan.layers import ModelArch
from kvplan.units import MAX_BYTES, cdiv

__all__ = ["lora_bytes", "draft_weight_bytes", "encoder_cache_bytes", "parse_mm_limits"]

_MAX_LORAS = 4096
_MAX_RANK = 4096


def _check(value: Any, field: str, maximum: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidInputError(field, f"expected a whole number from {minimum} to {maximum}, got {value!r}"[:160])
    return value


def lora_bytes(arch: ModelArch, *, max_loras: int, max_lora_rank: int, tp: int = 1, dtype_bytes: int = 2) -> int:
    """Bytes of the LoRA A/B buffers one TP rank preallocates for `max_loras` adapters of rank
    `max_lora_rank` over the attention and dense-MLP linear layers.

    >>> from kvplan import load_model
    >>> lora_bytes(load_model("meta-llama/Llama-3.1-8B"), max_loras=1, max_lora_rank=16) == 32 * 16 * 81920 * 2
    True
    """
    _check(max_loras, "max_loras", _MAX_LORAS)
    _check(max_lora_rank, "max_lora_rank", _MAX_RANK)
    if not max_loras or not max_lora_rank:
        return 0
    from kvplan.weights import lora_linears  # weights pulls in the tensor tables; only when LoRA is asked for

    elems = 0
    for out_features, in_features, shard, slices in lora_linears(arch):
        out_rank = cdiv(out_features, tp) if shard in ("col", "kv") else out_features
        in_rank = cdiv(in_features, tp) if shard == "row" else in_features
        elems += slices * max_lora_rank * (in_rank + out_rank)
    return max_loras * elems * dtype_bytes


def draft_weight_bytes(arch: ModelArch, method: str | None, draft: ModelArch | None, *, tp: int = 1) -> int:
    """Weight bytes per TP rank of a speculative-decoding draft (0 for n-gram or no speculation).

    A separate draft model: its own weights. MTP: the checkpoint's `num_nextn_predict_layers` layers at
    the target's average bytes per parameter. EAGLE / EAGLE-3 without a draft config: one decoder layer of
    the target's shape in the model dtype, plus EAGLE-3's fc (3·hidden -> hidden) — an estimate.
    """
    from kvplan.weights import param_counts, weights_bytes

    if draft is not None:
        return weights_bytes(draft, "auto", tp, 1)
    if method in (None, "ngram"):
        return 0
    counts = param_counts(arch)
    if method == "mtp":
        per_param = weights_bytes(arch, "auto", 1, 1) / max(1, counts.total)
        return int(counts.mtp * per_param) // tp
    w = arch.weight_dims
    layer = (counts.attention + counts.mlp + counts.shared_experts) // max(1, arch.num_layers)
    if not counts.mlp and w.hidden_size and w.intermediate_size:
        layer += 3 * w.hidden_size * w.intermediate_size  # drafts of MoE targets are dense layers
    fc = 3 * w.hidden_size * w.hidden_size if method == "eagle3" else 2 * w.hidden_size * w.hidden_size
    return (layer + fc) * 2 // tp


def parse_mm_limits(value: Any) -> dict[str, int]:
    """`--limit-mm-per-prompt` as vLLM takes it: {"image": 0, "video": 0}, "image=0,video=0" or a number
    for every modality."""
    if isinstance(value, bool):
        raise InvalidInputError("limit_mm_per_prompt", "expected a count or modality=count pairs")
    if isinstance(value, int):
        return {"*": _check(value, "limit_mm_per_prompt", 10**6)}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, str):
        text = value.strip().strip("{}")
        pairs = [p for p in text.replace(":", "=").split(",") if p.strip()]
        items = []
        for pair in pairs:
            key, sep, count = pair.partition("=")
            if not sep:
                raise InvalidInputError("limit_mm_per_prompt", f"expected modality=count, got {pair.strip()[:40]!r}")
            try:
                items.append((key.strip().strip("'\""), int(count.strip().strip("'\""))))
            except ValueError:
                raise InvalidInputError("limit_mm_per_prompt", f"count for {key.strip()[:20]!r} is not a whole "
                                                               "number") from None
    else:
        raise InvalidInputError("limit_mm_per_prompt", "expected a count or modality=count pairs")
    out = {}
    for key, count in items:
        if not isinstance(key, str) or not key or len(key) > 32:
            raise InvalidInputError("limit_mm_per_prompt", "modality names are short words: image, video, audio")
        out[key] = _check(count, f"limit_mm_per_prompt.{key}", 10**6)
    return out


def encoder_cache_bytes(arch: ModelArch, *, budget_tokens: int, limits: dict[str, int] | None = None) -> int:
    """vLLM's encoder cache for a multimodal model: `budget_tokens` embeddings of the LM's hidden size
    in the model dtype; 0 for text-only models or when every modality is limited to 0 items."""
    if not arch.weight_dims.vision_num_layers:
        return 0
    if limits is not None and limits and all(v == 0 for v in limits.values()):
        return 0
    _check(budget_tokens, "encoder_cache_tokens", 1 << 30)
    dtype_bytes = 4 if arch.dtype == "fp32" else 2
    return min(MAX_BYTES, budget_tokens * arch.weight_dims.hidden_size * dtype_bytes)
