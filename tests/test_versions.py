"""The engine version as an input: parsing, where it shows, and the rules it selects (with sources)."""

from __future__ import annotations

import json

import pytest

import kvplan
from kvplan import InvalidInputError, engine_versions
from kvplan.cli import main
from kvplan.planner import plan
from kvplan.units import GiB, MiB


# ---- parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine,version,expected", [
    ("vllm", "0.19", "0.19.0"), ("vllm", "v0.20.2", "0.20.2"), ("vllm", "0.19.0.post1", "0.19.0"),
    ("vllm@0.19", None, "0.19.0"), ("VLLM@0.26.1", None, "0.26.1"), ("vllm", None, "0.28.0"),
    ("vllm", "latest", "0.28.0"), ("llama.cpp", "b4905", "b4905"), ("llama.cpp", "4905", "b4905"),
    ("llama.cpp@ik", None, "ik"), ("ik_llama.cpp", None, "ik"), ("trtllm", "1.1.0rc3", "1.1.0"),
    ("naive", None, "n/a"), ("transformers", None, "n/a"),
])
def test_version_parsed_once_and_shown(engine, version, expected):
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=1024, engine=engine, engine_version=version)
    assert est.engine_version == expected
    cap = kvplan.capacity("meta-llama/Llama-3.1-8B", kv_memory="1GiB", max_model_len=1024, engine=engine,
                          engine_version=version)
    assert cap.engine_version == expected


@pytest.mark.parametrize("engine,version,field", [
    ("vllm", "abc", "engine_version"), ("vllm", "0.19.x", "engine_version"), ("vllm", "0.3", "engine_version"),
    ("vllm@", None, "engine"), ("vllm@0.19", "0.18", "engine_version"), ("naive", "1.0", "engine_version"),
    ("llama.cpp", "0.19", "engine_version"), ("vllm", "9" * 200, "engine_version"),
])
def test_bad_versions_are_typed_errors(engine, version, field):
    with pytest.raises(InvalidInputError) as err:
        kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=1024, engine=engine, engine_version=version)
    assert err.value.field == field


def test_engine_version_is_not_an_engine_option(capsys):
    assert main(["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--set", "engine_version=0.19"]) == 2
    assert "--engine-version" in capsys.readouterr().err


def test_newer_than_modelled_is_noted_not_refused():
    est = kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=1024, engine="vllm@0.40")
    assert est.engine_version == "0.40.0" and any("newer than the newest" in n for n in est.notes)


def test_engine_versions_lists_rules_with_sources():
    table = engine_versions()
    assert set(table) == set(kvplan.ENGINE_NAMES)
    vllm = engine_versions("vllm")
    assert vllm["default"] == vllm["latest"] == "0.28.0"
    keys = {r["key"]: r for r in vllm["rules"]}
    assert keys["cuda_graphs_in_budget"]["since"] == "0.21.0"
    assert keys["kv_tokens_rule"]["since"] == "0.20.2"
    assert all(r["source"] for r in vllm["rules"])
    assert "0.17.0" in vllm["versions"] and "0.26.0" in vllm["versions"]
    assert engine_versions("llama.cpp")["forks"][0]["fork"] == "ik"
    assert engine_versions("naive")["latest"] is None


def test_cli_engine_version_everywhere(capsys):
    assert main(["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--engine", "vllm@0.19", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine_version"] == "0.19.0"
    assert main(["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--engine-version", "0.19"]) == 0
    assert "vllm 0.19.0" in capsys.readouterr().out
    assert main(["plan", "meta-llama/Llama-3.1-8B", "--max-model-len", "8k", "--kv-memory", "10GiB",
                 "--engine-version", "0.20.2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine_version"] == "0.20.2"
    assert main(["plan", "meta-llama/Llama-3.1-8B", "--max-model-len", "8k", "--gpu", "H100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine_version"] == "0.28.0"
    assert main(["plan", "meta-llama/Llama-3.1-8B", "--max-model-len", "8k", "--gpu", "H100", "--users", "50",
                 "--min-gpus", "--engine", "vllm@0.15", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine_version"] == "0.15.0"
    assert main(["versions", "--json"]) == 0
    assert "vllm" in json.loads(capsys.readouterr().out)["engines"]
    assert main(["versions", "--engine", "vllm"]) == 0
    assert "0.21.0" in capsys.readouterr().out
    assert main(["size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--engine-version", "zz"]) == 2
    assert "engine_version" in capsys.readouterr().err


# ---- vLLM: planner rules by version --------------------------------------------------------------

def test_vllm_budget_rules_follow_the_version():
    kw = dict(gpu="H100", max_model_len=8192)
    old, v019, new = (plan("meta-llama/Llama-3.1-8B", engine_version=v, **kw) for v in ("0.16", "0.19", None))
    assert (old.gpu_memory_utilization, v019.gpu_memory_utilization, new.gpu_memory_utilization) == (0.9, 0.9, 0.92)
    assert old.non_torch_bytes == 13 * GiB // 100 and v019.non_torch_bytes == 25 * GiB // 100
    assert old.cuda_graph_bytes == 0 == v019.cuda_graph_bytes and new.cuda_graph_bytes > 0
    assert old.activation_bytes > v019.activation_bytes  # the pre-0.17 sampler peak
    # an explicit override still wins over the version
    assert plan("meta-llama/Llama-3.1-8B", engine_version="0.19", cuda_graph_bytes=GiB, **kw).cuda_graph_bytes == GiB


def test_vllm_v0_profile_grows_with_max_model_len():
    """vllm#10517 (V0, Llama-3.1-8B-Instruct on an RTX 3090, util 0.9): the torch peak is 2.07 GiB at
    max_model_len 20,000 and 2.99 GiB at 29,000 (chunked prefill off: the profile holds a whole
    max_model_len prompt), so the KV budget falls from 3.81 to 2.89 GiB.
    https://github.com/vllm-project/vllm/issues/10517"""
    kw = dict(gpu_memory="23.58GiB", engine="vllm@0.6.4", non_torch_bytes=35 * GiB // 100, weights_dtype="bf16")
    p20, p29 = (plan("meta-llama/Llama-3.1-8B", max_model_len=n, **kw) for n in (20000, 29000))
    assert abs(p20.activation_bytes / GiB - 2.07) < 0.05 and abs(p29.activation_bytes / GiB - 2.99) < 0.05
    assert abs(p20.kv_budget_bytes / GiB - 3.81) < 0.1 and abs(p29.kv_budget_bytes / GiB - 2.89) < 0.1
    assert any("V0 engine" in n for n in p20.notes)
    v1 = plan("meta-llama/Llama-3.1-8B", max_model_len=29000, **{**kw, "engine": "vllm@0.10"})
    assert v1.activation_bytes < p29.activation_bytes  # V1 profiles max_num_batched_tokens, not the length
    assert plan("meta-llama/Llama-3.1-8B", max_model_len=29000, vllm_use_v1=False,
                **{**kw, "engine": "vllm@0.10"}).activation_bytes == p29.activation_bytes
    with pytest.raises(InvalidInputError):
        plan("meta-llama/Llama-3.1-8B", max_model_len=29000, vllm_use_v1=False, **{**kw, "engine": "vllm@0.11"})


def test_vllm_kv_tokens_rule_by_version_on_a_hybrid_model():
    """Before 0.20.2 the "GPU KV cache size" line prints blocks // groups × block size; from 0.20.2
    int(concurrency × max_model_len) (vllm#40691: the two disagree on hybrid models such as Qwen3.5)."""
    kw = dict(kv_memory="20GiB", max_model_len=32768)
    old = kvplan.capacity("Qwen/Qwen3.5-9B", engine_version="0.19", **kw)
    new = kvplan.capacity("Qwen/Qwen3.5-9B", engine_version="0.20.2", **kw)
    assert old.num_blocks == new.num_blocks and old.max_concurrency == new.max_concurrency
    assert new.kv_tokens == int(new.max_concurrency * 32768) != old.kv_tokens
    explicit = kvplan.capacity("Qwen/Qwen3.5-9B", engine_version="0.19", kv_tokens_rule="concurrency", **kw)
    assert explicit.kv_tokens == new.kv_tokens  # an explicit option still wins


# ---- llama.cpp and ik_llama.cpp: cache layouts by build (public logs, URL beside each row) ----------
# (source, model, engine, context, kv dtype, extra options, logged K MiB, logged V MiB)
LLAMA_CPP_VERSIONS = [
    # mainline build 4905 (Mar 2025), before the MLA rework: per-head K 128×192, V 128×128, 61 layers
    ("https://github.com/ikawrakow/ik_llama.cpp/issues/285", "deepseek-ai/DeepSeek-R1", "llama.cpp@b4905", 2048,
     "fp16", {}, 5856.0, 3904.0),
    # ik_llama.cpp -mla 0 (Mar 2025): the same per-head layout, 512 cells
    ("https://github.com/ikawrakow/ik_llama.cpp/discussions/286", "deepseek-ai/DeepSeek-V3", "ik_llama.cpp", 512,
     "fp16", {"mla": 0}, 1464.0, 976.0),
    # ik_llama.cpp -mla 3: c^KV only (576 per token per layer), kv^T not used
    ("https://github.com/ikawrakow/ik_llama.cpp/discussions/258", "deepseek-ai/DeepSeek-V3", "ik_llama.cpp", 32768,
     "fp16", {}, 2196.0, None),
    # ik_llama.cpp has no iSWA cache: Gemma-3-27B caches all 62 layers at n_ctx (16 KV heads × 128)
    ("https://github.com/ikawrakow/ik_llama.cpp/issues/539", "google/gemma-3-27b-it", "ik_llama.cpp", 131072,
     "fp16", {}, 31744.0, 31744.0),
    ("https://github.com/ikawrakow/ik_llama.cpp/discussions/334", "google/gemma-3-27b-it", "ik_llama.cpp", 32768,
     "fp16", {}, 7936.0, 7936.0),
]


@pytest.mark.parametrize("source,model,engine,ctx,dtype,opts,k_mib,v_mib", LLAMA_CPP_VERSIONS,
                         ids=[r[0].rsplit("/", 2)[-2] + r[0].rsplit("/", 1)[-1] for r in LLAMA_CPP_VERSIONS])
def test_llamacpp_layout_by_build(source, model, engine, ctx, dtype, opts, k_mib, v_mib):
    est = kvplan.kv_cache(model, context_len=ctx, engine=engine, kv_dtype=dtype, parallel=1, **opts)
    if v_mib is None:  # a latent-only cache: all of it is the c^KV line
        assert est.kv_bytes == k_mib * MiB and est.breakdown[0].kind == "mla", source
    else:
        assert (est.k_bytes, est.v_bytes) == (k_mib * MiB, v_mib * MiB), source


def test_llamacpp_rules_switch_at_their_builds():
    gemma = dict(context_len=32768, parallel=1)
    before, after = (kvplan.kv_cache("google/gemma-3-27b-it", engine=f"llama.cpp@{b}", **gemma) for b in ("b5439", "b5440"))
    assert before.kv_bytes > 4 * after.kv_bytes  # 52 of 62 layers keep window + ubatch cells from PR #13194 on
    ds = dict(context_len=4096, parallel=1)
    per_head, with_v, latent = (kvplan.kv_cache("deepseek-ai/DeepSeek-R1", engine=f"llama.cpp@{b}", **ds)
                                for b in ("b5144", "b5145", "b7830"))
    assert per_head.kv_bytes == 61 * 4096 * 128 * (192 + 128) * 2
    assert with_v.kv_bytes == 61 * 4096 * (576 + 512) * 2 and latent.kv_bytes == 61 * 4096 * 576 * 2
    with pytest.raises(InvalidInputError):
        kvplan.kv_cache("deepseek-ai/DeepSeek-R1", engine="ik_llama.cpp", mla=4, **ds)


# ---- TensorRT-LLM 1.1: no sliding-window saving unless max_attention_window is set ---------------

def test_trtllm_sizes_sliding_layers_at_full_length_unless_windows_are_set():
    """TRT-LLM 1.1.0rc3 on gpt-oss-120b logs "kv size is 73728" bytes per token: all 36 layers × 8 KV
    heads × 64 × 2 × 2 B (tests/golden/engine_logs.json trtllm-gpt-oss-120b-dgx-spark-pytorch)."""
    full = kvplan.kv_cache("openai/gpt-oss-120b", context_len=8192, engine="trtllm@1.1")
    assert full.kv_bytes == 73728 * 8192
    windows = kvplan.kv_cache("openai/gpt-oss-120b", context_len=8192, engine="trtllm@1.1", max_attention_window=True)
    assert windows.kv_bytes < full.kv_bytes


def test_vllm_019_mla_block_16_matches_deepseek_v2_lite_log():
    """vLLM v0.19.0 picks FLASH_ATTN_MLA on H100 (16-token blocks): DeepSeek-V2-Lite-Chat logs 43.61 GiB
    available, "GPU KV cache size: 1,505,552 tokens" and "Maximum concurrency for 8,192 tokens per
    request: 183.78x" (94,097 blocks of 16). FlashMLA's 64-token blocks (0.8-0.11.0) would not.
    https://github.com/llm-d-incubation/llm-d-planner/blob/d3121e059da88662db39a926a3ead964be97359b/accuracy/results/v0.19.0/logs/deepseek-ai-deepseek-v2---h100-80gb--tp1pp1dp1--8192.log"""
    from pathlib import Path

    cfg = Path(__file__).parent / "golden" / "configs" / "deepseek-ai--DeepSeek-V2-Lite" / "config.json"
    kw = dict(max_model_len=8192, engine="vllm@0.19.0")
    lo = kvplan.capacity(str(cfg), kv_memory=int(43.605 * GiB), **kw)
    hi = kvplan.capacity(str(cfg), kv_memory=int(43.615 * GiB), **kw)
    assert lo.block_size == 16 and lo.num_blocks <= 94097 <= hi.num_blocks
    exact = kvplan.capacity(str(cfg), kv_memory=94097 * lo.bytes_per_block, **kw)
    assert exact.kv_tokens == 1505552 and round(exact.max_concurrency, 2) == 183.78
    old = kvplan.capacity(str(cfg), kv_memory=94097 * lo.bytes_per_block, max_model_len=8192, engine="vllm@0.10")
    assert old.block_size == 64 and old.kv_tokens != 1505552


def test_readme_version_table_is_what_kvplan_computes():
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import version_table
    finally:
        sys.path.pop(0)
    assert version_table.markdown() in (root / "README.md").read_text()


def test_vllm_max_model_len_above_the_model_is_refused_like_vllm():
    """llm-d v0.19: phi-2 at max_model_len 8,192 (its config says 2,048) fails with "User-specified
    max_model_len (8192) is greater than the derived max_model_len ... set the env var
    VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"."""
    with pytest.raises(InvalidInputError) as err:
        plan("microsoft/phi-2", gpu="H100", max_model_len=8192)
    assert err.value.field == "max_model_len" and "allow_long_max_model_len" in str(err.value)
    assert plan("microsoft/phi-2", gpu="H100", max_model_len=8192, allow_long_max_model_len=True).fits


def test_gpt_oss_sampler_warmup_warning():
    """llm-d v0.19 gpt-oss-20b: util 0.95 sizes the cache, then "CUDA out of memory occurred when warming
    up sampler with 1024 dummy requests" (TP=1 and TP=2); util 0.90 at TP=2 starts."""
    def warned(**kw):
        p = plan("openai/gpt-oss-20b", gpu="H100", max_model_len=8192, engine_version="0.19.0", **kw)
        return any(n.startswith("warning:") and "sampler" in n for n in p.notes)
    assert warned(gpu_memory_utilization=0.95) and warned(gpu_memory_utilization=0.95, tp=2)
    assert not warned(gpu_memory_utilization=0.9, tp=2)
    assert not any(n.startswith("warning:") for n in plan("google/gemma-2-9b", gpu="H100", max_model_len=8192,
                                                         gpu_memory_utilization=0.95).notes)


# ---- SGLang: each version-gated rule, switched at its release (sources in kvplan/engines/sglang.py) ----

def test_sglang_table_lists_rules_with_sources():
    sg = engine_versions("sglang")
    assert sg["latest"] == "0.5.9" and all(r["source"] for r in sg["rules"])
    since = {(r["key"], r["since"]) for r in sg["rules"]}
    assert {("mem_fraction_rule", "0.4.8"), ("mem_fraction_rule", "0.5.3"), ("indexer_in_budget", "0.5.4"),
            ("hybrid_swa_models", "0.5.8"), ("mamba_pool_ratio_gdn", "0.5.4")} <= since
    assert any("pull/11309" in r["source"] for r in sg["rules"])


@pytest.mark.parametrize("version,h100,h200,h200_tp8", [
    ("0.4.5", 0.88, 0.88, 0.81),       # the TP table, whatever the GPU
    ("0.4.6", 0.88, 0.9070, 0.9070),   # > 80 GiB: (mem - 13 GiB) / mem
    ("0.4.7", 0.88, 0.8712, 0.8712),   # > 96 GiB: min(f + 48 GiB·(1-f)/mem, (mem - 18 GiB)/mem)
    ("0.4.8", 0.874, 0.911, 0.886),    # PR #7054: (9.5 + p/2) / (12 + p/2) GiB reserved
    ("0.5.3", 0.834, 0.906, 0.896),    # PR #10975: chunk·1.5 + graphs·2 + TP/8 GiB, at least 10 GiB
])
def test_sglang_default_mem_fraction_by_version(version, h100, h200, h200_tp8):
    from kvplan.gpus import get_gpu
    from kvplan.planner import sglang_mem_fraction_static as frac

    h100_b, h200_b = get_gpu("H100").memory_bytes, get_gpu("H200").memory_bytes
    assert frac(h100_b, engine_version=version) == pytest.approx(h100, abs=5e-5)
    assert frac(h200_b, engine_version=version) == pytest.approx(h200, abs=5e-5)
    assert frac(h200_b, tp=8, engine_version=version) == pytest.approx(h200_tp8, abs=5e-5)
    p = plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, engine=f"sglang@{version}")
    assert p.gpu_memory_utilization == pytest.approx(h100, abs=5e-5)


def test_sglang_reserve_terms_and_small_gpu_graph_batch():
    from kvplan.planner import sglang_mem_fraction_static as frac

    h100 = 81559 * MiB  # nvidia-smi's memory.total, which SGLang reads
    assert frac(h100) == 0.835  # ENGINE_KV_SPEC B.3
    assert frac(h100, speculative="eagle3") == round((81559 - 13440 - 2048) / 81559, 3)
    assert frac(h100, speculative="draft_model") == round((81559 - 13440 - 6144) / 81559, 3)
    assert frac(h100, speculative="ngram") == 0.835
    assert frac(h100, tp=8, dp_attention=8) == round((81559 - (512 + 12288 + 1024 + 1024 + 512 * 8 * 4.5)) / 81559, 3)
    assert frac(h100, engine_version="0.4.8", speculative="eagle") == round((81559 - 10240 - 2048) / 81559, 3)
    rtx = 24564 * MiB  # a 24 GB card: cuda_graph_max_bs 16 up to 0.5.4, 24 from 0.5.5
    assert frac(rtx, engine_version="0.5.4") == round((24564 - 512 - 3072 - 32 - 128) / 24564, 3)
    assert frac(rtx, engine_version="0.5.5") == round((24564 - 512 - 3072 - 48 - 128) / 24564, 3)


def test_sglang_multimodal_factor_by_version():
    from kvplan.planner import sglang_vlm_factor

    assert sglang_vlm_factor((27, 1152), "0.4.4") == 0.95
    assert sglang_vlm_factor((27, 1152), "0.4.9") == 0.90
    assert sglang_vlm_factor((27, 1152), "0.4.10") == pytest.approx(0.95 * (1 - 0.1 * (27 * 1152 ** 2 / (24 * 1024 ** 2) - 1)))
    assert sglang_vlm_factor((24, 1024)) == 0.95 and sglang_vlm_factor((80, 4096)) == 0.95 * 0.8
    kw = dict(gpu="H100", max_model_len=8192, engine="sglang@0.5.9")
    text, vlm = plan("google/gemma-3-1b-it", **kw), plan("google/gemma-3-27b-it", **kw)
    assert text.gpu_memory_utilization == 0.834
    assert vlm.gpu_memory_utilization == pytest.approx(0.834 * sglang_vlm_factor((27, 1152)))
    # up to 0.4.8 ModelRunner scaled a given --mem-fraction-static too; from 0.4.9 only the default
    given = dict(gpu="H100", max_model_len=8192, mem_fraction_static=0.8)
    assert plan("google/gemma-3-27b-it", engine="sglang@0.4.8", **given).gpu_memory_utilization == pytest.approx(0.72)
    assert plan("google/gemma-3-27b-it", engine="sglang@0.4.9", **given).gpu_memory_utilization == 0.8


@pytest.mark.parametrize("model,version,windowed", [
    ("google/gemma-3-27b-it", "0.4.9", False), ("google/gemma-3-27b-it", "0.4.10", True),
    ("google/gemma-3-27b-it", "0.5.1", False), ("google/gemma-3-27b-it", "0.5.9", False),
    ("openai/gpt-oss-120b", "0.5.7", False), ("openai/gpt-oss-120b", "0.5.8", True),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "0.5.7", False),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "0.5.8", True),
])
def test_sglang_hybrid_swa_pool_by_version(model, version, windowed):
    """Window layers keep only their window in the hybrid SWA pool: Gemma 2/3 in 0.4.10 only (sglang
    PR #7367, then disabled), gpt-oss and Llama 4 from 0.5.8 (PRs #17261, #16399)."""
    est = kvplan.kv_cache(model, context_len=131072, engine=f"sglang@{version}")
    tokens = {r.kind: r.tokens_per_seq for r in est.breakdown}
    assert (min(tokens.values()) < 131072) == windowed, tokens
    forced = kvplan.kv_cache(model, context_len=131072, engine=f"sglang@{version}", hybrid_swa_memory=not windowed)
    assert forced.kv_bytes != est.kv_bytes  # the explicit switch still wins


def test_sglang_mamba_pool_by_slots_then_by_ratio():
    """Qwen3-Next (GDN) before 0.5.4 and Nemotron-H (Mamba2) before 0.5.7 ran with the radix cache off
    and max_running_requests (else 512) Mamba slots; later releases give the Mamba pool r/(1+r) of the
    budget (sglang PRs #11214, #13584)."""
    kw = dict(kv_memory="40GiB", max_model_len=32768)
    for model, before, since in (("Qwen/Qwen3-Next-80B-A3B-Thinking", "0.5.3", "0.5.4"),
                                 ("nvidia/Nemotron-H-56B-Base-8K", "0.5.6", "0.5.7")):
        old = kvplan.capacity(model, engine=f"sglang@{before}", **kw)
        new = kvplan.capacity(model, engine=f"sglang@{since}", **kw)
        assert any("512 request slots" in n for n in old.notes), old.notes
        assert any("0.9 : 1" in n for n in new.notes) and old.kv_tokens != new.kv_tokens
        given = kvplan.capacity(model, engine=f"sglang@{since}", max_mamba_cache_size=64, **kw)
        assert any("64 request slots" in n for n in given.notes)
    with pytest.raises(InvalidInputError):
        kvplan.kv_cache("openai/gpt-oss-20b", context_len=1024, engine="sglang", hybrid_swa_models="gpt_oss")
