"""Print the README's engine-version table: for each version-gated rule, the same model and settings
sized at the version just before and at the version where the rule changes, with the source.

    PYTHONPATH=. python benchmarks/version_table.py        # markdown table on stdout

Every number is computed by kvplan at run time (nothing typed in by hand); the sources come from the
engine profiles' version tables (`kvplan.engine_versions()`).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kvplan  # noqa: E402
from kvplan.planner import plan  # noqa: E402
from kvplan.units import GiB  # noqa: E402


def _rule(engine: str, key: str, since: str) -> dict:
    return next(r for r in kvplan.engine_versions(engine)["rules"] if r["key"] == key and r["since"] == since)


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def rows():
    h100 = dict(gpu="H100", max_model_len=8192, gpu_memory_utilization=0.9)
    out = []

    def vllm_plan(key, since, before, model, what, field, fmt=_gib, **kw):
        a = plan(model, engine_version=before, **{**h100, **kw})
        b = plan(model, engine_version=since, **{**h100, **kw})
        out.append(("vLLM", f"{before} → {since}", key, f"{model}, {what}", fmt(getattr(a, field)),
                    fmt(getattr(b, field)), _rule("vllm", key, since)["source"]))

    vllm_plan("engine_core", "0.8.0", "0.7.3", "meta-llama/Llama-3.1-8B", "RTX 3090 (23.58 GiB), 29,000 tokens: "
              "activation peak", "activation_bytes", gpu=None, gpu_memory="23.58GiB", max_model_len=29000)
    vllm_plan("activation_profile", "0.17.0", "0.16.0", "meta-llama/Llama-3.1-8B", "H100, 8k: activation peak",
              "activation_bytes")
    vllm_plan("non_torch_tp1", "0.18.0", "0.17.0", "meta-llama/Llama-3.1-8B", "H100, 8k: non-torch memory",
              "non_torch_bytes")
    vllm_plan("non_torch_tp", "0.18.0", "0.17.0", "meta-llama/Llama-3.1-70B", "H100 TP=2, 8k: non-torch per GPU",
              "non_torch_bytes", tp=2)
    kw = dict(kv_memory="20GiB", max_model_len=32768)
    a, b = (kvplan.capacity("Qwen/Qwen3.5-9B", engine_version=v, **kw) for v in ("0.20.1", "0.20.2"))
    out.append(("vLLM", "0.20.1 → 0.20.2", "kv_tokens_rule", "Qwen/Qwen3.5-9B, 20 GiB KV, 32k: \"GPU KV cache "
                "size\" tokens", f"{a.kv_tokens:,}", f"{b.kv_tokens:,}", _rule("vllm", "kv_tokens_rule", "0.20.2")["source"]))
    vllm_plan("cuda_graphs_in_budget", "0.21.0", "0.20.2", "meta-llama/Llama-3.1-8B", "H100, 8k, util 0.9: KV budget",
              "kv_budget_bytes")
    a, b = (plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192, engine_version=v) for v in ("0.20.2", "0.21.0"))
    out.append(("vLLM", "0.20.2 → 0.21.0", "gpu_memory_utilization", "meta-llama/Llama-3.1-8B, H100: default "
                "utilization", str(a.gpu_memory_utilization), str(b.gpu_memory_utilization),
                _rule("vllm", "gpu_memory_utilization", "0.21.0")["source"]))
    for before, since in (("0.7.3", "0.8.0"), ("0.11.0", "0.11.1")):
        a, b = (kvplan.kv_cache("deepseek-ai/DeepSeek-V3", context_len=1, engine_version=v) for v in (before, since))
        out.append(("vLLM", f"{before} → {since}", "mla_block_size", "deepseek-ai/DeepSeek-V3, 1 token: KV (one "
                    "block per layer)", f"{a.kv_bytes:,} B ({a.block_size}-token blocks)",
                    f"{b.kv_bytes:,} B ({b.block_size}-token blocks)", _rule("vllm", "mla_block_size", since)["source"]))
    a, b = (plan("google/gemma-3-27b-it", gpu="H100", max_model_len=1048576, allow_long_max_model_len=True,
                 engine_version=v) for v in ("0.25.0", "0.26.0"))
    need = [next((n for n in p.notes if "is needed" in n), "") for p in (a, b)]
    out.append(("vLLM", "0.25.0 → 0.26.0", "needed_includes_padding", "google/gemma-3-27b-it, H100, 1,048,576 "
                "tokens (8 padding slots): the \"KV cache is needed\" figure", need[0].split(" reports ")[-1], need[1].split(" reports ")[-1],
                _rule("vllm", "needed_includes_padding", "0.26.0")["source"]))

    def lcpp(key, before, since, model, what, **kw):
        a, b = (kvplan.kv_cache(model, engine=f"llama.cpp@{v}", parallel=1, **kw) for v in (before, since))
        out.append(("llama.cpp", f"{before} → {since}", key, f"{model}, {what}", _gib(a.kv_bytes), _gib(b.kv_bytes),
                    _rule("llama.cpp", key, since)["source"]))

    lcpp("mla_per_head", "b5144", "b5145", "deepseek-ai/DeepSeek-R1", "-c 2048, f16: KV cache", context_len=2048)
    lcpp("iswa", "b5439", "b5440", "google/gemma-3-27b-it", "-c 32768, f16: KV cache", context_len=32768)
    lcpp("mla_v_cache", "b7829", "b7830", "deepseek-ai/DeepSeek-R1", "-c 32768, f16: KV cache", context_len=32768)
    a, b = (kvplan.kv_cache("google/gemma-3-27b-it", context_len=32768, engine=e, parallel=1)
            for e in ("llama.cpp", "ik_llama.cpp"))
    out.append(("llama.cpp", "mainline → ik", "iswa (fork)", "google/gemma-3-27b-it, -c 32768, f16: KV cache",
                _gib(a.kv_bytes), _gib(b.kv_bytes), kvplan.engine_versions("llama.cpp")["forks"][0]["source"]))
    def sgl_plan(key, before, since, model, what, field, fmt, **kw):
        a, b = (plan(model, engine=f"sglang@{v}", **{**h100, "gpu_memory_utilization": None, **kw})
                for v in (before, since))
        out.append(("SGLang", f"{before} → {since}", key, f"{model}, {what}", fmt(getattr(a, field)),
                    fmt(getattr(b, field)), _rule("sglang", key, since)["source"]))

    for before, since in (("0.4.5", "0.4.6"), ("0.4.6", "0.4.7"), ("0.4.7", "0.4.8"), ("0.5.2", "0.5.3")):
        sgl_plan("mem_fraction_rule", before, since, "meta-llama/Llama-3.1-8B", "H200, 8k: default "
                 "mem_fraction_static", "gpu_memory_utilization", lambda f: f"{f:.4g}", gpu="H200")
    sgl_plan("small_gpu_graph_bs", "0.5.4", "0.5.5", "meta-llama/Llama-3.1-8B", "L4, 8k: default "
             "mem_fraction_static", "gpu_memory_utilization", lambda f: f"{f:.4g}", gpu="L4")
    for before, since in (("0.4.4", "0.4.5"), ("0.4.9", "0.4.10")):
        sgl_plan("vlm_mem_fraction", before, since, "google/gemma-3-27b-it", "H100, 8k: default "
                 "mem_fraction_static (multimodal)", "gpu_memory_utilization", lambda f: f"{f:.4g}")
    for key, before, since, model in (("hybrid_swa_models", "0.4.9", "0.4.10", "google/gemma-3-27b-it"),
                                      ("hybrid_swa_models", "0.4.10", "0.5.0", "google/gemma-3-27b-it"),
                                      ("hybrid_swa_models", "0.5.7", "0.5.8", "openai/gpt-oss-120b")):
        a, b = (kvplan.kv_cache(model, context_len=131072, engine=f"sglang@{v}") for v in (before, since))
        out.append(("SGLang", f"{before} → {since}", key, f"{model}, 131,072 tokens: KV cache", _gib(a.kv_bytes),
                    _gib(b.kv_bytes), _rule("sglang", key, since)["source"]))
    kw = dict(kv_memory="60GiB", max_model_len=32768, kv_dtype="fp8", tp=8, dp_attention=8)
    a, b = (kvplan.capacity("deepseek-ai/DeepSeek-V3.2", engine=f"sglang@{v}", **kw) for v in ("0.5.3", "0.5.4"))
    out.append(("SGLang", "0.5.3 → 0.5.4", "indexer_in_budget", "deepseek-ai/DeepSeek-V3.2, 60 GiB budget, fp8: "
                "pool tokens", f"{a.kv_tokens:,}", f"{b.kv_tokens:,}", _rule("sglang", "indexer_in_budget", "0.5.4")["source"]))
    for key, before, since, model in (("mamba_pool_ratio_gdn", "0.5.3", "0.5.4", "Qwen/Qwen3-Next-80B-A3B-Thinking"),
                                      ("mamba_pool_ratio_mamba2", "0.5.6", "0.5.7", "ibm-granite/granite-4.0-h-1b")):
        a, b = (kvplan.capacity(model, kv_memory="40GiB", max_model_len=32768, engine=f"sglang@{v}")
                for v in (before, since))
        out.append(("SGLang", f"{before} → {since}", key, f"{model}, 40 GiB budget, 32k: KV tokens",
                    f"{a.kv_tokens:,}", f"{b.kv_tokens:,}", _rule("sglang", key, since)["source"]))
    a, b = (kvplan.kv_cache("openai/gpt-oss-120b", context_len=131072, engine="trtllm@1.1", max_attention_window=w)
            for w in (False, True))
    out.append(("TensorRT-LLM", "1.1 (max_attention_window unset → set)", "max_attention_window",
                "openai/gpt-oss-120b, 131,072 tokens: KV cache", _gib(a.kv_bytes), _gib(b.kv_bytes),
                "1.1.0rc3 log 'kv size is 73728' (tests/golden/engine_logs.json trtllm-gpt-oss-120b-dgx-spark-pytorch)"))
    return out


def markdown() -> str:
    lines = ["| engine | versions | rule | same model and setting | before | after | source |",
             "|---|---|---|---|---|---|---|"]
    for r in rows():
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
