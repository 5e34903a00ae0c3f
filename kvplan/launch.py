"""Launch commands: one small function per engine turning a deployment into a command line.

The numbers in each command are the ones kvplan assumed when it sized the deployment (parallel
sizes, max_model_len, the memory fraction, the concurrency cap, the KV dtype), so what you launch is
what was planned. A command starts one engine instance (tp × pp GPUs); `replicas` instances go
behind a load balancer. Flags, by engine (checked against each engine's CLI reference):

* vLLM (`vllm serve`): --tensor-parallel-size, --pipeline-parallel-size, --max-model-len,
  --gpu-memory-utilization, --max-num-seqs, --kv-cache-dtype, --quantization fp8 (online fp8 weights).
* SGLang (`python -m sglang.launch_server`): --tp-size, --pp-size, --context-length,
  --mem-fraction-static, --max-running-requests, --kv-cache-dtype (fp8_e4m3), --quantization fp8.
* llama.cpp (`llama-server`): -c is the context of all slots together (per-slot × -np), -np slots,
  -ctk/-ctv cache types (a quantized V cache needs flash attention: -fa on), -ngl 999 offloads every
  layer, --split-mode layer spreads layers over several GPUs. An explicit -np leaves llama-server's
  cache split into one stream of -c / -np cells per slot (only the automatic -np turns on
  kv_unified: tools/server/server.cpp), which is what kvplan sizes: the slots × the cache of one
  sequence. A deployment sized with kv_unified gets --kv-unified (one shared stream, never larger).
* TensorRT-LLM (`trtllm-serve`): --tp_size, --pp_size, --max_batch_size, --max_seq_len,
  --kv_cache_free_gpu_memory_fraction; an fp8 KV cache is set in an --extra_llm_api_options YAML.

Engine options the deployment was sized with become flags too (`option_flags`): vLLM --block-size,
--enable-lora --max-loras --max-lora-rank, --limit-mm-per-prompt (JSON); SGLang --page-size,
--enable-dp-attention --dp-size, --enable-lora --max-loras-per-batch --max-lora-rank; llama.cpp -ub,
--swa-full, --kv-unified. Options with no flag here (speculative decoding, whose flags name a draft checkpoint;
TensorRT-LLM's tokens_per_block, a YAML key) are listed by `unflagged_options`.
"""

from __future__ import annotations

import shlex

__all__ = ["launch_command", "option_flags", "unflagged_options", "unflagged_note", "vllm", "sglang", "llamacpp",
           "trtllm"]


def _q(text: str) -> str:
    """Shell-quote anything that came from a user (model ids, paths)."""
    return shlex.quote(str(text))


def _is_fp8(dtype: str) -> bool:
    return dtype.startswith("fp8")


def vllm(model: str, *, tp: int, pp: int, max_model_len: int, gpu_memory_utilization: float | None,
         max_num_seqs: int, kv_dtype: str, weights_dtype: str, model_dtype: str = "") -> str:
    parts = ["vllm serve", _q(model), f"--tensor-parallel-size {tp}"]
    if pp > 1:
        parts.append(f"--pipeline-parallel-size {pp}")
    parts.append(f"--max-model-len {max_model_len}")
    if gpu_memory_utilization is not None:
        parts.append(f"--gpu-memory-utilization {gpu_memory_utilization:g}")
    parts.append(f"--max-num-seqs {max_num_seqs}")
    if _is_fp8(kv_dtype):
        parts.append("--kv-cache-dtype fp8")
    elif kv_dtype == "nvfp4":
        parts.append("--kv-cache-dtype nvfp4")
    if _is_fp8(weights_dtype) and not _is_fp8(model_dtype):
        parts.append("--quantization fp8")
    return " ".join(parts)


def sglang(model: str, *, tp: int, pp: int, max_model_len: int, mem_fraction_static: float | None,
           max_running_requests: int, kv_dtype: str, weights_dtype: str, model_dtype: str = "") -> str:
    parts = ["python -m sglang.launch_server", f"--model-path {_q(model)}", f"--tp-size {tp}"]
    if pp > 1:
        parts.append(f"--pp-size {pp}")
    parts.append(f"--context-length {max_model_len}")
    if mem_fraction_static is not None:
        parts.append(f"--mem-fraction-static {mem_fraction_static:g}")
    parts.append(f"--max-running-requests {max_running_requests}")
    if _is_fp8(kv_dtype):
        parts.append(f"--kv-cache-dtype {'fp8_e5m2' if kv_dtype == 'fp8_e5m2' else 'fp8_e4m3'}")
    if _is_fp8(weights_dtype) and not _is_fp8(model_dtype):
        parts.append("--quantization fp8")
    return " ".join(parts)


_LLAMA_TYPES = {"fp16": "f16", "bf16": "bf16", "fp32": "f32"}


def llamacpp(model: str, *, pp: int, max_model_len: int, slots: int, kv_dtype: str) -> str:
    gguf = model if str(model).lower().endswith(".gguf") else f"{str(model).rsplit('/', 1)[-1]}.gguf"
    cache = _LLAMA_TYPES.get(kv_dtype, kv_dtype)
    parts = ["llama-server", f"-m {_q(gguf)}", f"-c {max_model_len * slots}", f"-np {slots}", "-ngl 999",
             f"-ctk {cache}", f"-ctv {cache}"]
    if cache not in ("f16", "bf16", "f32"):
        parts.append("-fa on")  # a quantized V cache needs flash attention
    if pp > 1:
        parts.append(f"--split-mode layer --tensor-split {','.join(['1'] * pp)}")
    return " ".join(parts)


def trtllm(model: str, *, tp: int, pp: int, max_model_len: int, free_gpu_memory_fraction: float | None,
           max_batch_size: int, kv_dtype: str) -> str:
    parts = ["trtllm-serve", _q(model), f"--tp_size {tp}", f"--pp_size {pp}", f"--max_batch_size {max_batch_size}",
             f"--max_seq_len {max_model_len}"]
    if free_gpu_memory_fraction is not None:
        parts.append(f"--kv_cache_free_gpu_memory_fraction {free_gpu_memory_fraction:g}")
    cmd = " ".join(parts)
    if _is_fp8(kv_dtype) or kv_dtype in ("int8", "nvfp4"):
        dtype = "fp8" if _is_fp8(kv_dtype) else kv_dtype
        return (f"printf 'kv_cache_config:\\n  dtype: {dtype}\\n' > kv_cache.yaml && {cmd} "
                "--extra_llm_api_options kv_cache.yaml")
    return cmd


def launch_command(engine: str, model: str, *, tp: int, pp: int, max_model_len: int, max_num_seqs: int,
                   kv_dtype: str, weights_dtype: str, memory_fraction: float | None,
                   model_dtype: str = "") -> str:
    """The command that starts one instance of this deployment ("" for profiles that are not servers:
    transformers, naive)."""
    if engine == "vllm":
        return vllm(model, tp=tp, pp=pp, max_model_len=max_model_len, gpu_memory_utilization=memory_fraction,
                    max_num_seqs=max_num_seqs, kv_dtype=kv_dtype, weights_dtype=weights_dtype,
                    model_dtype=model_dtype)
    if engine == "sglang":
        return sglang(model, tp=tp, pp=pp, max_model_len=max_model_len, mem_fraction_static=memory_fraction,
                      max_running_requests=max_num_seqs, kv_dtype=kv_dtype, weights_dtype=weights_dtype,
                      model_dtype=model_dtype)
    if engine == "llama.cpp":
        return llamacpp(model, pp=pp, max_model_len=max_model_len, slots=max_num_seqs, kv_dtype=kv_dtype)
    if engine == "trtllm":
        return trtllm(model, tp=tp, pp=pp, max_model_len=max_model_len, free_gpu_memory_fraction=memory_fraction,
                      max_batch_size=max_num_seqs, kv_dtype=kv_dtype)
    return ""


def _mm_json(value) -> str | None:
    from kvplan.pool import parse_mm_limits

    limits = parse_mm_limits(value)
    if "*" in limits:  # one count for every modality: vLLM's JSON form names each modality
        return None
    return "{" + ",".join(f'"{k}":{v}' for k, v in limits.items()) + "}"


def _lora_flags(o: dict, slots_flag: str) -> list[str]:
    """vLLM's and SGLang's LoRA flags (they differ in the slots flag), taking the options from `o`."""
    if "max_loras" not in o and "max_lora_rank" not in o:
        return []
    flags = ["--enable-lora"]
    if "max_loras" in o:
        flags.append(f"{slots_flag} {int(o.pop('max_loras'))}")
    if "max_lora_rank" in o:
        flags.append(f"--max-lora-rank {int(o.pop('max_lora_rank'))}")
    return flags


def _flags(engine: str, options: dict) -> tuple[list[str], list[str]]:
    """(flags, options that have no flag here) for the engine options a deployment was sized with."""
    flags: list[str] = []
    left: list[str] = []
    o = {k: v for k, v in options.items() if v is not None}
    if engine == "vllm":
        if "block_size" in o:
            flags.append(f"--block-size {int(o.pop('block_size'))}")
        flags += _lora_flags(o, "--max-loras")
        if "limit_mm_per_prompt" in o:
            js = _mm_json(o["limit_mm_per_prompt"])
            if js is not None:
                o.pop("limit_mm_per_prompt")
                flags.append(f"--limit-mm-per-prompt {_q(js)}")
        o.pop("max_num_seqs", None)  # the command's --max-num-seqs is the planned concurrency, within it
    elif engine == "sglang":
        if "block_size" in o:
            flags.append(f"--page-size {int(o.pop('block_size'))}")
        dp = o.pop("dp_attention", 1)
        if dp and int(dp) > 1:
            flags.append(f"--enable-dp-attention --dp-size {int(dp)}")
        flags += _lora_flags(o, "--max-loras-per-batch")
    elif engine == "llama.cpp":
        if "ubatch" in o:
            flags.append(f"-ub {int(o.pop('ubatch'))}")
        if o.pop("swa_full", False):
            flags.append("--swa-full")
        if o.pop("kv_unified", False):
            flags.append("--kv-unified")
    # Planner inputs that are not engine settings: the KV memory was measured from this same launch,
    # the version is the engine you install.
    for key in ("kv_memory", "engine_version", "gpu_memory_utilization"):
        o.pop(key, None)
    left = sorted(o)
    return flags, left


def option_flags(engine: str, options: dict) -> str:
    """The flags, in the engine's CLI, for the engine options a deployment was sized with ("" for none)."""
    return " ".join(_flags(engine, options)[0])


def unflagged_options(engine: str, options: dict) -> list[str]:
    """The options `option_flags` could not turn into flags (to be added by hand)."""
    return _flags(engine, options)[1]


_IN_WORDS = {"speculative": "speculative decoding", "num_speculative_tokens": "speculative decoding",
             "draft_model": "speculative decoding", "block_size": "tokens per block", "limit_mm_per_prompt":
             "multimodal items per prompt"}


def unflagged_note(engine: str, options: dict) -> str | None:
    """A note naming what the deployment was sized with but the command does not set, or None."""
    left = list(dict.fromkeys(_IN_WORDS.get(k, k.replace("_", " ")) for k in unflagged_options(engine, options)))
    if not left:
        return None
    return (f"sized with {', '.join(left)}, which the launch command does not set: add your engine's own "
            "flags for it")
