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


# ---- hostile files: bounded time and memory (issue 10, item 2) ----------------------------------

import json  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import hostile_files  # noqa: E402
from kvplan import gguf_file  # noqa: E402


def test_vocabulary_arrays_reduce_to_counts_like_the_gguf_package(tmp_path):
    """A realistic header (tokens, scores, merges, token types, string lists, a bool array) reads the
    same as the gguf package's reader, with tokenizer arrays reduced to their length."""
    w = gguf.GGUFWriter(str(tmp_path / "v.gguf"), "gemma3n")
    w.add_uint32("gemma3n.block_count", 4)
    w.add_uint32("gemma3n.embedding_length", 1024)
    w.add_uint32("gemma3n.attention.head_count", 8)
    w.add_uint32("gemma3n.attention.head_count_kv", 2)
    w.add_uint32("gemma3n.attention.sliding_window", 512)
    w.add_array("gemma3n.attention.sliding_window_pattern", [True, True, False, True])
    w.add_array("general.tags", ["text-generation", "gemma"])
    w.add_token_list([f"tok{i}" for i in range(5000)])
    w.add_token_scores([0.5] * 5000)
    w.add_token_types([1] * 5000)
    w.add_token_merges([f"a{i} b{i}" for i in range(3000)])
    w.add_string("tokenizer.chat_template", "{{ x }}" * 2000)
    w.add_tensor("t", np.zeros((2, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta = read_gguf_metadata(tmp_path / "v.gguf")
    assert meta["tokenizer.ggml.tokens.count"] == 5000 and meta["tokenizer.ggml.merges.count"] == 3000
    assert meta["tokenizer.ggml.scores.count"] == 5000 and meta["general.tags.count"] == 2
    assert meta["gemma3n.attention.sliding_window_pattern"] == [True, True, False, True]
    reader = gguf.GGUFReader(str(tmp_path / "v.gguf"), "r")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key.startswith("tokenizer.") or key == "general.tags":
            continue
        value = field.contents() if hasattr(field, "contents") else None
        if value is not None:
            assert meta[key] == value, key
    arch = load_gguf(tmp_path / "v.gguf")
    assert arch.weight_dims.vocab_size == 5000
    assert [s.kind for s in arch.layers] == ["sliding", "sliding", "full", "sliding"]


@pytest.mark.parametrize("name", list(hostile_files.BOMBS))
def test_gguf_bombs_are_bounded(tmp_path, name):
    """The issue's bombs (2^60-element array, 20M-element arrays, 300k tensors, 1M empty arrays) and
    1 GB files built to cost the most work: each in a child with a 1 GiB address-space limit and a 60 s
    timeout, so a regression fails here instead of eating the machine. Answer: a result or a typed
    error, under 200 MB peak RSS (the time is measured in benchmarks/hostile.py)."""
    path = hostile_files.BOMBS[name](tmp_path)
    run = hostile_files.run_limited(hostile_files.LOAD_CHILD, args=(str(path),), mem_bytes=1 << 30, timeout=60)
    assert not run["timed_out"], name
    assert run["rc"] == 0, run["stderr"][-500:]
    outcome = json.loads(run["stdout"].strip().splitlines()[-1])["outcome"]
    assert outcome == "ok" or outcome.startswith("typed error: config field `gguf`"), outcome
    assert run["hwm_bytes"] is not None and run["hwm_bytes"] < 200 * 2**20, run["hwm_bytes"]


def test_bomb_outcomes_name_the_limit(tmp_path):
    with pytest.raises(UnsupportedConfigError, match="runs past the end"):
        read_gguf_metadata(hostile_files.gguf_claims_2_60_elements(tmp_path))
    with pytest.raises(UnsupportedConfigError, match="131,072"):
        read_gguf_metadata(hostile_files.gguf_array_20m(tmp_path))
    with pytest.raises(UnsupportedConfigError, match="16,384"):
        read_gguf_metadata(hostile_files.gguf_empty_arrays(tmp_path))
    with pytest.raises(UnsupportedConfigError, match="2,097,152"):
        read_gguf_metadata(hostile_files.gguf_nested_arrays(tmp_path))
    with pytest.raises(UnsupportedConfigError, match="64 MiB"):
        read_gguf_metadata(hostile_files.gguf_1gb_long_keys(tmp_path))
    # a tokenizer array in the header costs its length, not its bytes: counted, never materialized
    meta = read_gguf_metadata(hostile_files.gguf_array_20m(tmp_path, "tokenizer.ggml.scores"))
    assert meta["tokenizer.ggml.scores.count"] == 20_000_000
    meta = read_gguf_metadata(hostile_files.gguf_many_tensors(tmp_path))
    assert meta["llama.block_count"] == 2  # 300k tensor entries are never read


_SMALL = None


def _small_gguf(tmp_path_factory) -> bytes:
    global _SMALL
    if _SMALL is None:
        folder = tmp_path_factory.mktemp("seed")
        w = gguf.GGUFWriter(str(folder / "s.gguf"), "llama")
        w.add_uint32("llama.block_count", 2)
        w.add_uint32("llama.embedding_length", 64)
        w.add_uint32("llama.attention.head_count", 4)
        w.add_array("llama.attention.head_count_kv", [2, 4])
        w.add_token_list(["a", "bb", "ccc"])
        w.add_token_scores([0.0, 1.0, 2.0])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.close()
        _SMALL = (folder / "s.gguf").read_bytes()
    return _SMALL


@settings(max_examples=300, deadline=2000, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@given(edits=st.lists(st.tuples(st.integers(0, 400), st.sampled_from(
    [b"\xff" * 8, b"\x00" * 8, b"\x09\x00\x00\x00", b"\x08\x00\x00\x00", struct.pack("<Q", 1 << 62),
     struct.pack("<Q", 7), b"\x01"])), max_size=4), cut=st.one_of(st.none(), st.integers(0, 400)))
def test_mutated_headers_read_or_typed_error(tmp_path_factory, edits, cut):
    """Random overwrites and truncations of a real header: a dict or UnsupportedConfigError, never
    another exception (the sizes involved are small, so this runs in-process)."""
    data = bytearray(_small_gguf(tmp_path_factory))
    for pos, patch in edits:
        data[pos:pos + len(patch)] = patch
    if cut is not None:
        data = data[:cut]
    path = tmp_path_factory.getbasetemp() / "mut.gguf"
    path.write_bytes(bytes(data))
    try:
        meta = read_gguf_metadata(path)
    except UnsupportedConfigError:
        return
    assert isinstance(meta, dict)
    try:
        arch_from_gguf_metadata(meta)
    except UnsupportedConfigError:
        pass


def test_big_endian_and_version_checks(tmp_path):
    be = b"GGUF" + struct.pack(">IQQ", 3, 0, 2) + struct.pack(">Q", 20) + b"general.architecture" + \
        struct.pack(">I", 8) + struct.pack(">Q", 5) + b"llama" + struct.pack(">Q", 17) + b"llama.block_count" + \
        struct.pack(">II", 4, 3)
    (tmp_path / "be.gguf").write_bytes(be)
    assert read_gguf_metadata(tmp_path / "be.gguf") == {"general.architecture": "llama", "llama.block_count": 3}
    (tmp_path / "v1.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    with pytest.raises(UnsupportedConfigError, match="version 1"):
        read_gguf_metadata(tmp_path / "v1.gguf")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_special_files_named_gguf_do_not_block(tmp_path):
    os.mkfifo(tmp_path / "pipe.gguf")
    os.symlink("/dev/zero", tmp_path / "zero.gguf")
    for name in ("pipe.gguf", "zero.gguf"):
        with pytest.raises(UnsupportedConfigError, match="not a regular file"):
            kvplan.load_model(str(tmp_path / name))
        with pytest.raises(UnsupportedConfigError, match="not a regular file"):
            read_gguf_metadata(tmp_path / name)
