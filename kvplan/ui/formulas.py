""""Show the math": each engine's KV formula with the model's own numbers substituted.

Pure text builders (Markdown). For every row of an engine's per-kind breakdown the per-token bytes of
one layer are rebuilt from the layer specs and the dtype, multiplied out, and checked against the
engine's figure; what the product does not explain (block or page rounding, hybrid page padding) is
shown as its own line, so the text never disagrees with the number on screen.
"""

from __future__ import annotations

from kvplan.dtypes import get_dtype
from kvplan.engines.common import KVEstimate, kv_heads_per_rank
from kvplan.layers import MLA, FullAttention, ModelArch, RecurrentState
from kvplan.ui.text import escape_md

ENGINE_RULES = {
    "vllm": "paged blocks of `block_size` tokens per layer; tokens rounded up to whole blocks; sliding "
            "layers keep `min(window − 1 + in-flight, T)` tokens + 1 block; hybrid models share one "
            "page size (padding counted separately)",
    "sglang": "one token pool: every attention layer holds `T` tokens (a hybrid SWA pool keeps only the "
              "window in window layers); MLA stores the latent",
    "llama.cpp": "`n_ctx` cells padded to 256; K and V rows stored in the cache type (quantized types "
                 "in blocks of 32); iSWA layers keep `window + ubatch` cells, padded",
    "transformers": "HF DynamicCache: every layer grows to `T` tokens (sliding layers to `window − 1`); "
                    "MLA is cached decompressed (all heads' K and V)",
    "trtllm": "paged blocks of `tokens_per_block`; VSWA layers keep the window",
    "naive": "textbook `2 · L · H_kv · D · b · T`: every layer full, the config's raw head numbers",
}


def _n(x: int) -> str:
    return f"{x:,}"


def _per_token_terms(arch: ModelArch, kind: str, est: KVEstimate) -> tuple[str, int] | None:
    """(formula text, bytes) one token costs in one layer of `kind`, if all layers of it agree."""
    dt = get_dtype(est.kv_dtype)
    b = f"{dt.block_bytes}" if dt.block_elems == 1 else f"{dt.block_bytes}/{dt.block_elems}"
    specs = [s for s in arch.layers if s.kind == kind]
    if est.engine == "naive":
        h, d = arch.naive_num_kv_heads, arch.naive_head_dim
        return (f"2 × H_kv {h} × D {d} × {b} B", 2 * dt.row_bytes(h * d))
    if not specs:
        return None
    first = specs[0]
    if isinstance(first, FullAttention):
        shapes = {(kv_heads_per_rank(s.num_kv_heads, est.tp), s.head_dim, s.head_dim_v) for s in specs}
        if len(shapes) != 1:
            return None
        h, dk, dv = shapes.pop()
        per = dt.row_bytes(h * dk) + dt.row_bytes(h * dv)
        if dk == dv:
            return (f"2 (K,V) × H_kv {h} × D {dk} × {b} B", per)
        return (f"H_kv {h} × (D_k {dk} + D_v {dv}) × {b} B", per)
    if isinstance(first, MLA):
        if est.engine == "transformers":
            k = first.num_heads * (first.qk_nope_head_dim + first.rope_dim)
            v = first.num_heads * first.v_head_dim
            return (f"heads {first.num_heads} × (nope {first.qk_nope_head_dim} + rope {first.rope_dim}"
                    f" + v {first.v_head_dim}) × {b} B (decompressed)", dt.row_bytes(k) + dt.row_bytes(v))
        return (f"(kv_lora_rank {first.kv_lora_rank} + rope {first.rope_dim}) × {b} B (one latent, no ×2)",
                dt.row_bytes(first.latent_dim))
    return None


def engine_math(arch: ModelArch, est: KVEstimate) -> str:
    """Markdown lines deriving `est.kv_bytes` from the model's numbers for one engine."""
    lines = [f"**{escape_md(est.engine)}** ({escape_md(est.kv_dtype)}, T = {_n(est.context_len)} tokens, batch {est.batch}"
             + (f", block {est.block_size}" if est.block_size else "") + f"): {ENGINE_RULES.get(est.engine, '')}",
             ""]
    for kb in est.breakdown:
        if kb.kind == "padding":
            lines.append(f"- padding: {_n(kb.bytes)} B (page unification)")
            continue
        if kb.kind == "state":
            states = [s for s in arch.layers if isinstance(s, RecurrentState)]
            mixer = states[0].mixer if states else "state"
            lines.append(f"- recurrent state ({escape_md(mixer)}): {kb.num_layers} layers × a fixed per-sequence "
                         f"state = {_n(kb.bytes)} B, whatever T is")
            continue
        terms = _per_token_terms(arch, kb.kind, est)
        if terms is None:
            lines.append(f"- {kb.kind}: {kb.num_layers} layers × {_n(kb.tokens_per_seq)} tokens "
                         f"= {_n(kb.bytes)} B (per-layer shapes differ)")
            continue
        text, per = terms
        product = kb.num_layers * kb.tokens_per_seq * est.batch * per
        batch = f" × batch {est.batch}" if est.batch != 1 else ""
        line = (f"- {kb.kind}: L {kb.num_layers} × tokens {_n(kb.tokens_per_seq)}{batch} × [{text} = "
                f"{_n(per)} B] = {_n(product)} B")
        if product != kb.bytes:
            line += f"; the engine allocates {_n(kb.bytes)} B ({kb.bytes - product:+,} B of rounding)"
        lines.append(line)
    lines.append(f"- **total: {_n(est.kv_bytes)} B** per GPU; bytes per token {_n(est.bytes_per_token)}")
    for note in est.notes:
        lines.append(f"- _{escape_md(note)}_")
    return "\n".join(lines)
