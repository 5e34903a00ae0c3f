"""Weight memory: exact parameter counts from a `ModelArch`, and the bytes each GPU holds.

Parameter counts are computed tensor by tensor from the config (dense and gated MLPs, MoE routed and
shared experts, MLA projections, tied vs untied embeddings, Qwen2 q/k/v biases, Qwen3 q/k norms,
Gemma's four norms per layer, gpt-oss biases and sinks, Mamba/GDN mixers, a ViT tower where the
config has a `vision_config`). They match the checkpoints' `safetensors.total` to the parameter for
Llama, Qwen2/2.5/3 and Gemma 2 (tests/test_weights.py).

Bytes follow what an engine allocates: the linear layers in the weights dtype (with their group or
block scales), everything else in the model dtype; under TP the linear layers and the vocabulary are
split (vLLM pads the vocabulary to a multiple of 64), norms and MoE routers are replicated, and KV
projections are replicated past `num_kv_heads` ranks; under PP the layers are split as vLLM's
`get_pp_indices` does, the first stage holds the embedding and the last the LM head.

This module does not know activations, CUDA graphs or the KV cache (the planner's business), nor
kernel-specific repacking: vLLM's mxfp4 MoE kernels pad gpt-oss expert matrices, so the logged
"Model loading took" is 5-9 % above the checkpoint size computed here for gpt-oss.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from kvplan.dtypes import canonical
from kvplan.engines.common import pp_layer_ranges
from kvplan.errors import InvalidInputError, UnsupportedDtypeError
from kvplan.layers import LINEAR_ATTENTION_REASON, MLA, FullAttention, ModelArch, NoCache, RecurrentState
from kvplan.units import cdiv

__all__ = ["ParamCounts", "param_counts", "weights_bytes", "resolve_weights_dtype", "WEIGHT_DTYPES"]

# Weight dtypes a user may ask for. "int4" means AWQ/GPTQ-style int4 with fp16 scales and int4 zeros
# per group of 128; "fp8" is per-tensor fp8 (vLLM --quantization fp8 on a bf16 checkpoint); "int8"
# is W8A8 with per-channel scales; "mxfp4" / "nvfp4" are 4-bit floats with 32 / 16 values per scale.
WEIGHT_DTYPES = ("auto", "bf16", "fp16", "fp32", "fp8", "int8", "int4", "awq", "gptq", "mxfp4", "nvfp4")

# Gated (SwiGLU/GeGLU) MLPs have three matrices; these families use a plain two-matrix MLP with biases.
_PLAIN_MLP = {"gpt2", "gpt_bigcode", "falcon", "phi", "gptj", "starcoder2", "opt", "bloom", "gpt_neox",
              "RefinedWeb", "RefinedWebModel"}
_QKV_BIAS = {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl", "qwen2_vl_text", "qwen2_5_vl_text"}
_QK_NORM = {"qwen3", "qwen3_moe", "qwen3_next", "gemma3", "gemma3_text", "qwen3_vl", "qwen3_vl_text"}
_FOUR_NORMS = {"gemma2", "gemma3", "gemma3_text"}
_MIXER_ONLY = {"mamba", "falcon_mamba", "mamba2"}
_VOCAB_PAD = 64  # vLLM DEFAULT_VOCAB_PADDING_SIZE


@dataclass(frozen=True)
class _Tensor:
    """One weight tensor (or `count` identical ones) of shape [rows, cols].

    `shard`: "col" (output dim split under TP), "row" (input dim split), "rep" (replicated),
    "vocab" (vocab-parallel, padded). `linear`: a GEMM weight that quantization applies to.
    """

    group: str
    rows: int
    cols: int
    count: int = 1
    shard: str = "rep"
    linear: bool = False
    module: str = ""  # for quantization_config exclusions: "self_attn", "router", "lm_head", ...


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by kind (whole model, before any split). `total` excludes MTP draft layers (as
    engines load them only for speculative decoding); `active` counts only the routed experts one token
    uses (top-k of E) plus everything else."""

    embedding: int
    lm_head: int  # 0 when tied to the embedding
    attention: int
    mlp: int  # dense MLP layers
    experts: int  # routed experts, all of them
    shared_experts: int
    router: int
    state: int  # Mamba / GDN mixers
    norms: int  # norms, biases, sinks and other small vectors
    vision: int  # multimodal tower (approximate: ViT blocks + patch embedding + projector)
    mtp: int  # DeepSeek multi-token-prediction layers (in the checkpoint, not in `total`)
    total: int
    active: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _layer_specs(arch: ModelArch) -> dict[int, list]:
    by_index: dict[int, list] = {i: [] for i in range(arch.num_layers)}
    for spec in arch.layers:
        by_index.setdefault(spec.index, []).append(spec)
    return by_index


def _attention_tensors(arch: ModelArch, spec) -> list[_Tensor]:
    w = arch.weight_dims
    h = w.hidden_size
    mt = arch.model_type
    out: list[_Tensor] = []
    if isinstance(spec, MLA):
        heads, rope, nope, v = spec.num_heads, spec.rope_dim, spec.qk_nope_head_dim, spec.v_head_dim
        if w.q_lora_rank:
            out += [_Tensor("attention", w.q_lora_rank, h, linear=True, module="self_attn"),  # q_a_proj
                    _Tensor("norms", 1, w.q_lora_rank),
                    _Tensor("attention", heads * (nope + rope), w.q_lora_rank, shard="col", linear=True,
                            module="self_attn")]
        else:
            out.append(_Tensor("attention", heads * (nope + rope), h, shard="col", linear=True, module="self_attn"))
        out += [_Tensor("attention", spec.kv_lora_rank + rope, h, linear=True, module="self_attn"),  # kv_a (replicated)
                _Tensor("norms", 1, spec.kv_lora_rank),
                _Tensor("attention", heads * (nope + v), spec.kv_lora_rank, shard="col", linear=True,
                        module="self_attn"),
                _Tensor("attention", h, heads * v, shard="row", linear=True, module="self_attn")]
        if spec.index_head_dim and w.index_n_heads:
            # DSA lightning indexer (vLLM: replicated linears): wq_b from the q latent, wk, its LayerNorm,
            # and the per-head weights_proj.
            d, n = spec.index_head_dim, w.index_n_heads
            out += [_Tensor("attention", n * d, w.q_lora_rank or h, linear=True, module="self_attn"),
                    _Tensor("attention", d, h, linear=True, module="self_attn"),
                    _Tensor("norms", 1, 2 * d), _Tensor("attention", n, h, module="indexer")]
        return out
    heads = w.num_attention_heads
    d, dv, hkv = spec.head_dim, spec.head_dim_v, spec.num_kv_heads
    out += [_Tensor("attention", heads * d, h, shard="col", linear=True, module="self_attn"),
            _Tensor("attention", hkv * d, h, shard="kv", linear=True, module="self_attn"),
            _Tensor("attention", hkv * dv, h, shard="kv", linear=True, module="self_attn"),
            _Tensor("attention", h, heads * dv, shard="row", linear=True, module="self_attn")]
    if w.attention_bias or mt in _QKV_BIAS or mt in _PLAIN_MLP:
        out += [_Tensor("norms", 1, heads * d, shard="col"), _Tensor("norms", 1, hkv * (d + dv), shard="kv")]
    if w.attention_bias or mt in _PLAIN_MLP:
        out.append(_Tensor("norms", 1, h))  # o_proj bias
    if mt in _QK_NORM:
        out.append(_Tensor("norms", 1, 2 * d))
    if mt == "gpt_oss":
        out.append(_Tensor("norms", 1, heads, shard="col"))  # attention sinks, one per head
    return out


def _mlp_tensors(arch: ModelArch, layer: int) -> list[_Tensor]:
    w = arch.weight_dims
    h = w.hidden_size
    mt = arch.model_type
    if w.num_experts and layer >= w.first_k_dense_replace and (not w.moe_layers or layer in w.moe_layers):
        e, inter = w.num_experts, w.moe_intermediate_size or w.intermediate_size
        out = [_Tensor("router", e, h, module="router"),
               _Tensor("experts", 2 * inter, h, count=e, shard="col", linear=True, module="experts"),
               _Tensor("experts", h, inter, count=e, shard="row", linear=True, module="experts")]
        if mt == "gpt_oss":  # router bias and per-expert gate_up / down biases
            out += [_Tensor("router", 1, e), _Tensor("experts", 1, 2 * inter, count=e, shard="col"),
                    _Tensor("experts", 1, h, count=e)]
        if mt in ("deepseek_v3", "kimi_k2", "glm4_moe"):
            out.append(_Tensor("router", 1, e))  # e_score_correction_bias
        shared = w.num_shared_experts * (w.moe_intermediate_size or inter)
        if w.shared_expert_intermediate_size:  # Qwen2-MoE / Qwen3-Next: one shared expert and its gate
            shared = w.shared_expert_intermediate_size
            out.append(_Tensor("router", 1, h))
        if shared:
            out += [_Tensor("shared_experts", 2 * shared, h, shard="col", linear=True, module="mlp"),
                    _Tensor("shared_experts", h, shared, shard="row", linear=True, module="mlp")]
        return out
    inter = w.intermediate_size or (4 * h if mt in _PLAIN_MLP else 0)  # GPT-2 n_inner null, Falcon: 4h
    if w.layer_intermediate_sizes:  # NAS (Nemotron-Ultra/Super): a width per block, 0 = no FFN
        inter = w.layer_intermediate_sizes[layer] if layer < len(w.layer_intermediate_sizes) else 0
    if not inter:
        return []
    if mt == "nemotron_h":  # squared-ReLU MLP: up and down only, no gate, no biases
        return [_Tensor("mlp", inter, h, shard="col", linear=True, module="mlp"),
                _Tensor("mlp", h, inter, shard="row", linear=True, module="mlp")]
    if mt in _PLAIN_MLP:
        return [_Tensor("mlp", inter, h, shard="col", linear=True, module="mlp"),
                _Tensor("mlp", h, inter, shard="row", linear=True, module="mlp"),
                _Tensor("norms", 1, inter, shard="col"), _Tensor("norms", 1, h)]
    out = [_Tensor("mlp", 2 * inter, h, shard="col", linear=True, module="mlp"),
           _Tensor("mlp", h, inter, shard="row", linear=True, module="mlp")]
    if w.mlp_bias:
        out += [_Tensor("norms", 1, 2 * inter, shard="col"), _Tensor("norms", 1, h)]
    return out


def _state_tensors(arch: ModelArch, spec: RecurrentState) -> list[_Tensor]:
    """Mamba1 / Mamba2 / GDN / short-conv mixer weights (approximate to the bias and norm level)."""
    h = arch.weight_dims.hidden_size
    k = spec.conv_kernel
    if spec.mixer == "gdn":
        qk = spec.conv_channels - spec.num_heads * spec.head_dim  # 2·Hk·Dk
        v = spec.num_heads * spec.head_dim
        return [_Tensor("state", qk + 2 * v + 2 * spec.num_heads, h, shard="col", linear=True, module="linear_attn"),
                _Tensor("state", spec.conv_channels, k, shard="col"),
                _Tensor("state", 1, 2 * spec.num_heads + spec.head_dim, shard="col"),
                _Tensor("state", h, v, shard="row", linear=True, module="linear_attn")]
    if spec.mixer == "shortconv":
        return [_Tensor("state", 3 * h, h, shard="col", linear=True, module="conv"),
                _Tensor("state", h, k, shard="col"),
                _Tensor("state", h, h, shard="row", linear=True, module="conv")]
    d_inner = spec.num_heads * spec.head_dim
    if spec.mixer == "mamba2":
        in_proj = 2 * d_inner + 2 * spec.n_groups * spec.state_dim + spec.num_heads
        return [_Tensor("state", in_proj, h, shard="col", linear=True, module="mixer"),
                _Tensor("state", spec.conv_channels, k + 1, shard="col"),
                _Tensor("state", 1, 3 * spec.num_heads + d_inner, shard="col"),
                _Tensor("state", h, d_inner, shard="row", linear=True, module="mixer")]
    dt_rank = cdiv(h, 16)  # Mamba1 default time_step_rank = ceil(hidden / 16)
    return [_Tensor("state", 2 * d_inner, h, shard="col", linear=True, module="mixer"),
            _Tensor("state", d_inner, k + 1, shard="col"),
            _Tensor("state", dt_rank + 2 * spec.state_dim, d_inner, shard="row", linear=True, module="mixer"),
            _Tensor("state", d_inner, dt_rank + 1, shard="col", linear=True, module="mixer"),
            _Tensor("state", d_inner, spec.state_dim + 1, shard="col"),
            _Tensor("state", h, d_inner, shard="row", linear=True, module="mixer")]


def _layer_tensors(arch: ModelArch, index: int, specs: list) -> list[_Tensor]:
    h = arch.weight_dims.hidden_size
    mt = arch.model_type
    # Gemma 2/3: four RMSNorms per layer; GPT-2-style LayerNorms carry a bias: 2 × (weight + bias).
    norms = 4 if mt in _FOUR_NORMS or mt in _PLAIN_MLP else 1 if mt in _MIXER_ONLY else 2
    nas = arch.weight_dims.layer_intermediate_sizes
    if nas:  # NAS blocks: a norm before each sub-block that is not no_op (llama.cpp: 253.401 B for Ultra)
        attn_present = any(not (isinstance(s, NoCache) and s.reason == "no attention or state in this layer")
                           for s in specs)
        norms = int(attn_present) + int(index < len(nas) and nas[index] > 0)
    out: list[_Tensor] = [_Tensor("norms", 1, norms * h)]
    has_mixer = False
    for spec in specs:
        if isinstance(spec, (FullAttention, MLA)):
            out += _attention_tensors(arch, spec)
            has_mixer = True
        elif isinstance(spec, RecurrentState):
            out += _state_tensors(arch, spec)
            has_mixer = True
        elif isinstance(spec, NoCache) and spec.reason == LINEAR_ATTENTION_REASON:
            out.append(_Tensor("attention", h, h, shard="col", linear=True, module="self_attn"))
        elif isinstance(spec, NoCache) and spec.reason != "no attention or state in this layer":
            # KV-shared (Gemma 3n) and cross-attention (Llama 3.2 Vision) layers still have attention
            # weights; size them like a full-attention layer of the model's first attention spec.
            ref = next((s for s in arch.layers if isinstance(s, (FullAttention, MLA))), None)
            if ref is not None:
                out += _attention_tensors(arch, ref)
                has_mixer = True
    # NOTE: Nemotron-H layers hold one block each (a Mamba2 or attention layer has no MLP); pure
    # Mamba models (mamba, falcon_mamba, mamba2) have no MLP at all.
    if not ((mt == "nemotron_h" and has_mixer) or mt in _MIXER_ONLY):
        out += _mlp_tensors(arch, index)
    return out


def _vision_params(arch: ModelArch) -> int:
    w = arch.weight_dims
    if not w.vision_num_layers:
        return 0
    hv, iv = w.vision_hidden_size, w.vision_intermediate_size
    block = 4 * hv * hv + 2 * hv * iv + 4 * hv + iv + 4 * hv  # qkvo + MLP + biases + two norms
    patch = 3 * w.vision_patch_size ** 2 * hv
    projector = hv * w.hidden_size + w.hidden_size * w.hidden_size
    return w.vision_num_layers * block + patch + projector


_TENSORS: dict[int, tuple[ModelArch, tuple]] = {}


def _tensors(arch: ModelArch) -> tuple[list[_Tensor], dict[int, list[_Tensor]], list[_Tensor], list[_Tensor]]:
    """(embedding tensors, per-layer tensors, head tensors (final norm, lm_head), MTP tensors).

    Cached per model (callers only read them): a plan needs them twice, and the capacity chart plans
    every context of a sweep, so listing a 126-layer model's tensors was most of each plan's time."""
    hit = _TENSORS.get(id(arch))
    if hit is not None and hit[0] is arch:
        return hit[1]
    out = _list_tensors(arch)
    if len(_TENSORS) > 256:
        _TENSORS.clear()
    _TENSORS[id(arch)] = (arch, out)  # holding arch keeps its id from being reused while cached
    return out


def _list_tensors(arch: ModelArch) -> tuple[list[_Tensor], dict[int, list[_Tensor]], list[_Tensor], list[_Tensor]]:
    w = arch.weight_dims
    if not w.hidden_size or not w.vocab_size:
        raise InvalidInputError("model", f"{arch.model_id}: the config has no hidden_size/vocab_size, so "
                                         "weights cannot be counted; pass weights explicitly")
    embed = [_Tensor("embedding", w.vocab_size, w.hidden_size, shard="vocab", module="embed_tokens")]
    if arch.model_type == "gpt2":
        embed.append(_Tensor("embedding", arch.max_position_embeddings or 1024, w.hidden_size))
    layers = {i: _layer_tensors(arch, i, specs) for i, specs in _layer_specs(arch).items()}
    head = [_Tensor("norms", 1, w.hidden_size * (2 if arch.model_type in _PLAIN_MLP else 1))]
    if not w.tie_word_embeddings:
        head.append(_Tensor("lm_head", w.vocab_size, w.hidden_size, shard="vocab", linear=True, module="lm_head"))
    mtp: list[_Tensor] = []
    if w.num_nextn_predict_layers and arch.num_layers:
        # DeepSeek-V3 MTP block: one full decoder layer + enorm, hnorm, eh_proj [h, 2h], shared_head norm.
        last = layers[arch.num_layers - 1]
        # The checkpoint's MTP block also stores its own embed_tokens and shared_head (vocab × hidden each).
        extra = [_Tensor("mtp", w.hidden_size, 2 * w.hidden_size), _Tensor("mtp", 1, 3 * w.hidden_size),
                 _Tensor("mtp", 2 * w.vocab_size, w.hidden_size)]
        n = w.num_nextn_predict_layers  # one tensor entry × n, not n copies of the list
        mtp = [dataclasses.replace(t, group="mtp", count=t.count * n) for t in last + extra]
    return embed, layers, head, mtp


def param_counts(arch: ModelArch) -> ParamCounts:
    """Parameter counts by kind, computed from the config (memoised per arch: the recommender asks
    for the same model many times).

    >>> from kvplan import load_model
    >>> param_counts(load_model("meta-llama/Llama-3.1-8B")).total
    8030261248
    """
    return _param_counts(arch)


@functools.lru_cache(maxsize=64)
def _param_counts(arch: ModelArch) -> ParamCounts:
    embed, layers, head, mtp = _tensors(arch)
    sums: dict[str, int] = {}
    for t in embed + [t for ts in layers.values() for t in ts] + head + mtp:
        sums[t.group] = sums.get(t.group, 0) + t.rows * t.cols * t.count
    vision = _vision_params(arch)
    total = sum(v for k, v in sums.items() if k != "mtp") + vision
    w = arch.weight_dims
    experts = sums.get("experts", 0)
    active = total - experts
    if w.num_experts:
        active += experts * w.num_experts_per_tok // w.num_experts
    return ParamCounts(
        embedding=sums.get("embedding", 0), lm_head=sums.get("lm_head", 0), attention=sums.get("attention", 0),
        mlp=sums.get("mlp", 0), experts=experts, shared_experts=sums.get("shared_experts", 0),
        router=sums.get("router", 0), state=sums.get("state", 0), norms=sums.get("norms", 0), vision=vision,
        mtp=sums.get("mtp", 0), total=total, active=active,
    )


# ---- bytes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scheme:
    """How the linear weights are stored: `bits` per value plus scales.

    `group`: values per scale along the input dim (0 = one scale per output row); `block`: 2-D scale
    blocks (fp8 DeepSeek 128×128); `scale_bytes` per scale; `zero_bits` per group (AWQ/GPTQ zeros);
    `per_tensor`: one fp32 scale for the whole tensor.
    """

    name: str
    bits: int
    group: int = 0
    block: tuple[int, ...] = ()
    scale_bytes: int = 0
    zero_bits: int = 0
    per_tensor: bool = False
    excluded: tuple[str, ...] = ()

    def linear_bytes(self, rows: int, cols: int) -> int:
        data = cdiv(rows * cols * self.bits, 8)
        if self.per_tensor:
            return data + 4
        if self.block:
            return data + cdiv(rows, self.block[0]) * cdiv(cols, self.block[-1]) * self.scale_bytes
        if self.group:
            groups = rows * cdiv(cols, self.group)
            return data + groups * self.scale_bytes + cdiv(groups * self.zero_bits, 8)
        return data + rows * self.scale_bytes

    def applies_to(self, t: _Tensor) -> bool:
        if not t.linear or t.module in ("lm_head", "router"):
            return False
        for pattern in self.excluded:
            if (t.module == "self_attn" and ("self_attn" in pattern or pattern.endswith(".attn")))  \
                    or (t.module == "experts" and pattern.endswith(".experts")) \
                    or (t.module == "mlp" and pattern.endswith(".mlp")):
                return False
        return True


def _scheme_for(name: str, arch: ModelArch) -> _Scheme | None:
    """The storage scheme for `name` (a WEIGHT_DTYPES entry; "auto" = the checkpoint's own), or None
    when the linear weights stay in the model dtype."""
    w = arch.weight_dims
    if name == "auto":
        if not w.quant_method or not w.quant_bits:
            return None
        if w.quant_format == "mxfp4":
            return _Scheme("mxfp4", 4, group=32, scale_bytes=1, excluded=w.quant_excluded)
        if w.quant_format == "nvfp4":
            return _Scheme("nvfp4", 4, group=w.quant_group_size or 16, scale_bytes=1, excluded=w.quant_excluded)
        if w.quant_format == "float" and w.quant_bits == 8:
            if w.quant_block:
                return _Scheme("fp8", 8, block=w.quant_block, scale_bytes=4, excluded=w.quant_excluded)
            return _Scheme("fp8", 8, per_tensor=True, excluded=w.quant_excluded)
        if w.quant_group_size:
            return _Scheme(f"int{w.quant_bits}", w.quant_bits, group=w.quant_group_size, scale_bytes=2,
                           zero_bits=w.quant_bits, excluded=w.quant_excluded)
        return _Scheme(f"int{w.quant_bits}", w.quant_bits, scale_bytes=4, excluded=w.quant_excluded)
    return {
        "fp8": _Scheme("fp8", 8, per_tensor=True),
        "int8": _Scheme("int8", 8, scale_bytes=4),
        "int4": _Scheme("int4", 4, group=128, scale_bytes=2, zero_bits=4),
        "awq": _Scheme("int4", 4, group=128, scale_bytes=2, zero_bits=4),
        "gptq": _Scheme("int4", 4, group=128, scale_bytes=2, zero_bits=4),
        "mxfp4": _Scheme("mxfp4", 4, group=32, scale_bytes=1),
        "nvfp4": _Scheme("nvfp4", 4, group=16, scale_bytes=1),
    }.get(name)


def resolve_weights_dtype(arch: ModelArch, dtype: str = "auto") -> tuple[str, str]:
    """(dense dtype, label): the dtype of unquantized tensors and a label for the linear weights.

    "auto" follows the checkpoint: its `quantization_config` method if any, else its torch_dtype
    (float32 checkpoints are served in bf16, as vLLM, SGLang and TRT-LLM do).

    Raises:
        UnsupportedDtypeError: `dtype` is not one of WEIGHT_DTYPES.
    """
    key = str(dtype).strip().lower()
    if key not in WEIGHT_DTYPES:
        try:
            key = canonical(key)
        except UnsupportedDtypeError:
            key = ""
        if key not in WEIGHT_DTYPES:
            raise UnsupportedDtypeError(str(dtype), f"not a weights dtype; choose one of {', '.join(WEIGHT_DTYPES)}")
    dense = "bf16" if arch.dtype == "fp32" else arch.dtype
    if key in ("bf16", "fp16", "fp32"):
        return key, key
    if key == "auto":
        scheme = _scheme_for("auto", arch)
        if scheme is None:
            return dense, dense
        method = arch.weight_dims.quant_method
        return dense, (scheme.name if method == scheme.name else f"{method} ({scheme.name})")
    return dense, key


def _tensor_bytes(t: _Tensor, tp: int, dense_bytes: int, scheme: _Scheme | None, kv_heads_total: int,
                  expert_pad: int = 1) -> int:
    rows, cols = t.rows, t.cols
    pad = expert_pad if (t.group == "experts" and t.linear) else 1
    if t.shard == "col":
        rows = cdiv(rows, tp) if pad == 1 else 2 * cdiv(cdiv(rows // 2, tp), pad) * pad
    elif t.shard == "row":
        cols = cdiv(cdiv(cols, tp), pad) * pad
    elif t.shard == "kv":
        # K/V projections: heads split, but replicated once tp exceeds the KV heads (max(1, H // tp)).
        rows = rows // kv_heads_total * max(1, kv_heads_total // tp) if kv_heads_total else cdiv(rows, tp)
    elif t.shard == "vocab":
        rows = cdiv(cdiv(rows, _VOCAB_PAD) * _VOCAB_PAD, tp)
    if scheme is not None and scheme.applies_to(t):
        return t.count * scheme.linear_bytes(rows, cols)
    return t.count * rows * cols * dense_bytes


def weights_bytes(arch: ModelArch, dtype: str = "auto", tp: int = 1, pp: int = 1, *, expert_pad: int = 1) -> int:
    """Weight bytes on the most-loaded GPU of a tp × pp layout (vision tower on the first stage).

    `expert_pad` rounds each rank's MoE expert intermediate dim up to a multiple (vLLM's mxfp4 MoE
    kernels use 256: gpt-oss 2880 -> 3072; the planner passes it for vLLM + mxfp4).

    >>> from kvplan import load_model
    >>> weights_bytes(load_model("meta-llama/Llama-3.1-8B"))
    16060522496

    Raises:
        UnsupportedDtypeError: unknown weights dtype.
        InvalidInputError: tp/pp out of range, or a config without hidden_size/vocab_size.
    """
    for name, value in (("tp", tp), ("pp", pp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(name, f"must be a positive whole number, got {value!r}")
    if pp > arch.num_layers:
        raise InvalidInputError("pp", f"{pp} pipeline stages for {arch.num_layers} layers")
    if not isinstance(dtype, str) or not isinstance(expert_pad, int):
        return _weights_bytes(arch, dtype, tp, pp, expert_pad)
    # Memoised: a recommendation plans the same model on many GPUs (weights do not depend on the GPU).
    return _cached_weights_bytes(arch, dtype, tp, pp, expert_pad)


@functools.lru_cache(maxsize=16)
def _layer_classes(arch: ModelArch) -> dict[int, int]:
    """Layer index -> the first index whose tensors are identical (most models repeat one layer)."""
    first: dict[tuple, int] = {}
    return {i: first.setdefault(tuple(ts), i) for i, ts in _tensors(arch)[1].items()}


@functools.lru_cache(maxsize=512)
def _cached_weights_bytes(arch: ModelArch, dtype: str, tp: int, pp: int, expert_pad: int) -> int:
    return _weights_bytes(arch, dtype, tp, pp, expert_pad)


def _weights_bytes(arch: ModelArch, dtype, tp: int, pp: int, expert_pad: int) -> int:
    dense, _ = resolve_weights_dtype(arch, dtype)
    key = str(dtype).strip().lower()
    key = key if key in WEIGHT_DTYPES else dense
    dense_bytes = {"bf16": 2, "fp16": 2, "fp32": 4}[key if key in ("bf16", "fp16", "fp32") else dense]
    scheme = _scheme_for(key, arch) if key not in ("bf16", "fp16", "fp32") else None
    embed, layers, head, _ = _tensors(arch)
    kv_heads = {i: next((s.num_kv_heads for s in specs if isinstance(s, FullAttention)), 0)
                for i, specs in _layer_specs(arch).items()}
    first_kv = next((v for v in kv_heads.values() if v), 0)
    ranges = pp_layer_ranges(arch.num_layers, pp)
    best = 0
    same = _layer_classes(arch)
    per_layer: dict[tuple, int] = {}  # identical layers (same tensors, same KV heads) are counted once
    for stage, rng in enumerate(ranges):
        total = 0
        for i in rng:
            heads = kv_heads[i] or first_kv
            key = (same[i], heads)
            if key not in per_layer:
                per_layer[key] = sum(_tensor_bytes(t, tp, dense_bytes, scheme, heads, expert_pad) for t in layers[i])
            total += per_layer[key]
        if stage == 0:
            total += sum(_tensor_bytes(t, tp, dense_bytes, scheme, 0) for t in embed)
            # vLLM shards the vision tower's linear layers over TP like the LM's (Llama 4, Pixtral, Qwen-VL)
            total += cdiv(_vision_params(arch), tp) * dense_bytes
        if stage == pp - 1:
            total += sum(_tensor_bytes(t, tp, dense_bytes, scheme, 0) for t in head)
            if pp > 1 and arch.weight_dims.tie_word_embeddings:
                total += sum(_tensor_bytes(t, tp, dense_bytes, scheme, 0) for t in embed[:1])
        best = max(best, total)
    return best


def lora_linears(arch: ModelArch) -> list[tuple[int, int, str, int]]:
    """(out_features, in_features, shard, slices) of every linear layer vLLM wraps with LoRA: attention
    projections and dense / shared-expert MLPs of each decoder layer (not routed experts, routers, state
    mixers or the LM head). `slices` is 2 for a fused gate_up projection, else 1; `count` is expanded."""
    _, layers, _, _ = _tensors(arch)
    out = []
    for i in range(arch.num_layers):
        for t in layers.get(i, ()):
            if not t.linear or t.group not in ("attention", "mlp", "shared_experts"):
                continue
            gated = t.group in ("mlp", "shared_experts") and t.shard == "col" and arch.model_type not in _PLAIN_MLP \
                and arch.model_type != "nemotron_h"
            slices = 2 if gated else 1
            out.extend([(t.rows // slices, t.cols, t.shard, slices)] * t.count)
    return out
