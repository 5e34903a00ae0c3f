"""What-if edits of a ModelArch: GQA -> MHA / MQA, a different sliding window, a longer context.

The edits are applied to the parsed `ModelArch` (so they work the same for bundled, Hub and uploaded
models) and checked here: an edit that makes no sense for the model raises `InvalidInputError`
naming the what-if field, which the app shows inline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kvplan.errors import InvalidInputError
from kvplan.layers import FullAttention, ModelArch, SlidingWindow
from kvplan.units import MAX_TOKENS

ATTENTION_CHOICES = ("as configured", "MHA", "MQA")


@dataclass(frozen=True)
class WhatIf:
    """User edits; the defaults leave the model unchanged."""

    attention: str = "as configured"  # "MHA": KV heads = attention heads; "MQA": one KV head
    window: int = 0  # 0 = as configured; else the token window of every sliding layer
    max_context: int = 0  # 0 = as configured; else the model's max context (max_position_embeddings)

    @property
    def active(self) -> bool:
        return self != WhatIf()


def apply(arch: ModelArch, what: WhatIf) -> ModelArch:
    """`arch` with the what-if edits applied, renamed so results say they are hypothetical."""
    if not what.active:
        return arch
    layers = arch.layers
    tags = []
    naive_heads = arch.naive_num_kv_heads
    if what.attention not in ATTENTION_CHOICES:
        raise InvalidInputError("attention", f"choose one of {', '.join(ATTENTION_CHOICES)}")
    if what.attention != "as configured":
        heads = arch.weight_dims.num_attention_heads
        attn = [s for s in layers if isinstance(s, FullAttention)]
        if not attn:
            raise InvalidInputError("attention", f"{arch.model_id} has no layers with K/V heads "
                                                 f"({arch.label()}); MHA/MQA does not apply")
        if what.attention == "MHA" and not heads:
            raise InvalidInputError("attention", "the config gives no attention-head count to turn "
                                                 "into KV heads")
        target = heads if what.attention == "MHA" else 1
        layers = tuple(dataclasses.replace(s, num_kv_heads=target) if isinstance(s, FullAttention) else s
                       for s in layers)
        naive_heads = target
        tags.append(what.attention)
    if what.window:
        if what.window < 1 or what.window > MAX_TOKENS:
            raise InvalidInputError("window", f"must be between 1 and {MAX_TOKENS:,} tokens")
        if not any(isinstance(s, SlidingWindow) for s in layers):
            raise InvalidInputError("window", f"{arch.model_id} has no sliding-window layers "
                                              f"({arch.label()}); there is no window to change")
        layers = tuple(dataclasses.replace(s, window=what.window) if isinstance(s, SlidingWindow) else s
                       for s in layers)
        tags.append(f"window {what.window:,}")
    max_ctx = arch.max_position_embeddings
    if what.max_context:
        if what.max_context < 1 or what.max_context > MAX_TOKENS:
            raise InvalidInputError("max_context", f"must be between 1 and {MAX_TOKENS:,} tokens")
        max_ctx = what.max_context
        tags.append(f"max context {max_ctx:,}")
    return dataclasses.replace(arch, model_id=f"{arch.model_id} [{', '.join(tags)}]", layers=layers,
                               naive_num_kv_heads=naive_heads, max_position_embeddings=max_ctx)
