"""GGUF files as MODEL: the architecture from the header only, on small files these tests write
with the same `gguf` package llama.cpp's converters use.

Golden numbers: llama.cpp's own formula (ENGINE_KV_SPEC.md C.2), bytes = cells · Σ layers
(n_embd_k_gqa + n_embd_v_gqa) · 2 for f16; a 4096-cell f16 cache of Llama-3.1-8B is 512 MiB
("llama_kv_cache: size = 512.00 MiB (4096 cells, 32 layers, 1/1 seqs)").
"""

from __future__ import annotations

import numpy as np
import pytest

import kvplan
from kvplan.errors import KvplanError, UnsupportedConfigError
from kvplan.gguf_file import arch_from_gguf_metadata, load_gguf, read_gguf_metadata

gguf = pytest.importorskip("gguf")


def write_gguf(path, arch: str, keys: dict, *, tensor: bool = True):
    """Write a GGUF with `keys` ("{arch}." is prefixed to keys starting with "."), plus one tiny tensor."""
    w = gguf.GGUFWriter(str(path), arch)
    for key, value in keys.items():
        key = arch + key if key.startswith(".") else key
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, list(value))
    if tensor:
        w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


LLAMA_31_8B = {".block_count": 32, ".context_length": 131072, ".embedding_length": 4096,
               ".feed_forward_length": 14336, ".attention.head_count": 32, ".attention.head_count_kv": 8,
               ".rope.dimension_count": 128, "general.file_type": 15, ".vocab_size": 128256}


def test_llama_gguf_matches_the_hf_config(tmp_path):
    path = write_gguf(tmp_path / "llama-3.1-8b-q4_k_m.gguf", "llama", LLAMA_31_8B)
    arch = kvplan.load_model(str(path))
    assert arch.model_id == "llama-3.1-8b-q4_k_m.gguf"
    assert arch.num_layers == 32 and arch.attention_kinds == ("full",)
    assert (arch.layers[0].num_kv_heads, arch.layers[0].head_dim, arch.layers[0].head_dim_v) == (8, 128, 128)
    assert arch.max_position_embeddings == 131072 and arch.weight_dims.vocab_size == 128256
    # llama.cpp: 4096 cells × 32 layers × (1024 + 1024) × 2 B = 512 MiB
    est = kvplan.kv_cache(str(path), context_len=4096, engine="llama.cpp")
    assert est.kv_bytes == 512 * 2**20
    # and the same bytes as the bundled HF config, on every engine
    for engine in kvplan.ENGINE_NAMES:
        hf = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=8192, engine=engine, kv_dtype="fp16")
        gg = kvplan.kv_cache(str(path), context_len=8192, engine=engine, kv_dtype="fp16")
        assert gg.kv_bytes == hf.kv_bytes, engine


def test_per_layer_head_count_kv_array_with_zero(tmp_path):
    # OpenELM / DeciLM style: per-layer KV heads; 0 = a layer with no attention
    keys = {**LLAMA_31_8B, ".block_count": 4, ".attention.head_count_kv": [8, 4, 0, 2]}
    arch = load_gguf(write_gguf(tmp_path / "m.gguf", "deci", keys))
    assert [getattr(s, "num_kv_heads", 0) for s in arch.layers] == [8, 4, 0, 2]
    assert arch.kind_counts() == {"full": 3, "none": 1}


def test_explicit_key_and_value_lengths(tmp_path):
    keys = {**LLAMA_31_8B, ".attention.key_length": 256, ".attention.value_length": 192}
    arch = load_gguf(write_gguf(tmp_path / "m.gguf", "llama", keys))
    assert (arch.layers[0].head_dim, arch.layers[0].head_dim_v) == (256, 192)


@pytest.mark.parametrize("arch_name, period", [("gemma2", 2), ("gemma3", 6), ("cohere2", 4), ("gpt-oss", 2)])
def test_sliding_window_default_patterns(tmp_path, arch_name, period):
    keys = {".block_count": 12, ".embedding_length": 2048, ".attention.head_count": 8,
            ".attention.head_count_kv": 4, ".attention.key_length": 256, ".attention.value_length": 256,
            ".attention.sliding_window": 4096}
    arch = load_gguf(write_gguf(tmp_path / "m.gguf", arch_name, keys))
    kinds = [s.kind for s in arch.layers]
    # llama-hparams.cpp set_swa_pattern: SWA iff il % n < n - 1
    assert kinds == ["sliding" if i % period < period - 1 else "full" for i in range(12)]
    assert arch.of_kind("sliding")[0].window == 4096
    assert arch.model_type in kvplan.get_engine("llama.cpp").SWA_MODEL_TYPES  # iSWA applies


def test_sliding_window_pattern_key_int_and_bool_array(tmp_path):
    base = {".block_count": 4, ".embedding_length": 1024, ".attention.head_count": 8,
            ".attention.head_count_kv": 2, ".attention.sliding_window": 512}
    arch = load_gguf(write_gguf(tmp_path / "a.gguf", "gemma3", {**base, ".attention.sliding_window_pattern": 2}))
    assert [s.kind for s in arch.layers] == ["sliding", "full", "sliding", "full"]
    arch = load_gguf(write_gguf(tmp_path / "b.gguf", "gemma3n",
                                {**base, ".attention.sliding_window_pattern": [True, True, False, True]}))
    assert [s.kind for s in arch.layers] == ["sliding", "sliding", "full", "sliding"]


def test_shared_kv_layers(tmp_path):
    keys = {".block_count": 6, ".embedding_length": 1024, ".attention.head_count": 8,
            ".attention.head_count_kv": 2, ".attention.shared_kv_layers": 2}
    arch = load_gguf(write_gguf(tmp_path / "m.gguf", "gemma3n", keys))
    assert [s.kind for s in arch.layers] == ["full"] * 4 + ["none"] * 2


def test_mla_latent_deepseek(tmp_path):
    # DeepSeek-V3 converted after the MLA rework: head_count_kv 1, key_length 576 (= 512 + 64)
    keys = {".block_count": 61, ".embedding_length": 7168, ".attention.head_count": 128,
            ".attention.head_count_kv": 1, ".attention.key_length": 576, ".attention.value_length": 512,
            ".attention.key_length_mla": 192, ".attention.value_length_mla": 128,
            ".attention.kv_lora_rank": 512, ".rope.dimension_count": 64, ".context_length": 163840}
    arch = load_gguf(write_gguf(tmp_path / "ds.gguf", "deepseek2", keys))
    mla = arch.layers[0]
    assert arch.attention_kinds == ("mla",) and (mla.kv_lora_rank, mla.rope_dim) == (512, 64)
    assert (mla.qk_nope_head_dim, mla.v_head_dim, mla.num_heads) == (128, 128, 128)
    # ENGINE_KV_SPEC.md G: vLLM / llama.cpp (new GGUF) 576 · 2 · 61 = 70,272 B/token
    est = kvplan.kv_cache(str(tmp_path / "ds.gguf"), context_len=4096, engine="vllm", kv_dtype="bf16")
    assert est.bytes_per_token == 70_272
    bundled = kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=4096, engine="vllm", kv_dtype="bf16")
    assert est.kv_bytes == bundled.kv_bytes


def test_legacy_deepseek_gguf_caches_decompressed_kv(tmp_path):
    # pre-MLA GGUF: kv_lora_rank but no key_length_mla -> 128 heads × (192 + 128)
    keys = {".block_count": 2, ".embedding_length": 7168, ".attention.head_count": 128,
            ".attention.head_count_kv": 128, ".attention.key_length": 192, ".attention.value_length": 128,
            ".attention.kv_lora_rank": 512, ".rope.dimension_count": 64}
    arch = load_gguf(write_gguf(tmp_path / "old.gguf", "deepseek2", keys))
    assert arch.layers[0].kind == "full" and arch.layers[0].elems_per_token() == 128 * 320


def test_mamba2_and_hybrid_ssm(tmp_path):
    ssm = {".ssm.conv_kernel": 4, ".ssm.state_size": 128, ".ssm.group_count": 8, ".ssm.inner_size": 4096,
           ".ssm.time_step_rank": 64}
    arch = load_gguf(write_gguf(tmp_path / "m2.gguf", "mamba2", {".block_count": 3, ".embedding_length": 2048,
                                                                 **ssm}))
    s = arch.layers[0]
    assert arch.attention_kinds == ("state",)
    assert (s.mixer, s.conv_kernel, s.conv_channels, s.num_heads, s.head_dim, s.state_dim) == \
        ("mamba2", 4, 4096 + 2 * 8 * 128, 64, 64, 128)
    # Jamba-style hybrid: head_count_kv 0 on the Mamba layers (mamba1 mixer)
    jamba = {".block_count": 4, ".embedding_length": 4096, ".attention.head_count": 32,
             ".attention.head_count_kv": [0, 0, 8, 0], ".ssm.conv_kernel": 4, ".ssm.state_size": 16,
             ".ssm.inner_size": 8192, ".ssm.time_step_rank": 256}
    arch = load_gguf(write_gguf(tmp_path / "j.gguf", "jamba", jamba))
    assert [s.kind for s in arch.layers] == ["state", "state", "full", "state"]
    assert arch.layers[0].mixer == "mamba1" and arch.layers[0].conv_channels == 8192


def test_nemotron_h_mlp_layers_hold_nothing(tmp_path):
    keys = {".block_count": 3, ".embedding_length": 4096, ".attention.head_count": 32,
            ".attention.head_count_kv": [0, 8, 0], ".feed_forward_length": [0, 0, 21504],
            ".ssm.conv_kernel": 4, ".ssm.state_size": 128, ".ssm.group_count": 8, ".ssm.inner_size": 8192,
            ".ssm.time_step_rank": 128}
    arch = load_gguf(write_gguf(tmp_path / "n.gguf", "nemotron_h", keys))
    assert [s.kind for s in arch.layers] == ["state", "full", "none"]


def test_qwen3_next_full_attention_interval(tmp_path):
    keys = {".block_count": 8, ".embedding_length": 2048, ".attention.head_count": 16,
            ".attention.head_count_kv": 2, ".attention.key_length": 256, ".attention.value_length": 256,
            ".full_attention_interval": 4, ".ssm.conv_kernel": 4, ".ssm.state_size": 128,
            ".ssm.group_count": 16, ".ssm.inner_size": 4096, ".ssm.time_step_rank": 32}
    arch = load_gguf(write_gguf(tmp_path / "q.gguf", "qwen3next", keys))
    assert [s.kind for s in arch.layers] == ["state", "state", "state", "full"] * 2
    gdn = arch.layers[0]
    # same shapes the HF parser derives for Qwen3-Next (Hk 16 · Dk 128 · 2 + Hv 32 · Dv 128)
    assert (gdn.mixer, gdn.conv_channels, gdn.num_heads, gdn.head_dim, gdn.state_dim) == \
        ("gdn", 2 * 16 * 128 + 4096, 32, 128, 128)


def test_header_only_is_read(tmp_path, monkeypatch):
    # tensor data is never touched: a file whose tensor data is truncated still reads
    path = write_gguf(tmp_path / "m.gguf", "llama", LLAMA_31_8B)
    meta = read_gguf_metadata(path)
    assert meta["llama.block_count"] == 32 and meta["general.architecture"] == "llama"


NOT_GGUF = [
    b"",  # empty
    b"GGU",  # truncated magic
    b"GGUF",  # magic only
    b"GGUF\x03\x00\x00\x00" + b"\xff" * 16,  # absurd tensor / kv counts
    b"GGUF\x63\x00\x00\x00" + b"\x00" * 16,  # unsupported version 99
    b"PK\x03\x04 not a gguf",  # some other file
]


@pytest.mark.parametrize("data", NOT_GGUF)
def test_corrupt_files_are_typed_errors(tmp_path, data):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(UnsupportedConfigError):
        kvplan.load_model(str(path))


def test_truncated_real_file(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", "llama", LLAMA_31_8B)
    data = path.read_bytes()
    for cut in (8, 24, 40, 100, len(data) // 2):
        (tmp_path / "t.gguf").write_bytes(data[:cut])
        try:
            load_gguf(tmp_path / "t.gguf")
        except KvplanError:
            pass


BAD_META = [
    {},  # no architecture
    {"general.architecture": "llama"},  # no block_count
    {"general.architecture": "llama", "llama.block_count": 0},
    {"general.architecture": "llama", "llama.block_count": -3},
    {"general.architecture": "llama", "llama.block_count": 10**9},
    {"general.architecture": "llama", "llama.block_count": "32"},
    {"general.architecture": "llama", "llama.block_count": 2, "llama.attention.head_count": 8,
     "llama.attention.head_count_kv": [1, 2, 3]},  # wrong length
    {"general.architecture": "llama", "llama.block_count": 2, "llama.attention.head_count": 8,
     "llama.attention.head_count_kv": 3, "llama.embedding_length": 64},  # 3 does not divide 8
    {"general.architecture": "llama", "llama.block_count": 2, "llama.attention.head_count": 7,
     "llama.embedding_length": 64},  # head dim not derivable
    {"general.architecture": "mamba2", "mamba2.block_count": 2, "mamba2.ssm.conv_kernel": 4},
    {"general.architecture": "llama", "llama.block_count": 2, "llama.attention.head_count": 8,
     "llama.embedding_length": float("nan")},
]


@pytest.mark.parametrize("meta", BAD_META)
def test_bad_metadata_names_the_key(meta):
    with pytest.raises(UnsupportedConfigError):
        arch_from_gguf_metadata(meta)
