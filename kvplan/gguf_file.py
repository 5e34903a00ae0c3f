"""Read a llama.cpp `.gguf` file's metadata header into a `ModelArch` (tensors are never read).

llama.cpp users hold GGUF files, not HF configs. The architecture is in the header's key/values
(ENGINE_KV_SPEC.md §F, "GGUF keys"): `{arch}.block_count`, `{arch}.attention.head_count_kv` (a
scalar, or one value per layer: OpenELM, DeciLM, Jamba with 0 on Mamba layers), key/value lengths,
the sliding window and its pattern, the MLA latent (`kv_lora_rank`, `key_length_mla`), the SSM
sizes and `full_attention_interval`. The header is read by a small bounded reader of our own (not
the `gguf` package, whose reader materializes every array and every tensor entry: a 430-byte file
claiming 2^60 elements hung it).

`arch_from_gguf_metadata` does the mapping from a plain dict, so it is tested without files.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kvplan.errors import UnsupportedConfigError
from kvplan.files import open_regular
from kvplan.layers import (MLA, ChunkedLocal, FullAttention, LayerSpec, ModelArch, NoCache, RecurrentState,
                           SlidingWindow, WeightDims)

__all__ = ["load_gguf", "read_gguf_metadata", "arch_from_gguf_metadata", "GGUF_MAGIC"]

GGUF_MAGIC = b"GGUF"
_MAX_LAYERS = 100_000
_MAX_DIM = 1 << 40

# llama.cpp architecture names -> the HF model_type names the engine profiles key on
# (llama.cpp's iSWA set, SGLang's hybrid-SWA set).
_MODEL_TYPES = {"gpt-oss": "gpt_oss", "command-r": "cohere", "qwen3next": "qwen3_next", "falcon-h1": "falcon_h1",
                "granitehybrid": "granitemoehybrid", "deepseek2": "deepseek_v3", "qwen35": "qwen3_5",
                "qwen35moe": "qwen3_5_moe"}

# NOTE: llama-model.cpp hard-codes these SWA periods (`set_swa_pattern`): the last layer of each
# period is global. Gemma 3n reads its per-layer pattern from the file (a bool array).
_SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2, "exaone4": 4, "gemma-embedding": 6}
_GDN_ARCHS = {"qwen3next", "qwen35", "qwen35moe"}
_MAMBA1_ARCHS = {"mamba", "jamba"}
_FILE_TYPE_DTYPE = {0: "fp32", 1: "fp16", 32: "bf16"}  # LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_BF16


# ---- the header reader -----------------------------------------------------------------------------
# GGUF v2/v3 layout (ggml/docs/gguf.md): magic, u32 version, u64 tensor_count, u64 kv_count, then
# kv_count × (string key, u32 value type, value); a string is u64 length + UTF-8 bytes; an array is
# u32 element type + u64 count + elements. Tensor infos and data follow and are never read.
#
# A header is untrusted: every length is checked against the bytes really present before anything is
# allocated, and the work is capped so that any file answers in well under 2 s and ~100 MB:
MAX_HEADER_BYTES = 64 << 20  # the key/values must end here; real headers (a 262k-token vocabulary
#                              and 500k merges included) take 5-15 MiB
MAX_KEYS = 1 << 14  # real files have 20-60 keys
MAX_KEY_BYTES = 1 << 10  # real key names are < 100 bytes
MAX_STRING_BYTES = 16 << 20  # a chat template is tens of KiB; anything longer is refused
MAX_KEPT_STRING = 4 << 10  # strings longer than this are skipped, never decoded (kvplan reads short ones)
MAX_KEPT_ARRAY = 1 << 17  # per-layer arrays (> _MAX_LAYERS): longer ones outside tokenizer.* are refused
MAX_ELEMENT_STEPS = 1 << 21  # string / nested-array elements walked one by one (tokens + merges of a
#                              real vocabulary: 0.3-0.8M); fixed-size arrays are skipped in O(1)
MAX_DEPTH = 3  # arrays of arrays

_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_STRUCTS = {e + f: struct.Struct(e + f) for e in "<>" for f in (*_FIXED.values(), "I", "Q")}


class _Header:
    """A cursor over the first MAX_HEADER_BYTES of an open file, read in 1 MiB steps as needed."""

    def __init__(self, fh, size: int, name: str, endian: str = "<"):
        self.fh, self.size, self.name, self.e = fh, size, name, endian
        self.limit = min(size, MAX_HEADER_BYTES)
        self.buf = bytearray()
        self.pos = 0
        self.steps = 0

    def fail(self, message: str) -> UnsupportedConfigError:
        return UnsupportedConfigError("gguf", f"{self.name}: {message}")

    def need(self, n: int) -> None:
        end = self.pos + n
        if end > self.limit:
            if end > self.size:
                raise self.fail(f"truncated or corrupt header (a length at byte {self.pos:,} runs past the "
                                f"end of the {self.size:,}-byte file)")
            raise self.fail(f"metadata header larger than {MAX_HEADER_BYTES >> 20} MiB; not a model file "
                            "kvplan can read")
        if end > len(self.buf):
            want = min(self.limit, max(end, len(self.buf) + (1 << 20))) - len(self.buf)
            chunk = self.fh.read(want)
            self.buf += chunk
            if len(self.buf) < end:
                raise self.fail("the file is shorter than its size (it changed while read)")

    def unpack(self, fmt: str) -> Any:
        st = _STRUCTS[self.e + fmt]
        self.need(st.size)
        value = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value[0] if len(value) == 1 else value

    def u32(self) -> int:
        return self.unpack("I")

    def u64(self) -> int:
        return self.unpack("Q")

    def string(self, cap: int, what: str, keep: bool = True) -> str | None:
        n = self.u64()
        if n > cap:
            raise self.fail(f"{what} of {n:,} bytes (limit {cap:,})")
        self.need(n)
        start, self.pos = self.pos, self.pos + n
        if not keep or n > MAX_KEPT_STRING:
            return None
        return bytes(self.buf[start:self.pos]).decode("utf-8", "replace")

    def step(self, n: int) -> None:
        self.steps += n
        if self.steps > MAX_ELEMENT_STEPS:
            raise self.fail(f"more than {MAX_ELEMENT_STEPS:,} string or nested array elements in the header "
                            "(real vocabularies have under a million)")

    def array(self, key: str, keep: bool, depth: int) -> Any:
        """An array value: a list when `keep` and short, else its length (as an int, never a list)."""
        kind = self.u32()
        count = self.u64()
        if kind in _FIXED:
            width = struct.calcsize(_FIXED[kind])
            if count > (self.limit - self.pos) // width + 1:
                self.need(count * width)  # raises: longer than the bytes present
            if keep and count > MAX_KEPT_ARRAY:
                raise self.fail(f"{key!r}: array of {count:,} numbers; kvplan reads only per-layer arrays "
                                f"(up to {MAX_KEPT_ARRAY:,})")
            if keep:
                self.need(count * width)
                values = list(struct.unpack_from(f"{self.e}{count}{_FIXED[kind]}", self.buf, self.pos))
                self.pos += count * width
                return values
            self.need(count * width)
            self.pos += count * width
            return count
        if kind == _STRING:
            if count > (self.limit - self.pos) // 8 + 1:
                self.need(count * 8)  # raises: each string takes at least 8 bytes
            self.step(count)
            unpack, buf, pos, done = _STRUCTS[self.e + "Q"].unpack_from, self.buf, self.pos, 0
            while done < count:  # the hot loop of a real file (150-500k strings): locals only, no
                stop = len(buf) - 8  # per-string checks; a huge length jumps past `stop` and is caught below
                for done in range(done, count):
                    if pos > stop:
                        break
                    pos += 8 + unpack(buf, pos)[0]
                else:
                    done = count
                if done < count:
                    self.pos = pos
                    self.need(8)  # reads on, or raises: truncated file / header past MAX_HEADER_BYTES
                    buf = self.buf
            self.pos = pos
            self.need(0)  # the last string must end inside the header, too
            return count
        if kind == _ARRAY:
            if depth >= MAX_DEPTH:
                raise self.fail(f"{key!r}: arrays nested more than {MAX_DEPTH} deep")
            if count > (self.limit - self.pos) // 12 + 1:
                self.need(count * 12)  # each inner array header is 12 bytes
            self.step(count)
            for _ in range(count):
                self.array(key, False, depth + 1)
            return count
        raise self.fail(f"{key!r}: unknown value type {kind}")


def _read_header(fh, size: int, name: str) -> dict[str, Any]:
    if size < 24:
        raise UnsupportedConfigError("gguf", f"{name}: truncated GGUF header ({size} bytes)")
    head = fh.read(24)
    fh.seek(0)
    if head[:4] != GGUF_MAGIC:
        raise UnsupportedConfigError("gguf", f"{name} is not a GGUF file (no GGUF magic)")
    version = int.from_bytes(head[4:8], "little")
    endian = "<"
    if version not in (2, 3) and int.from_bytes(head[4:8], "big") in (2, 3):
        endian, version = ">", int.from_bytes(head[4:8], "big")  # big-endian GGUF (s390x converters)
    if version not in (2, 3):
        raise UnsupportedConfigError("gguf", f"{name}: GGUF version {version} is not supported (2 or 3); "
                                             "re-convert it with a current llama.cpp")
    r = _Header(fh, size, name, endian)
    r.pos = 8
    r.need(16)
    r.u64()  # tensor_count: tensor infos come after the key/values and are never read
    kv_count = r.u64()
    if kv_count > MAX_KEYS:
        raise r.fail(f"{kv_count:,} metadata keys (limit {MAX_KEYS:,}; real files have under 100)")
    out: dict[str, Any] = {}
    for _ in range(kv_count):
        key = r.string(MAX_KEY_BYTES, "a key name")
        kind = r.u32()
        tokenizer = key.startswith("tokenizer.")
        if kind == _ARRAY:
            value = r.array(key, not tokenizer, 0)
            if isinstance(value, int):  # vocabularies, string lists: only their length matters here
                out[key + ".count"] = value
                continue
        elif kind == _STRING:
            value = r.string(MAX_STRING_BYTES, f"the value of {key!r}", keep=not tokenizer)
            if value is None:
                continue
        elif kind in _FIXED:
            value = r.unpack(_FIXED[kind])
        else:
            raise r.fail(f"{key!r}: unknown value type {kind}")
        out[key] = value
    return out


def read_gguf_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The header key/values of a GGUF file (tokenizer arrays reduced to `key + ".count"`).

    Only the key/value section is read, with hard limits (MAX_HEADER_BYTES, MAX_KEYS, string and
    array lengths checked against the bytes present): any file answers in well under 2 s and ~100 MB.

    Raises:
        UnsupportedConfigError: not a GGUF file, not a regular file, or a corrupt / oversized header.
        FileNotFoundError: no such file.
    """
    p = Path(path)
    fh, size = open_regular(p, "gguf")
    with fh:
        try:
            return _read_header(fh, size, p.name[:200])
        except MemoryError:
            raise UnsupportedConfigError("gguf", f"{p.name[:200]}: header too large to read") from None


def load_gguf(path: str | os.PathLike, *, model_id: str | None = None) -> ModelArch:
    """A `ModelArch` from a local `.gguf` file's header.

    Raises:
        UnsupportedConfigError: not a GGUF, a corrupt header, or missing / inconsistent keys.
    """
    p = Path(path)
    return arch_from_gguf_metadata(read_gguf_metadata(p), model_id or p.name)


def _int(meta: Mapping[str, Any], key: str, *, default: Any = None, minimum: int = 1,
         per_layer: int | None = None) -> Any:
    """An integer key (or, with `per_layer`, a list of one per layer), range-checked."""
    value = meta.get(key, default)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if per_layer is None:
            if not value:
                raise UnsupportedConfigError(key, "is an empty array")
            value = max(_int({key: v}, key, minimum=minimum) for v in value)
            return value
        if len(value) != per_layer:
            raise UnsupportedConfigError(key, f"has {len(value)} entries for {per_layer} layers")
        return [_int({key: v}, key, minimum=minimum) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnsupportedConfigError(key, f"expected an integer, got {str(value)[:40]!r}")
    if not minimum <= value <= _MAX_DIM:
        raise UnsupportedConfigError(key, f"{value} is out of range")
    return [value] * per_layer if per_layer is not None else value


def _required(meta: Mapping[str, Any], key: str, why: str, **kw: Any) -> Any:
    value = _int(meta, key, **kw)
    if value is None:
        raise UnsupportedConfigError(key, f"missing; {why}")
    return value


def _swa_flags(meta: Mapping[str, Any], arch: str, n_layer: int) -> list[bool]:
    key = f"{arch}.attention.sliding_window_pattern"
    pattern = meta.get(key)
    if isinstance(pattern, (list, tuple)):  # Gemma 3n: one bool per layer, true = sliding
        if len(pattern) != n_layer or not all(isinstance(v, (bool, int)) for v in pattern):
            raise UnsupportedConfigError(key, f"expected {n_layer} booleans")
        return [bool(v) for v in pattern]
    period = _int(meta, key) if pattern is not None else _SWA_PERIOD.get(arch)
    if period is None:
        return [True] * n_layer  # a window with no pattern: every layer (Mistral-style)
    # llama-hparams.cpp set_swa_pattern: layer il is SWA iff il % n_pattern < n_pattern - 1
    return [il % period < period - 1 for il in range(n_layer)]


def _recurrent(meta: Mapping[str, Any], arch: str, index: int, hidden: int | None) -> RecurrentState:
    ssm = f"{arch}.ssm."
    if arch.startswith("lfm2"):  # LFM2 short-conv layers: conv state only
        l_cache = _required(meta, f"{arch}.shortconv.l_cache", "needed for LFM2 conv layers")
        width = _required(meta, f"{arch}.embedding_length", "needed for LFM2 conv layers")
        return RecurrentState(index, mixer="shortconv", conv_kernel=l_cache, conv_channels=width)
    d_conv = _required(meta, ssm + "conv_kernel", "needed for recurrent layers")
    d_state = _required(meta, ssm + "state_size", "needed for recurrent layers")
    d_inner = _required(meta, ssm + "inner_size", "needed for recurrent layers")
    if arch in _GDN_ARCHS:  # Qwen3-Next GatedDeltaNet: group_count = K heads, time_step_rank = V heads
        hk = _required(meta, ssm + "group_count", "needed for linear-attention layers")
        hv = _required(meta, ssm + "time_step_rank", "needed for linear-attention layers")
        if d_inner % hv:
            raise UnsupportedConfigError(ssm + "inner_size", f"{d_inner} is not divisible by {hv} value heads")
        dv = d_inner // hv
        return RecurrentState(index, mixer="gdn", conv_kernel=d_conv, conv_channels=2 * hk * d_state + d_inner,
                              num_heads=hv, head_dim=dv, state_dim=d_state)
    if arch in _MAMBA1_ARCHS or meta.get(ssm + "group_count") is None:
        return RecurrentState(index, mixer="mamba1", conv_kernel=d_conv, conv_channels=d_inner,
                              num_heads=d_inner, head_dim=1, state_dim=d_state)
    groups = _required(meta, ssm + "group_count", "needed for Mamba2 layers")
    heads = _required(meta, ssm + "time_step_rank", "needed for Mamba2 layers (number of SSM heads)")
    if d_inner % heads:
        raise UnsupportedConfigError(ssm + "inner_size", f"{d_inner} is not divisible by {heads} SSM heads")
    return RecurrentState(index, mixer="mamba2", conv_kernel=d_conv, conv_channels=d_inner + 2 * groups * d_state,
                          num_heads=heads, head_dim=d_inner // heads, state_dim=d_state, n_groups=groups)


def arch_from_gguf_metadata(meta: Mapping[str, Any], model_id: str = "gguf") -> ModelArch:
    """Build a `ModelArch` from GGUF header key/values, the way llama.cpp's loader reads them.

    Raises:
        UnsupportedConfigError: a required key is missing or a value is malformed (the key is named).
    """
    if not isinstance(meta, Mapping):
        raise UnsupportedConfigError("gguf", "expected a mapping of header keys")
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch or len(arch) > 64:
        raise UnsupportedConfigError("general.architecture", "missing; not a llama.cpp model file")
    a = arch + "."
    n_layer = _required(meta, a + "block_count", "the number of decoder layers")
    if n_layer > _MAX_LAYERS:
        raise UnsupportedConfigError(a + "block_count", f"{n_layer:,} layers is not a real model")
    hidden = _int(meta, a + "embedding_length")
    heads_list = _int(meta, a + "attention.head_count", minimum=0, per_layer=n_layer)
    kv_list = _int(meta, a + "attention.head_count_kv", minimum=0, per_layer=n_layer)
    if kv_list is None:
        kv_list = heads_list
    has_ssm = any(k.startswith(a + "ssm.") for k in meta) or arch.startswith("lfm2")
    has_attention = kv_list is not None and any(kv_list)
    heads = max(heads_list) if heads_list else 0
    if kv_list is None and not has_ssm:
        raise UnsupportedConfigError(a + "attention.head_count", "missing; needed for attention layers")
    kv_list = kv_list or [0] * n_layer
    for i, (kv, h) in enumerate(zip(kv_list, heads_list or kv_list)):
        if kv and h and (kv > h or h % kv):
            raise UnsupportedConfigError(a + "attention.head_count_kv",
                                         f"layer {i}: {kv} KV heads do not divide {h} attention heads")

    kv_lora = _int(meta, a + "attention.kv_lora_rank")
    key_mla = _int(meta, a + "attention.key_length_mla")
    is_mla = kv_lora is not None and key_mla is not None  # new GGUFs (latent cache); legacy ones cache K/V
    key_len = _int(meta, a + "attention.key_length")
    val_len = _int(meta, a + "attention.value_length")
    if has_attention and not is_mla and (key_len is None or val_len is None):
        if not hidden or not heads:
            raise UnsupportedConfigError(a + "attention.key_length",
                                         "missing, and embedding_length / head_count cannot derive it")
        if hidden % heads:
            raise UnsupportedConfigError(a + "attention.key_length",
                                         f"missing, and embedding_length {hidden} is not divisible by {heads} heads")
        key_len = key_len or hidden // heads
        val_len = val_len or key_len

    window = _int(meta, a + "attention.sliding_window", minimum=0) or 0
    key_swa = _int(meta, a + "attention.key_length_swa")
    val_swa = _int(meta, a + "attention.value_length_swa")
    swa = _swa_flags(meta, arch, n_layer) if window else [False] * n_layer
    chunk = 0
    if arch == "llama4" and not window:
        # NOTE: llama.cpp's Llama 4 loader: chunked attention of 8192 on 3 layers of every 4.
        chunk, swa = 8192, [il % 4 < 3 for il in range(n_layer)]
    shared = _int(meta, a + "attention.shared_kv_layers", minimum=0) or 0
    if shared > n_layer:
        raise UnsupportedConfigError(a + "attention.shared_kv_layers", f"{shared} exceeds {n_layer} layers")
    interval = _int(meta, a + "full_attention_interval")
    ff_raw = meta.get(a + "feed_forward_length")
    ff_list = _int(meta, a + "feed_forward_length", minimum=0, per_layer=n_layer) \
        if isinstance(ff_raw, (list, tuple)) else None

    layers: list[LayerSpec] = []
    for i in range(n_layer):
        kv = kv_list[i]
        # NOTE: Nemotron-H: head_count_kv = 0 on Mamba *and* MLP layers; MLP layers have a feed-forward
        # length, Mamba layers none (llama-model.cpp recurrent_layer_arr).
        mlp_only = arch.startswith("nemotron_h") and ff_list is not None and ff_list[i] > 0
        recurrent_layer = (interval is not None and (i + 1) % interval != 0) or (has_ssm and kv == 0
                                                                                 and not mlp_only) \
            or arch == "falcon-h1"
        if interval is not None and (i + 1) % interval != 0:
            kv = 0  # Qwen3-Next: only every `interval`-th layer is attention
        if shared and i >= n_layer - shared:
            layers.append(NoCache(i, reason="shares KV with an earlier layer"))
            continue
        if kv and is_mla:
            rope_dim = _required(meta, a + "rope.dimension_count", "needed for MLA (DeepSeek: 64)")
            v_mla = _int(meta, a + "attention.value_length_mla") or val_len or 0
            layers.append(MLA(i, kv_lora_rank=kv_lora, rope_dim=rope_dim, num_heads=heads,
                              qk_nope_head_dim=max(key_mla - rope_dim, 0), v_head_dim=v_mla))
        elif kv:
            attn = dict(num_kv_heads=kv, head_dim=key_len, head_dim_v=val_len)
            if swa[i] and key_swa:  # Gemma-4 style: window layers have their own head dims
                attn.update(head_dim=key_swa, head_dim_v=val_swa or key_swa)
            if chunk and swa[i]:
                layers.append(ChunkedLocal(i, **attn, chunk=chunk))
            elif swa[i]:
                layers.append(SlidingWindow(i, **attn, window=window))
            else:
                layers.append(FullAttention(i, **attn))
        elif not recurrent_layer:
            layers.append(NoCache(i, reason="no KV heads (head_count_kv = 0)"))
        if recurrent_layer:
            layers.append(_recurrent(meta, arch, i, hidden))

    ff = _int(meta, a + "feed_forward_length", minimum=0)
    vocab = _int(meta, a + "vocab_size") or _int(meta, "tokenizer.ggml.tokens.count", minimum=0) or 0
    file_type = meta.get("general.file_type")
    dims = WeightDims(
        hidden_size=hidden or 0, intermediate_size=ff or 0, vocab_size=vocab, num_attention_heads=heads,
        num_experts=_int(meta, a + "expert_count", minimum=0) or 0,
        num_experts_per_tok=_int(meta, a + "expert_used_count", minimum=0) or 0,
        moe_intermediate_size=_int(meta, a + "expert_feed_forward_length", minimum=0) or 0,
        num_shared_experts=_int(meta, a + "expert_shared_count", minimum=0) or 0,
        first_k_dense_replace=_int(meta, a + "leading_dense_block_count", minimum=0) or 0,
        q_lora_rank=_int(meta, a + "attention.q_lora_rank", minimum=0) or 0,
        num_nextn_predict_layers=_int(meta, a + "nextn_predict_layers", minimum=0) or 0,
    )
    if all(isinstance(s, NoCache) for s in layers):
        raise UnsupportedConfigError(a + "attention.head_count_kv", "no layer keeps a KV cache or a recurrent "
                                                                    "state (head_count_kv is 0 everywhere)")
    naive_kv = max(kv_list) if any(kv_list) else 0
    naive_dim = (hidden // heads if hidden and heads else 0) if is_mla else (key_len or 0)
    return ModelArch(
        model_id=model_id, model_type=_MODEL_TYPES.get(arch, arch.replace("-", "_")), num_layers=n_layer,
        layers=tuple(layers),
        # NOTE: quantized GGUF weights have no single dtype; llama.cpp computes and caches in f16.
        dtype=_FILE_TYPE_DTYPE.get(file_type, "fp16") if isinstance(file_type, int) else "fp16",
        max_position_embeddings=_int(meta, a + "context_length", minimum=0) or 0,
        naive_num_kv_heads=naive_kv if not is_mla else heads, naive_head_dim=naive_dim, weight_dims=dims,
    )
