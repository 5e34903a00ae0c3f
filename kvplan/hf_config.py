"""Parse a Hugging Face `config.json` (as a dict) into a `ModelArch`.

Pydantic validates the fields at the edge (types, positivity, the field-name aliases of each family);
the rest of kvplan only ever sees the frozen `ModelArch`. This module knows config conventions — which
layer is sliding, how Falcon spells its KV heads, where a VLM nests its text model — and nothing about
bytes or engines. It never imports or executes anything a config names (`auto_map` is ignored).

Every unknown layer type or inconsistent field raises `UnsupportedConfigError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, Strict, ValidationError

from kvplan.errors import UnsupportedConfigError
from kvplan.units import show_number
from kvplan.layers import (
    LINEAR_ATTENTION_REASON,
    MLA,
    ChunkedLocal,
    FullAttention,
    LayerSpec,
    ModelArch,
    NoCache,
    RecurrentState,
    SlidingWindow,
    WeightDims,
)

# Every integer field has a type and a range: unbounded ints (10**400 experts, -1 ranks) overflowed
# float conversions downstream or gave negative parameter counts. 2^40 is far past any real dimension
# and keeps every product kvplan forms (dims × layers × tokens × batch) well inside float range.
Int = Optional[Annotated[int, Strict(), Field(ge=0, le=1 << 40)]]
PosInt = Optional[Annotated[int, Strict(), Field(gt=0, le=1 << 40)]]
SmallInt = Optional[Annotated[int, Strict(), Field(ge=0, le=1 << 10)]]  # MTP layers, shared experts
ExpertInt = Optional[Annotated[int, Strict(), Field(ge=0, le=1 << 16)]]  # routed experts: 512 at most today

# Where multimodal / wrapper configs keep their language model (ENGINE_KV_SPEC.md §F, "nesting").
_NESTED_TEXT_KEYS = ("text_config", "llm_config", "language_config")

# NOTE: Gemma 3 multimodal configs ship a sparse `text_config`; absent fields take transformers'
# Gemma3TextConfig defaults (ENGINE_KV_SPEC.md I.7). gemma-3-4b-it relies on heads 8 / kv 4 / dim 256.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
        "max_position_embeddings": 131072, "sliding_window": 4096, "sliding_window_pattern": 6,
        "tie_word_embeddings": True,
    },
}

# Families whose `sliding_window` only applies when `use_sliding_window` is true, from layer
# `max_window_layers` on (transformers Qwen2Config / Qwen3Config).
_QWEN_SWA_FAMILIES = {"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen2_vl", "qwen2_5_vl", "qwen2_vl_text",
                      "qwen2_5_vl_text"}

# Families whose transformers config class defaults `tie_word_embeddings` to True, so a config.json
# that omits it (Gemma 2, GPT-2, Falcon) shares the LM head with the embedding.
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text", "gpt2", "gpt_bigcode", "falcon", "RefinedWeb",
                    "RefinedWebModel", "starcoder2", "opt", "bloom", "mamba", "falcon_mamba", "mamba2"}

_LAYER_TYPE_WORDS = {
    "full_attention": "full", "attention": "full", "global_attention": "full", "global": "full",
    "sliding_attention": "sliding", "sliding_window_attention": "sliding", "local_attention": "sliding",
    "local": "sliding", "chunked_attention": "chunked",
    "linear_attention": "gdn", "mamba": "mamba", "mamba2": "mamba", "conv": "shortconv",
}


class _Fields(BaseModel):
    """The config.json fields kvplan reads, with the aliases each family uses."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model_type: Annotated[str, Strict()] = ""
    num_hidden_layers: PosInt = Field(None, validation_alias=AliasChoices(
        "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    num_attention_heads: PosInt = Field(None, validation_alias=AliasChoices(
        "num_attention_heads", "n_head", "n_heads"))
    num_key_value_heads: Optional[Any] = Field(None, validation_alias=AliasChoices(
        "n_head_kv", "num_kv_heads", "num_key_value_heads", "multi_query_group_num"))
    head_dim: PosInt = Field(None, validation_alias=AliasChoices(
        "head_dim", "kv_channels", "hidden_size_per_head", "attention_head_dim"))
    v_head_dim: PosInt = None
    hidden_size: PosInt = Field(None, validation_alias=AliasChoices("hidden_size", "n_embd", "d_model"))
    intermediate_size: PosInt = Field(None, validation_alias=AliasChoices(
        "intermediate_size", "ffn_hidden_size", "n_inner"))
    vocab_size: PosInt = Field(None, validation_alias=AliasChoices("vocab_size", "padded_vocab_size"))
    max_position_embeddings: PosInt = Field(None, validation_alias=AliasChoices(
        "max_position_embeddings", "n_positions", "seq_length", "max_seq_len", "max_sequence_length"))
    tie_word_embeddings: Optional[bool] = None
    torch_dtype: Optional[str] = Field(None, validation_alias=AliasChoices("torch_dtype", "dtype"))

    # Falcon / GPT-BigCode multi-query naming
    multi_query: Optional[bool] = None
    new_decoder_architecture: Optional[bool] = None

    # sliding window / local attention
    sliding_window: Optional[Annotated[int, Strict(), Field(ge=0, le=1 << 63)]] = None  # huge = no window
    use_sliding_window: Optional[bool] = None
    max_window_layers: Int = None
    sliding_window_pattern: Optional[Any] = None  # int period (Gemma 3: 6) or "LLLG" (EXAONE 4)
    layer_types: Optional[list[Any]] = None
    attention_chunk_size: PosInt = None
    no_rope_layers: Optional[list[Any]] = None
    num_kv_shared_layers: Int = None

    # MLA (DeepSeek-V2/V3, Kimi-K2, GLM-4.x-lite)
    kv_lora_rank: PosInt = None
    qk_rope_head_dim: PosInt = None
    qk_nope_head_dim: Int = None
    q_lora_rank: Int = None

    # hybrids
    hybrid_override_pattern: Optional[str] = None
    layers_block_type: Optional[list[Any]] = None
    attn_layer_period: PosInt = None
    attn_layer_offset: Int = None
    full_attention_interval: PosInt = None
    attn_type_list: Optional[list[Any]] = None  # MiniMax-M1 / MiniMax-Text-01: 0 lightning, 1 softmax
    # GatedDeltaNet (Qwen3-Next / Qwen3.5)
    linear_num_key_heads: PosInt = None
    linear_num_value_heads: PosInt = None
    linear_key_head_dim: PosInt = None
    linear_value_head_dim: PosInt = None
    linear_conv_kernel_dim: PosInt = None
    mamba_ssm_dtype: Optional[str] = Field(None, validation_alias=AliasChoices(
        "mamba_ssm_dtype", "mamba_ssm_cache_dtype"))  # Qwen3.5, Nemotron-3: float32 SSM state
    conv_L_cache: PosInt = None  # LFM2 short-conv layers
    cross_attention_layers: Optional[list[Any]] = None  # Llama 3.2 Vision (mllama)
    # Mamba2 (Nemotron-H / Granite-4.0-H / Bamba / Falcon-H1 / pure Mamba2) and Mamba1 (Jamba, Mamba)
    mamba_num_heads: PosInt = Field(None, validation_alias=AliasChoices("mamba_num_heads", "mamba_n_heads"))
    mamba_head_dim: PosInt = Field(None, validation_alias=AliasChoices("mamba_head_dim", "mamba_d_head"))
    mamba_d_state: PosInt = Field(None, validation_alias=AliasChoices("mamba_d_state", "ssm_state_size"))
    mamba_n_groups: PosInt = Field(None, validation_alias=AliasChoices("mamba_n_groups", "n_groups"))
    mamba_d_conv: PosInt = Field(None, validation_alias=AliasChoices("mamba_d_conv", "conv_kernel"))
    mamba_expand: PosInt = Field(None, validation_alias=AliasChoices("mamba_expand", "expand"))
    mamba_d_ssm: PosInt = None
    state_size: PosInt = None
    num_heads: PosInt = None  # pure Mamba2 SSM heads (NOT attention heads)

    # weights (used by the planner)
    num_experts: ExpertInt = Field(None, validation_alias=AliasChoices(
        "num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"))
    num_experts_per_tok: ExpertInt = Field(None, validation_alias=AliasChoices(
        "num_experts_per_tok", "experts_per_token", "moe_top_k"))
    moe_intermediate_size: Int = None
    n_shared_experts: SmallInt = Field(None, validation_alias=AliasChoices("n_shared_experts", "num_shared_experts"))
    shared_expert_intermediate_size: Int = None
    first_k_dense_replace: Int = None
    # Llama 4: routed experts on `moe_layers` (default every interleave_moe_layer_step-th layer), one
    # shared expert of intermediate_size, dense layers of intermediate_size_mlp
    moe_layers: Optional[list[Any]] = None
    interleave_moe_layer_step: PosInt = None
    intermediate_size_mlp: PosInt = None
    num_nextn_predict_layers: SmallInt = None  # DeepSeek-V3 / GLM-4.5: 1 (1e7 took 30 s and 2.6 GB)
    attention_bias: Optional[bool] = None
    mlp_bias: Optional[bool] = None
    # DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): the lightning indexer's key width per token
    index_head_dim: PosInt = None
    index_topk: PosInt = None
    index_n_heads: PosInt = None
    indexer_types: Optional[list[Any]] = None  # GLM-5.2: "full" layers hold an indexer, "shared" reuse one
    # NAS heterogeneous blocks (Llama-3.1-Nemotron-Ultra-253B, Llama-3.3-Nemotron-Super-49B: DeciLM)
    block_configs: Optional[list[Any]] = None


def _text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language-model part of a config: the nested text config if there is one, else itself.

    Top-level keys the nested dict lacks (dtype, tie_word_embeddings) are inherited, as transformers'
    `get_text_config()` users effectively see them.
    """
    nested: Any = None
    for key in _NESTED_TEXT_KEYS:
        if isinstance(config.get(key), Mapping):
            nested = config[key]
            break
    thinker = config.get("thinker_config")
    if nested is None and isinstance(thinker, Mapping) and isinstance(thinker.get("text_config"), Mapping):
        nested = thinker["text_config"]  # Qwen-Omni
    if nested is None:
        text = dict(config)
    else:
        text = {k: v for k, v in config.items() if k not in _NESTED_TEXT_KEYS and k != "model_type"}
        text.update(nested)
        if "model_type" not in nested and isinstance(config.get("model_type"), str):
            text["model_type"] = config["model_type"] + "_text"
    defaults = _FAMILY_DEFAULTS.get(text.get("model_type") if isinstance(text.get("model_type"), str) else "")
    if defaults:
        text = {**defaults, **{k: v for k, v in text.items() if v is not None or k not in defaults}}
    return text


def _validate(text: dict[str, Any]) -> _Fields:
    try:
        return _Fields.model_validate(text)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        got = first.get("input")
        shown = show_number(got, 60) if not isinstance(got, dict) else "an object"
        raise UnsupportedConfigError(field, f"{first['msg'].lower()} (got {shown})") from None


def _require(value: Any, field: str, why: str) -> Any:
    if value is None:
        raise UnsupportedConfigError(field, f"missing; {why}")
    return value


def _nas_blocks(f: _Fields, num_layers: int) -> list[tuple[str, int, int]]:
    """(attention word, KV heads, FFN width) per block of a NAS `block_configs` list (DeciLM).

    Attention is "full" with `num_attention_heads // n_heads_in_group` KV heads, "none" when `no_op`
    (no attention, no KV: 98 of Nemotron-Ultra's 162 blocks), or "linear" when `replace_with_linear`.
    The FFN width follows DeciLM's `_ffn_mult_to_intermediate_size`: int(2·ffn_mult·hidden/3) rounded
    up to a multiple of 256; 0 when the FFN is `no_op`.
    """
    blocks = _flags(f.block_configs, "block_configs", num_layers)
    heads = _require(f.num_attention_heads, "num_attention_heads", "needed for block_configs attention")
    hidden = f.hidden_size or 0
    out = []
    for i, block in enumerate(blocks):
        where = f"block_configs[{i}]"
        if not isinstance(block, Mapping) or not isinstance(block.get("attention"), Mapping):
            raise UnsupportedConfigError(where, "expected an object with an 'attention' object")
        attn, ffn = block["attention"], block.get("ffn")
        if attn.get("no_op") is True:
            word, kv = "none", 0
        elif attn.get("replace_with_linear") is True:
            word, kv = "linear", 0
        else:
            group = attn.get("n_heads_in_group")
            if type(group) is not int or not 0 < group <= heads or heads % group:
                raise UnsupportedConfigError(f"{where}.attention.n_heads_in_group",
                                             f"expected a positive divisor of the {heads} attention heads, "
                                             f"got {group!r}")
            word, kv = "full", heads // group
        width = 0
        if isinstance(ffn, Mapping) and ffn.get("no_op") is not True:
            mult = ffn.get("ffn_mult")
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not 0 < mult <= 1024:
                raise UnsupportedConfigError(f"{where}.ffn.ffn_mult", f"expected a positive number, got {mult!r}")
            width = -(-int(2 * mult * hidden / 3) // 256) * 256
        out.append((word, kv, width))
    return out


def _kv_heads(f: _Fields, raw: Mapping[str, Any], num_layers: int) -> list[int]:
    """KV heads per layer, following vLLM's ModelConfig.get_total_num_kv_heads order."""
    heads = _require(f.num_attention_heads, "num_attention_heads", "needed for attention layers")
    if f.block_configs is not None:
        # NOTE: NAS models (Nemotron-Ultra/Super) set num_key_value_heads null; each block says its own.
        return [kv for _, kv, _ in _nas_blocks(f, num_layers)]
    # NOTE: Falcon-7B (multi_query, old architecture) and GPT-BigCode store one shared KV head.
    if f.multi_query and not f.new_decoder_architecture and f.model_type in (
            "falcon", "RefinedWeb", "RefinedWebModel", "gpt_bigcode"):
        return [1] * num_layers
    kv: Any = f.num_key_value_heads
    attn_config = raw.get("attn_config")
    if kv is None and isinstance(attn_config, Mapping) and "kv_n_heads" in attn_config:
        kv = attn_config["kv_n_heads"]  # MPT, DBRX
    if kv is None:
        return [heads] * num_layers  # GPT-2, OPT, Bloom, GPT-NeoX: plain MHA
    per_layer = kv if isinstance(kv, list) else [kv] * num_layers
    if len(per_layer) != num_layers:
        raise UnsupportedConfigError("num_key_value_heads",
                                     f"has {len(per_layer)} entries for {num_layers} layers")
    for value in per_layer:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UnsupportedConfigError("num_key_value_heads", f"expected a positive integer, got "
                                                                f"{show_number(value)}")
        if value and heads % value:
            raise UnsupportedConfigError(
                "num_key_value_heads",
                f"{value} KV heads do not divide {heads} attention heads; fix num_key_value_heads")
        if value > heads:
            raise UnsupportedConfigError("num_key_value_heads", f"{value} exceeds num_attention_heads {heads}")
    return per_layer


def _head_dim(f: _Fields) -> int:
    if f.head_dim is not None:
        return f.head_dim  # declared head_dim wins (Gemma, Qwen3, Mistral-Nemo: != hidden/heads)
    hidden = _require(f.hidden_size, "hidden_size", "needed to derive head_dim")
    heads = _require(f.num_attention_heads, "num_attention_heads", "needed to derive head_dim")
    if hidden % heads:
        raise UnsupportedConfigError("head_dim", f"missing and hidden_size {hidden} is not divisible by "
                                                 f"{heads} heads; add head_dim")
    return hidden // heads


def _flags(values: list[Any], field: str, num_layers: int) -> list[Any]:
    if len(values) != num_layers:
        raise UnsupportedConfigError(field, f"has {len(values)} entries but num_hidden_layers is {num_layers}")
    return values


def _llama4_moe(f: _Fields, num_layers: int) -> dict[str, Any]:
    """Llama4TextConfig's MoE layout: which layers route, and the shared / dense MLP widths."""
    step = f.interleave_moe_layer_step or 1
    layers = f.moe_layers if f.moe_layers is not None else list(range(step - 1, num_layers, step))
    if any(type(i) is not int or not 0 <= i < num_layers for i in layers):
        raise UnsupportedConfigError("moe_layers", f"must list layer indices in 0..{num_layers - 1}")
    if not f.num_experts:
        return {}
    return {"moe_layers": tuple(sorted(set(layers))), "num_shared_experts": 1,
            "moe_intermediate_size": f.intermediate_size or 0,
            "intermediate_size": f.intermediate_size_mlp or f.intermediate_size or 0}


def _layer_plan(f: _Fields, num_layers: int) -> list[str]:
    """One word per layer: full / sliding / chunked / mla / gdn / mamba / both / none."""
    mt = f.model_type
    if f.kv_lora_rank is not None:
        return ["mla"] * num_layers
    if f.block_configs is not None:
        return [word for word, _, _ in _nas_blocks(f, num_layers)]
    if f.hybrid_override_pattern is not None:  # Nemotron-H: M = Mamba2, * = attention, - / E = MLP / MoE
        pattern = _flags(list(f.hybrid_override_pattern), "hybrid_override_pattern", num_layers)
        words = {"M": "mamba", "*": "full", "-": "none", "E": "none"}
        bad = sorted({c for c in pattern if c not in words})
        if bad:
            raise UnsupportedConfigError("hybrid_override_pattern", f"unknown layer symbol(s) {bad}; "
                                                                    "expected M, *, - or E")
        return [words[c] for c in pattern]
    if f.layers_block_type is not None:  # Jamba: "attention" / "mamba"
        kinds = _flags(f.layers_block_type, "layers_block_type", num_layers)
        out = []
        for k in kinds:
            if k not in ("attention", "mamba"):
                raise UnsupportedConfigError("layers_block_type", f"unknown layer type {k!r}")
            out.append("full" if k == "attention" else "mamba")
        return out
    if mt == "jamba" and f.attn_layer_period is not None:
        offset = f.attn_layer_offset or 0
        return ["full" if i % f.attn_layer_period == offset else "mamba" for i in range(num_layers)]
    if mt == "falcon_h1":
        return ["both"] * num_layers  # attention and Mamba2 side by side in every layer
    if mt in ("mamba", "falcon_mamba"):
        return ["mamba"] * num_layers
    if mt == "mamba2":
        return ["mamba"] * num_layers
    if f.layer_types is not None:
        out = []
        for i, word in enumerate(_flags(f.layer_types, "layer_types", num_layers)):
            kind = _LAYER_TYPE_WORDS.get(word) if isinstance(word, str) else None
            if kind is None:
                raise UnsupportedConfigError(
                    f"layer_types[{i}]", f"unknown layer type {word!r}; kvplan knows "
                                         f"{', '.join(sorted(_LAYER_TYPE_WORDS))}")
            out.append(kind)
        return out
    if f.attn_type_list is not None:
        flags = _flags(f.attn_type_list, "attn_type_list", num_layers)
        if any(flag not in (0, 1) for flag in flags):
            raise UnsupportedConfigError("attn_type_list", "expected 0 (lightning) or 1 (softmax) per layer")
        return ["full" if flag == 1 else "lightning" for flag in flags]
    if f.full_attention_interval is not None:  # Qwen3-Next: every 4th layer is full attention
        return ["full" if (i + 1) % f.full_attention_interval == 0 else "gdn" for i in range(num_layers)]
    if mt in ("llama4", "llama4_text") or (f.attention_chunk_size and f.no_rope_layers is not None):
        if f.attention_chunk_size:
            flags = f.no_rope_layers or [int((i + 1) % 4 != 0) for i in range(num_layers)]
            flags = _flags(flags, "no_rope_layers", num_layers)
            # no_rope_layers[i] == 1: RoPE layer, chunked local; 0: NoPE global layer (Llama4TextConfig)
            return ["chunked" if flag else "full" for flag in flags]
        return ["full"] * num_layers
    window = f.sliding_window or 0
    if mt in _QWEN_SWA_FAMILIES or f.use_sliding_window is False:
        if f.use_sliding_window and window:
            first = f.max_window_layers if f.max_window_layers is not None else 0
            return ["sliding" if i >= first else "full" for i in range(num_layers)]
        return ["full"] * num_layers
    if not window:
        return ["full"] * num_layers
    pattern = f.sliding_window_pattern
    if isinstance(pattern, str) and pattern and set(pattern) <= {"L", "G"}:
        # NOTE: EXAONE 4 spells the period out: "LLLG" = three local layers then one global.
        return ["sliding" if pattern[i % len(pattern)] == "L" else "full" for i in range(num_layers)]
    if pattern is not None:  # Gemma 3 (6), Cohere2 (4): the last layer of each period is global
        if isinstance(pattern, bool) or not isinstance(pattern, int) or pattern <= 0:
            raise UnsupportedConfigError("sliding_window_pattern",
                                         f"expected a positive integer or a string of L/G, got {pattern!r}")
        return ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(num_layers)]
    if mt in ("gemma2", "gemma3_text", "gemma3"):
        p = 2 if mt == "gemma2" else 6
        return ["full" if (i + 1) % p == 0 else "sliding" for i in range(num_layers)]
    # NOTE: Mistral-7B-v0.1 and Phi-3 put `sliding_window` on every layer (transformers D.2 rule).
    return ["sliding"] * num_layers


def _recurrent(f: _Fields, word: str, index: int) -> RecurrentState:
    ssm_dtype = f.mamba_ssm_dtype
    if word == "gdn":
        hk = _require(f.linear_num_key_heads, "linear_num_key_heads", "needed for linear-attention layers")
        hv = _require(f.linear_num_value_heads, "linear_num_value_heads", "needed for linear-attention layers")
        dk = _require(f.linear_key_head_dim, "linear_key_head_dim", "needed for linear-attention layers")
        dv = _require(f.linear_value_head_dim, "linear_value_head_dim", "needed for linear-attention layers")
        k = _require(f.linear_conv_kernel_dim, "linear_conv_kernel_dim", "needed for linear-attention layers")
        return RecurrentState(index, mixer="gdn", conv_kernel=k, conv_channels=2 * hk * dk + hv * dv,
                              num_heads=hv, head_dim=dv, state_dim=dk, ssm_dtype=ssm_dtype)
    if word == "lightning":
        # NOTE: MiniMax lightning attention keeps a [heads, head_dim, head_dim] KV state per sequence,
        # held in float32 by vLLM (linear_attention_state_dtype); no conv state.
        heads = _require(f.num_attention_heads, "num_attention_heads", "needed for lightning attention")
        dim = _head_dim(f)
        return RecurrentState(index, mixer="lightning", num_heads=heads, head_dim=dim, state_dim=dim,
                              ssm_dtype=ssm_dtype or "float32")
    hidden = _require(f.hidden_size, "hidden_size", "needed for Mamba layers")
    if word == "shortconv":  # LFM2: a depthwise conv over the last L_cache inputs, no SSM state
        k = _require(f.conv_L_cache, "conv_L_cache", "needed for LFM2 conv layers")
        return RecurrentState(index, mixer="shortconv", conv_kernel=k, conv_channels=hidden)
    d_conv = _require(f.mamba_d_conv, "mamba_d_conv", "needed for Mamba layers (conv_kernel)")
    if f.mamba_num_heads is not None or f.model_type in ("mamba2",):
        heads = f.mamba_num_heads or _require(f.num_heads, "num_heads", "needed for Mamba2 layers")
        head_dim = _require(f.mamba_head_dim if f.mamba_num_heads is not None else f.head_dim,
                            "mamba_head_dim", "needed for Mamba2 layers")
        d_state = _require(f.mamba_d_state or f.state_size, "mamba_d_state", "needed for Mamba2 layers")
        groups = f.mamba_n_groups or 1
        d_inner = f.mamba_d_ssm or heads * head_dim
        if d_inner != heads * head_dim:
            raise UnsupportedConfigError("mamba_d_ssm", f"{d_inner} != mamba_n_heads·mamba_d_head "
                                                        f"= {heads * head_dim}")
        return RecurrentState(index, mixer="mamba2", conv_kernel=d_conv,
                              conv_channels=d_inner + 2 * groups * d_state, num_heads=heads,
                              head_dim=head_dim, state_dim=d_state, n_groups=groups, ssm_dtype=ssm_dtype)
    d_state = _require(f.mamba_d_state or f.state_size, "mamba_d_state", "needed for Mamba layers")
    expand = f.mamba_expand or 2
    d_inner = f.intermediate_size if f.model_type in ("mamba", "falcon_mamba") and f.intermediate_size \
        else expand * hidden
    return RecurrentState(index, mixer="mamba1", conv_kernel=d_conv, conv_channels=d_inner,
                          num_heads=d_inner, head_dim=1, state_dim=d_state, ssm_dtype=ssm_dtype)


def _indexer_layers(f: _Fields, num_layers: int) -> set[int]:
    """Layers that keep a DSA lightning-indexer key: every MLA layer of a model with `index_topk`
    (DeepSeek-V3.2, GLM-5), or, where `indexer_types` is given (GLM-5.2), only the "full" ones: a
    "shared" layer reuses the previous full layer's top-k and allocates no indexer cache
    (llama.cpp PR #26474, vLLM IndexCache PR #37735)."""
    if f.index_topk is None or f.index_head_dim is None or f.kv_lora_rank is None:
        return set()
    if f.indexer_types is None:
        return set(range(num_layers))
    kinds = _flags(f.indexer_types, "indexer_types", num_layers)
    bad = sorted({repr(k) for k in kinds if k not in ("full", "shared")})
    if bad:
        raise UnsupportedConfigError("indexer_types", f"unknown indexer type(s) {', '.join(bad)}; expected "
                                                      "'full' or 'shared'")
    return {i for i, k in enumerate(kinds) if k == "full"}


def _cross_attention_layers(f: _Fields, num_layers: int) -> set[int]:
    out = set()
    for value in f.cross_attention_layers or ():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_layers:
            raise UnsupportedConfigError("cross_attention_layers", f"{value!r} is not a layer index below "
                                                                   f"{num_layers}")
        out.add(value)
    return out


def _dtype(f: _Fields) -> str:
    from kvplan.dtypes import canonical  # local: dtypes is tiny, but keep hf_config's imports minimal

    if f.torch_dtype is None:
        return "fp32"  # transformers' default when a config names no dtype (GPT-2)
    try:
        name = canonical(f.torch_dtype)
    except Exception:
        raise UnsupportedConfigError("torch_dtype", f"unknown dtype {f.torch_dtype!r}") from None
    if name not in ("fp32", "bf16", "fp16"):
        raise UnsupportedConfigError("torch_dtype", f"{f.torch_dtype!r} is not a model dtype "
                                                    "(expected float32, bfloat16 or float16)")
    return name


def _int_field(value: Any, field: str = "", maximum: int = 1 << 24) -> int:
    """A size from a nested config block: a positive int up to `maximum`, else 0 ("not given"; GPTQ
    writes group_size -1 for per-channel). Larger is a typed error naming `field` (10**400 overflowed)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return 0
    if value > maximum:
        raise UnsupportedConfigError(field or "config", f"{show_number(value)} is out of range "
                                                        f"(limit {maximum:,})")
    return value


def _quant(config: Mapping[str, Any], text: Mapping[str, Any]) -> dict[str, Any]:
    """WeightDims fields from the checkpoint's `quantization_config` (top level or text config).

    Only what weight sizing needs: method, bits, scale group/block, scale format, excluded modules.
    An unknown method is kept by name with bits 0 (weights then fall back to the model dtype).
    """
    q = config.get("quantization_config") or text.get("quantization_config")
    if not isinstance(q, Mapping):
        return {}
    method = str(q.get("quant_method") or "").lower()
    excluded = q.get("modules_to_not_convert") or q.get("ignore") or q.get("ignored_layers") or []
    excluded = tuple(str(x) for x in excluded) if isinstance(excluded, list) else ()
    out: dict[str, Any] = {"quant_method": method, "quant_excluded": excluded}
    if method == "fp8":  # DeepSeek-V3 / Kimi-K2 block-wise e4m3; Devstral per-tensor (block None)
        block = q.get("weight_block_size")
        if isinstance(block, list):
            field = "quantization_config.weight_block_size"
            block = tuple(_int_field(b, field) for b in block)
            if len(block) != 2 or not all(block):  # [0, 0] divided by zero downstream
                raise UnsupportedConfigError(field, "expected two positive sizes like [128, 128]")
        out.update(quant_bits=8, quant_format="float", quant_block=block if isinstance(block, tuple) else ())
    elif method == "mxfp4":  # gpt-oss: 4-bit e2m1 experts, one e8m0 scale per 32 values
        out.update(quant_bits=4, quant_group_size=32, quant_format="mxfp4")
    elif method in ("awq", "gptq", "autoround", "auto-round"):
        bits = _int_field(q.get("bits") or q.get("w_bit") or 4, "quantization_config.bits", 32)
        group = q.get("group_size", q.get("q_group_size", 128))
        out.update(quant_bits=bits, quant_group_size=_int_field(group, "quantization_config.group_size"),
                   quant_format="int")
    elif method == "compressed-tensors":
        groups = q.get("config_groups")
        weights = None
        if isinstance(groups, Mapping):
            for group in groups.values():
                if isinstance(group, Mapping) and isinstance(group.get("weights"), Mapping):
                    weights = group["weights"]
                    break
        if weights is not None:
            bits = _int_field(weights.get("num_bits"), "quantization_config.weights.num_bits", 32)
            kind = str(weights.get("type") or "int")[:32]
            group = _int_field(weights.get("group_size"), "quantization_config.weights.group_size") \
                if weights.get("strategy") in ("group", "tensor_group") else 0
            fmt = "nvfp4" if (kind == "float" and bits == 4) else kind
            out.update(quant_bits=bits, quant_group_size=group or (16 if fmt == "nvfp4" else 0), quant_format=fmt)
    elif method == "modelopt":
        inner = q.get("quantization")  # a list or a string here raised AttributeError
        if inner is not None and not isinstance(inner, Mapping):
            raise UnsupportedConfigError("quantization_config.quantization",
                                         f"expected an object, got {type(inner).__name__}")
        inner_algo = inner.get("quant_algo") if isinstance(inner, Mapping) else None
        algo = str(q.get("quant_algo") or inner_algo or "")[:64].upper()
        if "NVFP4" in algo:
            out.update(quant_bits=4, quant_group_size=16, quant_format="nvfp4")
        elif "FP8" in algo:
            out.update(quant_bits=8, quant_format="float")
    elif method == "bitsandbytes":
        out.update(quant_bits=4 if q.get("load_in_4bit") else 8 if q.get("load_in_8bit") else 0,
                   quant_group_size=64 if q.get("load_in_4bit") else 0, quant_format="int")
    return out


def _vision(config: Mapping[str, Any]) -> dict[str, Any]:
    """WeightDims fields for a ViT-style vision tower described by `vision_config` (sizes only)."""
    v = config.get("vision_config")
    if not isinstance(v, Mapping):
        return {}
    layers = _int_field(v.get("num_hidden_layers") or v.get("depth") or v.get("num_layers"),
                        "vision_config.num_hidden_layers", 1 << 12)
    # Llama 3.2 Vision: 32 local + 8 global layers
    layers += _int_field(v.get("num_global_layers"), "vision_config.num_global_layers", 1 << 12)
    hidden = _int_field(v.get("hidden_size") or v.get("embed_dim") or v.get("width"), "vision_config.hidden_size")
    dims = {"vision_config_dims": (_int_field(v.get("num_hidden_layers"), "vision_config.num_hidden_layers", 1 << 12)
                                   or 24, _int_field(v.get("hidden_size"), "vision_config.hidden_size") or 1024)}
    if not layers or not hidden:
        return dims
    inter = _int_field(v.get("intermediate_size"), "vision_config.intermediate_size") or 4 * hidden
    return {**dims, "vision_num_layers": layers, "vision_hidden_size": hidden, "vision_intermediate_size": inter,
            "vision_patch_size": _int_field(v.get("patch_size") or v.get("spatial_patch_size"),
                                            "vision_config.patch_size", 1 << 12)}


# Encoder-only and encoder-decoder families: no decoder KV cache of the kind kvplan sizes (a BERT
# config parsed as a decoder was sized as one).
_ENCODER_ONLY = {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
                 "mpnet", "camembert", "ernie", "modernbert", "nomic_bert", "xlm-roberta-xl", "megatron-bert",
                 "esm", "funnel", "layoutlm", "longformer", "big_bird", "canine", "roformer", "squeezebert",
                 "data2vec-text", "ibert", "mobilebert", "rembert", "luke", "splinter", "xmod", "nystromformer",
                 "yoso", "convbert", "flaubert", "xlm", "mra", "jina_bert", "new", "gte"}
_ENCODER_DECODER = {"t5", "mt5", "umt5", "bart", "mbart", "marian", "pegasus", "pegasus_x", "whisper", "led",
                    "blenderbot", "blenderbot-small", "m2m_100", "nllb-moe", "fsmt", "prophetnet",
                    "switch_transformers", "longt5", "plbart", "bigbird_pegasus", "seamless_m4t", "encoder-decoder",
                    "speech-encoder-decoder", "vision-encoder-decoder", "t5gemma"}
_ENCODER_HEADS = ("ForMaskedLM",)  # never a decoder (a Llama reward model is "...ForSequenceClassification")


def _refuse_non_decoders(model_type: str, text: Mapping[str, Any]) -> None:
    """A typed error for encoder-only / encoder-decoder configs instead of sizing them as decoders."""
    mt = model_type.lower()
    if mt in _ENCODER_DECODER or text.get("is_encoder_decoder") is True:
        raise UnsupportedConfigError("model_type", f"{model_type[:60]!r} is an encoder-decoder model; kvplan "
                                                   "sizes decoder-only (causal LM) models")
    archs = text.get("architectures")
    names = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    encoder_heads = bool(names) and all(a.endswith(_ENCODER_HEADS) for a in names)
    if (mt in _ENCODER_ONLY and text.get("is_decoder") is not True) or encoder_heads:
        shown = model_type or names[0]
        raise UnsupportedConfigError("model_type", f"{shown[:60]!r} is an encoder-only model (it keeps no KV "
                                                   "cache while generating); kvplan sizes decoder-only (causal "
                                                   "LM) models")


def parse_config(config: Mapping[str, Any], model_id: str = "custom") -> ModelArch:
    """Build a `ModelArch` from a config.json dict.

    >>> arch = parse_config({"model_type": "llama", "num_hidden_layers": 32, "num_attention_heads": 32,
    ...                      "num_key_value_heads": 8, "hidden_size": 4096, "torch_dtype": "bfloat16"})
    >>> arch.attention_kinds, arch.layers[0].num_kv_heads, arch.layers[0].head_dim
    (('full',), 8, 128)

    Raises:
        UnsupportedConfigError: a field is missing, malformed, inconsistent or of an unknown kind.
    """
    if not isinstance(config, Mapping):
        raise UnsupportedConfigError("config.json", f"expected a JSON object, got {type(config).__name__}")
    text = _text_config(config)
    f = _validate(text)
    _refuse_non_decoders(f.model_type, text)
    num_layers = _require(f.num_hidden_layers, "num_hidden_layers", "the number of decoder layers")
    if num_layers > 100_000:
        raise UnsupportedConfigError("num_hidden_layers", f"{num_layers:,} layers is not a real model")
    plan = _layer_plan(f, num_layers)
    shared = f.num_kv_shared_layers or 0
    if shared > num_layers:
        raise UnsupportedConfigError("num_kv_shared_layers", f"{shared} exceeds num_hidden_layers {num_layers}")

    needs_attention = any(w in ("full", "sliding", "chunked", "both") for w in plan)
    kv_heads = _kv_heads(f, text, num_layers) if needs_attention else [0] * num_layers
    head_dim = _head_dim(f) if needs_attention else 0
    head_dim_v = f.v_head_dim if (needs_attention and f.v_head_dim and f.kv_lora_rank is None) else head_dim
    window = f.sliding_window or 0
    if "sliding" in plan and not window:
        raise UnsupportedConfigError("sliding_window", "layers are sliding_attention but no window is set")

    indexer = _indexer_layers(f, num_layers)
    cross = _cross_attention_layers(f, num_layers)
    layers: list[LayerSpec] = []
    for i, word in enumerate(plan):
        if i in cross:
            # NOTE: Llama 3.2 Vision: these layers attend to image tokens; their K/V is per image,
            # not per context token, so they hold nothing that grows with the context.
            layers.append(NoCache(i, reason="cross-attention to image tokens"))
            continue
        if shared and i >= num_layers - shared:
            # NOTE: Gemma 3n: the last num_kv_shared_layers reuse earlier layers' KV and allocate none.
            layers.append(NoCache(i, reason="shares KV with an earlier layer"))
            continue
        attn = dict(num_kv_heads=kv_heads[i], head_dim=head_dim, head_dim_v=head_dim_v)
        if word in ("full", "sliding", "chunked", "both") and kv_heads[i] == 0:
            layers.append(NoCache(i, reason="no KV heads (head_count_kv = 0)"))
        elif word == "full" or word == "both":
            layers.append(FullAttention(i, **attn))
        elif word == "sliding":
            layers.append(SlidingWindow(i, **attn, window=window))
        elif word == "chunked":
            layers.append(ChunkedLocal(i, **attn, chunk=f.attention_chunk_size))
        elif word == "mla":
            heads = _require(f.num_attention_heads, "num_attention_heads", "needed for MLA")
            rope = _require(f.qk_rope_head_dim, "qk_rope_head_dim", "needed for MLA (DeepSeek: 64)")
            nope = f.qk_nope_head_dim if f.qk_nope_head_dim is not None else 0
            v_dim = f.v_head_dim or nope
            layers.append(MLA(i, kv_lora_rank=f.kv_lora_rank, rope_dim=rope, num_heads=heads,
                              qk_nope_head_dim=nope, v_head_dim=v_dim,
                              index_head_dim=f.index_head_dim if i in indexer else 0))
        elif word == "none":
            layers.append(NoCache(i, reason="no attention or state in this layer"))
        elif word == "linear":
            layers.append(NoCache(i, reason=LINEAR_ATTENTION_REASON))
        if word in ("gdn", "shortconv", "lightning", "mamba", "both"):
            layers.append(_recurrent(f, "mamba" if word == "both" else word, i))

    if f.kv_lora_rank is not None:
        naive_kv, naive_dim = f.num_key_value_heads, None
        naive_kv = naive_kv if isinstance(naive_kv, int) else f.num_attention_heads
        if f.hidden_size and f.num_attention_heads:
            naive_dim = f.hidden_size // f.num_attention_heads
    else:
        naive_kv = max(kv_heads) if needs_attention else 0
        naive_dim = head_dim
    nas = {"layer_intermediate_sizes": tuple(w for _, _, w in _nas_blocks(f, num_layers))} \
        if f.block_configs is not None else {}
    moe = _llama4_moe(f, num_layers) if f.model_type in ("llama4", "llama4_text") else {}
    dims = WeightDims(
        hidden_size=f.hidden_size or 0, intermediate_size=f.intermediate_size or 0,
        vocab_size=f.vocab_size or 0, num_attention_heads=f.num_attention_heads or 0,
        tie_word_embeddings=(f.tie_word_embeddings if f.tie_word_embeddings is not None
                             else f.model_type in _TIED_BY_DEFAULT), num_experts=f.num_experts or 0,
        num_experts_per_tok=f.num_experts_per_tok or 0, moe_intermediate_size=f.moe_intermediate_size or 0,
        num_shared_experts=f.n_shared_experts or 0,
        shared_expert_intermediate_size=f.shared_expert_intermediate_size or 0,
        first_k_dense_replace=f.first_k_dense_replace or 0, q_lora_rank=f.q_lora_rank or 0,
        num_nextn_predict_layers=f.num_nextn_predict_layers or 0, index_n_heads=f.index_n_heads or 0,
        attention_bias=bool(f.attention_bias), mlp_bias=bool(f.mlp_bias),
        **_quant(config, text), **_vision(config),
    )
    if moe or nas:
        dims = replace(dims, **moe, **nas)
    if f.num_experts and f.num_experts_per_tok and f.num_experts_per_tok > f.num_experts:
        raise UnsupportedConfigError("num_experts_per_tok", f"{f.num_experts_per_tok} exceeds the "
                                                            f"{f.num_experts} routed experts")
    if all(isinstance(s, NoCache) for s in layers):
        # num_key_value_heads 0, or a hybrid pattern of MLP-only layers: nothing to size (it was
        # reported as 0 bytes, and vLLM plans failed on an empty min()).
        raise UnsupportedConfigError("num_key_value_heads" if needs_attention else "layer_types",
                                     "no layer keeps a KV cache or a recurrent state; check num_key_value_heads "
                                     "and the layer pattern")
    return ModelArch(
        model_id=model_id, model_type=f.model_type, num_layers=num_layers, layers=tuple(layers),
        dtype=_dtype(f), max_position_embeddings=f.max_position_embeddings or 0,
        naive_num_kv_heads=naive_kv or 0, naive_head_dim=naive_dim or 0, weight_dims=dims,
    )
