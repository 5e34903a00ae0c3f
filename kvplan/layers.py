"""What each decoder layer keeps in its cache: the per-layer spec hierarchy, and `ModelArch`.

A model is a stack of layers; each layer stores something per token (attention K/V, an MLA latent),
a fixed state per sequence (Mamba / GatedDeltaNet), or nothing (KV shared with another layer, MLP-only
blocks). Specs are pure data: they know shapes in elements, never bytes, dtypes or engines. How a spec
becomes bytes (block rounding, window token counts, TP split) is each engine profile's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import ClassVar


@dataclass(frozen=True)
class LayerSpec:
    """One cache-holding component of decoder layer `index` (a layer may hold two: Falcon-H1)."""

    index: int
    draft: bool = False
    """A speculative-decoding draft layer (EAGLE, MTP, draft model), sized beside the target's."""
    kind: ClassVar[str] = "none"


@dataclass(frozen=True)
class FullAttention(LayerSpec):
    """Standard K/V cache: per token, `num_kv_heads · (head_dim + head_dim_v)` elements."""

    num_kv_heads: int = 0
    head_dim: int = 0
    head_dim_v: int = 0
    kind: ClassVar[str] = "full"

    def elems_per_token(self, num_kv_heads: int | None = None) -> int:
        """K plus V elements one token occupies in this layer (for `num_kv_heads` heads, default all)."""
        heads = self.num_kv_heads if num_kv_heads is None else num_kv_heads
        return heads * (self.head_dim + self.head_dim_v)


@dataclass(frozen=True)
class SlidingWindow(FullAttention):
    """K/V for at most `window` recent tokens (how many exactly is engine-specific)."""

    window: int = 0
    kind: ClassVar[str] = "sliding"


@dataclass(frozen=True)
class ChunkedLocal(FullAttention):
    """Llama 4 iRoPE local layers: attention within chunks of `chunk` tokens."""

    chunk: int = 0
    kind: ClassVar[str] = "chunked"


@dataclass(frozen=True)
class MLA(LayerSpec):
    """DeepSeek-style multi-head latent attention: one latent of `kv_lora_rank + rope_dim` per token.

    The per-head dims are kept because HF transformers caches the *decompressed* K and V
    (`num_heads · (qk_nope_head_dim + rope_dim)` and `num_heads · v_head_dim`).
    """

    kv_lora_rank: int = 0
    rope_dim: int = 0
    num_heads: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    index_head_dim: int = 0
    """DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): the lightning indexer's key, one per token
    beside the latent; 0 = no indexer in this layer (plain MLA, or a GLM-5.2 "shared" indexer layer)."""
    kind: ClassVar[str] = "mla"

    @property
    def latent_dim(self) -> int:
        return self.kv_lora_rank + self.rope_dim

    @property
    def indexer_fp8_bytes(self) -> int:
        """Bytes of one token's indexer key as vLLM, SGLang and TRT-LLM store it: fp8 values plus one
        fp32 scale per 128 (128 + 4 = 132 B for index_head_dim 128), whatever the KV dtype."""
        return self.index_head_dim + self.index_head_dim // 128 * 4

    @property
    def latent_fp8_ds_bytes(self) -> int:
        """One token's latent in the fp8 DSA layout (vLLM fp8_ds_mla, SGLang NSA fp8): the no-RoPE part
        in fp8 with an fp32 scale per 128, the RoPE part in bf16: 512 + 16 + 128 = 656 B for DeepSeek."""
        return self.kv_lora_rank + self.kv_lora_rank // 128 * 4 + 2 * self.rope_dim


@dataclass(frozen=True)
class RecurrentState(LayerSpec):
    """A fixed per-sequence state (Mamba1, Mamba2, GatedDeltaNet), nothing per token.

    Shapes are before tensor parallelism. The conv state has `conv_channels` channels and a history
    of `conv_kernel - 1` (vLLM, SGLang, llama.cpp) or `conv_kernel` (HF) steps. The SSM state is
    `[num_heads, head_dim, state_dim]`: Mamba1 `[d_inner, 1, d_state]`, Mamba2 `[n_heads, d_head,
    d_state]`, GDN `[Hv, Dv, Dk]`. For Mamba2, `conv_channels = d_inner + 2·n_groups·state_dim`
    (groups are replicated under TP when `n_groups % tp != 0`). `ssm_dtype` is the state dtype the
    config pins (Qwen3.5 `mamba_ssm_dtype: float32`), else None (engine default).
    """

    mixer: str = "mamba2"  # mamba1 | mamba2 | gdn | shortconv (LFM2, conv only) | lightning (MiniMax)
    conv_kernel: int = 0
    conv_channels: int = 0
    num_heads: int = 0
    head_dim: int = 0
    state_dim: int = 0
    n_groups: int = 0
    ssm_dtype: str | None = None
    kind: ClassVar[str] = "state"

    @property
    def ssm_elems(self) -> int:
        return self.num_heads * self.head_dim * self.state_dim


@dataclass(frozen=True)
class NoCache(LayerSpec):
    """A layer that allocates no cache of its own: `reason` says why (KV shared, MLP-only...)."""

    reason: str = ""
    kind: ClassVar[str] = "none"


# A NAS block whose attention is one linear map (DeciLM `replace_with_linear`): no KV, an h×h weight.
LINEAR_ATTENTION_REASON = "attention replaced by a linear layer"

ATTENTION_KINDS = ("full", "sliding", "chunked", "mla")
ALL_KINDS = ("full", "sliding", "chunked", "mla", "state", "none")


@dataclass(frozen=True)
class WeightDims:
    """The config numbers that weight sizing needs (parameter counts are computed by `weights`)."""

    hidden_size: int = 0
    intermediate_size: int = 0
    vocab_size: int = 0
    num_attention_heads: int = 0
    tie_word_embeddings: bool = False
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    first_k_dense_replace: int = 0
    moe_layers: tuple[int, ...] = ()  # layers with routed experts; () = every layer from first_k_dense_replace
    # NAS models (DeciLM block_configs): each layer's own FFN width, 0 where the FFN is no_op; () = uniform
    layer_intermediate_sizes: tuple[int, ...] = ()
    q_lora_rank: int = 0
    num_nextn_predict_layers: int = 0
    index_n_heads: int = 0  # DSA lightning indexer heads (DeepSeek-V3.2: 64, GLM-5: 32)
    attention_bias: bool = False  # q/k/v/o biases (gpt-oss); Qwen2's q/k/v-only biases follow model_type
    mlp_bias: bool = False
    # The checkpoint's own `quantization_config`, when it has one ("" = none): quant_method as written
    # ("fp8", "mxfp4", "compressed-tensors", "awq", "gptq", "modelopt", "bitsandbytes"), bits of the
    # quantized linear weights, scale group size along the input dim (0 = per channel / per tensor;
    # fp8 block-wise checkpoints use quant_block = (128, 128)), and the module-name patterns left unquantized.
    quant_method: str = ""
    quant_bits: int = 0
    quant_group_size: int = 0
    quant_block: tuple[int, ...] = ()
    quant_format: str = ""  # "float" | "int" | "mxfp4" | "nvfp4" (how the scales are stored)
    quant_excluded: tuple[str, ...] = ()
    # Multimodal tower (ViT-style) as the config's vision_config describes it; 0 = none.
    vision_num_layers: int = 0
    vision_hidden_size: int = 0
    vision_intermediate_size: int = 0
    vision_patch_size: int = 0
    # (num_hidden_layers, hidden_size) as vision_config's own keys give them, SGLang's defaults 24 / 1024
    # for a missing key (its multimodal memory factor reads exactly these); () = no vision_config.
    vision_config_dims: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelArch:
    """A model as kvplan sees it: its cache-holding layer specs plus the numbers around them.

    `layers` lists every cache component in layer order (Falcon-H1 layers contribute two).
    `naive_*` are the raw config numbers a textbook `2·L·H·D·b` calculator would use, kept so the
    `naive` profile can show how far off that is (DeepSeek-V3: 128 heads of 56, not one latent).
    """

    model_id: str
    model_type: str
    num_layers: int
    layers: tuple[LayerSpec, ...]
    dtype: str
    max_position_embeddings: int = 0
    naive_num_kv_heads: int = 0
    naive_head_dim: int = 0
    weight_dims: WeightDims = field(default_factory=WeightDims)

    def of_kind(self, kind: str) -> tuple[LayerSpec, ...]:
        return tuple(s for s in self.layers if s.kind == kind)

    def __hash__(self) -> int:
        # Memoised (the arch is immutable): every memoised helper hashes it, and hashing 80+ layer
        # specs each time cost a recommendation ~0.1 s.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    @cached_property
    def digest(self) -> str:
        """A digest of the whole spec (its repr), computed once: the app keys its caches on it, where
        Streamlit's own hashing walked every layer spec on each rerun (half of a Plan rerun)."""
        import hashlib

        return hashlib.blake2b(repr(self).encode(), digest_size=16).hexdigest()

    @cached_property
    def kinds(self) -> frozenset[str]:
        """The set of layer kinds present (computed once; the arch is immutable)."""
        return frozenset(s.kind for s in self.layers)

    @property
    def windowed(self) -> bool:
        """Whether any layer is sliding-window or chunked-local."""
        return "sliding" in self.kinds or "chunked" in self.kinds

    @property
    def attention_kinds(self) -> tuple[str, ...]:
        """Kinds present, in canonical order, e.g. ('full', 'sliding') for Gemma 3."""
        return tuple(k for k in ALL_KINDS if k in self.kinds)

    def kind_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.layers:
            counts[s.kind] = counts.get(s.kind, 0) + 1
        return counts

    def label(self) -> str:
        """Short description, e.g. 'GQA 8/64 KV heads, 80 full' or 'MLA 512+64, 61 layers'."""
        parts = []
        for kind, n in self.kind_counts().items():
            parts.append(f"{n} {kind}")
        return ", ".join(parts)
