"""vLLM startup logs, V0 (worker.py "Memory profiling results", "# GPU blocks") and V1 (gpu_worker.py
"Available KV cache memory", kv_cache_utils.py "GPU KV cache size"), per rank.

Ranks are the line prefixes vLLM's multiprocess executors print: "(EngineCore pid=1)",
"(Worker_TP1 pid=2)", "(Worker_PP1 ...)", "(VllmWorker rank=3 pid=4)", "(VllmWorkerProcess pid=5)".
"""

from __future__ import annotations

import re

from kvplan.explain.logtext import (HEAD_CHARS, ParsedLog, classify_failure, exception_line, explain_failure, literal,
                                    num, pick_failure, require)

_RANK = re.compile(r"^\W{0,12}\(([A-Za-z_][A-Za-z0-9_]{0,40})(?: rank=(\d{1,5}))?(?: pid=\d{1,10})?[^)]{0,80}\)")
_VERSION = [re.compile(r"LLM engine \(v([0-9][0-9A-Za-z.+_-]{0,40})\)"),
            re.compile(r"\bversion ([0-9]+\.[0-9]+\.[0-9][0-9A-Za-z.+_-]{0,40})"),
            re.compile(r"vLLM API server version ([0-9][0-9A-Za-z.+_-]{0,40})")]
# non-default args: {'model': 'x', 'max_model_len': 8192, ...}: simple scalar values only.
_ARG = re.compile(r"'([a-z_]{1,40})': ('[^']{0,300}'|[-0-9.e]{1,20}|True|False|None)")
# "with config: model='x', ..., tensor_parallel_size=2, ..., kv_cache_dtype=fp8, ..."
_CFG = re.compile(r"\b([a-z_]{1,40})=('[^']{0,300}'|[A-Za-z0-9_.\-]{1,60})")
_KEEP = {"model", "model_tag", "max_model_len", "max_seq_len", "gpu_memory_utilization", "tensor_parallel_size",
         "pipeline_parallel_size", "data_parallel_size", "kv_cache_dtype", "block_size", "max_num_batched_tokens",
         "max_num_seqs", "dtype", "quantization", "enforce_eager", "enable_prefix_caching", "kv_cache_memory_bytes",
         "cpu_offload_gb", "max_cudagraph_capture_size", "swap_space", "enable_expert_parallel"}
_ALIASES = {"max_seq_len": "max_model_len", "model_tag": "model"}

# (quantity, pattern, unit or None = unit printed after the number)
_PATTERNS = [
    # V1
    ("weights_bytes", num(r"Model loading took {N} ?(GiB|GB)"), None),
    ("activation_bytes", num(r"torch peak memory increase: {N} ?(GiB)"), None),
    ("non_torch_bytes", num(r"non-torch forward increase memory: {N} ?(GiB)"), None),
    ("non_kv_bytes", num(r"Total non KV cache memory: {N} ?(GiB)"), None),
    ("kv_budget_bytes", num(r"Available KV cache memory: (-?){N} ?(GiB)"), "signed"),
    ("cuda_graph_bytes", num(r"Estimated CUDA graph memory: {N} ?(GiB) total"), None),
    ("cuda_graph_actual_bytes", num(r"Graph capturing finished in .{0,20} took {N} ?(GiB)"), None),
    ("requested_bytes", num(r"Requested memory: .{0,30}, {N} ?(GiB)"), None),
    ("requested_bytes", num(r"worker requested memory: {N} ?(GiB)"), None),
    ("total_memory_bytes", num(r"total_memory={N} ?(GiB)"), None),
    ("free_memory_bytes", num(r"Initial free memory: {N} ?(GiB)"), None),
    ("kv_tokens", num(r"GPU KV cache size: {N} tokens"), "tokens"),
    ("max_concurrency", num(r"Maximum concurrency for {N} tokens per request: {N}x"), "concurrency"),
    ("num_blocks", num(r"num_gpu_blocks is: {N}"), "blocks"),
    ("num_blocks", num(r"# (?:GPU|cuda) blocks: {N}"), "blocks"),
    # the refusal when one max_model_len request does not fit (V0 and V1)
    ("kv_needed_bytes", num(r"\({N} ?(GiB) KV cache is needed"), None),
    ("kv_budget_bytes", num(r"than the available KV cache memory \((-?){N} ?(GiB)\)"), "signed"),
    ("max_model_len_fits", num(r"estimated maximum model length is {N}"), "tokens"),
    ("kv_tokens", num(r"maximum number of tokens that can be stored in KV cache \({N}\)"), "tokens"),
    # V0
    ("weights_bytes", num(r"Loading model weights took {N} ?(GB|GiB)"), None),
    ("total_memory_bytes", num(r"total_gpu_memory[ =(]{1,8}{N} ?(GiB)"), None),
    ("weights_bytes", num(r"model weights take {N} ?(GiB)"), None),
    ("non_torch_bytes", num(r"non_torch_memory[ =takes]{1,8}{N} ?(GiB)"), None),
    ("activation_bytes", num(r"PyTorch activation peak memory(?: takes)? {1,8}{N} ?(GiB)"), None),
    ("kv_budget_bytes", num(r"(?:reserved for KV Cache is|available_kv_cache_memory|kv_cache_size=) {0,8}(-?){N} ?(GiB)"),
     "signed"),
]
_KEYS = ("Model loading took", "torch peak memory", "non-torch forward", "Total non KV", "Available KV cache",
         "Estimated CUDA graph", "Graph capturing finished", "Requested memory", "requested memory",
         "total_memory=", "Initial free memory", "GPU KV cache size", "Maximum concurrency", "num_gpu_blocks is",
         "blocks:", "Loading model weights took", "total_gpu_memory", "model weights take", "non_torch_memory",
         "activation peak memory", "reserved for KV Cache", "available_kv_cache_memory", "kv_cache_size=",
         "KV cache is needed", "estimated maximum model length", "stored in KV cache")
_ENGINE_LEVEL = {"kv_tokens", "max_concurrency", "num_blocks"}


def detect(lines: list[str]) -> bool:
    marks = ("vllm", "vLLM", "GPU KV cache size", "Available KV cache memory", "# GPU blocks",
             "Maximum concurrency for", "Loading model weights took", "Model loading took", "non-default args:",
             "(EngineCore", "gpu_worker.py", "LLM engine (v", "worker requested memory", "KV cache is needed")
    return any(m in line[:HEAD_CHARS] for line in lines[:5000] for m in marks) or any(
        ("GPU KV cache size" in h or "# GPU blocks" in h or "Available KV cache memory" in h)
        for h in (ln[:HEAD_CHARS] for ln in lines))


def parse(lines: list[str]) -> ParsedLog:
    p = ParsedLog("vllm", variant="V1")
    v0 = v1 = False
    excs: list[tuple[str, str]] = []
    for full in lines:
        line = full[:HEAD_CHARS]  # labels sit near the start; only settings lines are read in full
        m = _RANK.match(line)
        rank = ""
        if m:
            rank = m.group(1) + (f" rank={m.group(2)}" if m.group(2) else "")
            if rank == "APIServer":
                rank = ""
        if p.engine_version is None and ("version" in line or "LLM engine (" in line):
            for pat in _VERSION:
                vm = pat.search(line)
                if vm:
                    p.engine_version = vm.group(1).rstrip(".")
                    break
        if "V1 LLM engine" in line or "v1/" in line or "EngineCore" in line or "Available KV cache memory" in line:
            v1 = True
        if "Initializing an LLM engine" in line or "# GPU blocks" in line or "# cuda blocks" in line or \
                "Loading model weights took" in line or "model_runner.py" in line and "v1" not in line:
            v0 = True
        if "non-default args:" in line:
            for key, val in _ARG.findall(full):
                if key in _KEEP:
                    p.setting(_ALIASES.get(key, key), literal(val))
        elif "with config:" in line:
            for key, val in _CFG.findall(full):
                if key in _KEEP and _ALIASES.get(key, key) not in p.settings:
                    p.setting(_ALIASES.get(key, key), literal(val))
        elif "Defaulting max_num_batched_tokens to" in line:
            dm = re.search(r"max_num_batched_tokens to (\d{1,9})", line)
            if dm:
                p.settings.setdefault("max_num_batched_tokens", int(dm.group(1)))
        if "max seq len (" in line:
            sm = re.search(r"max seq len \((\d{1,9})\)", line)
            if sm:
                p.settings.setdefault("max_model_len", int(sm.group(1)))
        if "(util)" in line:
            um = re.search(r"Requested memory: ([0-9.]{1,12}) \(util\)", line)
            if um:
                p.settings.setdefault("gpu_memory_utilization", float(um.group(1)))
        elif "gpu_memory_utilization" in line and "gpu_memory_utilization" not in p.settings:
            um = re.search(r"gpu_memory_utilization[ =(]{1,8}([0-9.]{1,8})", line)
            if um:
                p.settings["gpu_memory_utilization"] = float(um.group(1))
        if "attention backend" in line and "Using " in line:
            bm = re.search(r"Using ([A-Z][A-Z0-9_]{1,40}) attention backend", line)
            if bm:
                p.settings.setdefault("attention_backend", bm.group(1))
        if "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS" in line:
            em = re.search(r"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS'?\"?[:=]\s{0,3}'?(True|False|1|0)", line)
            if em:
                p.settings.setdefault("estimate_cudagraphs", em.group(1) in ("True", "1"))
        if any(k in line for k in _KEYS):
            for name, pat, unit in _PATTERNS:
                if name == "non_torch_bytes" and "memory snapshot" in line:
                    continue  # the snapshot's non_torch_memory is the CUDA context, not the profiled increase
                qm = pat.search(line)
                if not qm:
                    continue
                where = "" if name in _ENGINE_LEVEL else rank
                if unit == "signed":
                    p.add(name, qm.group(1) + qm.group(2), qm.group(3), line, where)
                elif unit == "concurrency":
                    p.settings.setdefault("max_model_len", int(qm.group(1).replace(",", "")))
                    p.add(name, qm.group(2), "x", line, where)
                elif unit is not None:
                    p.add(name, qm.group(1), unit, line, where)
                else:
                    # vLLM's "GB" has always been 2^30 (model_memory_usage / float(2**30))
                    p.add(name, qm.group(1), "GiB" if qm.group(2) == "GB" else qm.group(2), line, where)
        if "Value error, " in line and len(excs) < 1000:
            # pydantic puts the reason on its own line: "  Value error, User-specified max_model_len ..."
            excs.append(("ValueError", line.split("Value error, ", 1)[1][:600]))
        elif "Error" in line or "Exception" in line or "error" in line:
            exc = exception_line(line)
            if exc and not exc[0].startswith(("DEBUG", "VLLM_")) and len(excs) < 1000:
                excs.append(exc)
            elif "max seq len" in line and "larger than" in line and len(excs) < 1000:
                excs.append(("ValueError", line[line.find("The model") if "The model" in line else 0:][:600]))
    p.variant = "V0" if v0 and not (v1 and p.first("kv_budget_bytes") and "Available" in p.first("kv_budget_bytes").line) \
        else "V1"
    if p.engine_version and not p.engine_version[0].isdigit():
        p.engine_version = None
    if "model" in p.settings:
        p.model = str(p.settings["model"])
    p.started = bool(p.first("kv_tokens") or p.first("num_blocks"))
    last_exc = pick_failure(excs)
    if last_exc and (not p.started or classify_failure(*last_exc) in ("oom", "kv_too_small")):
        kind = classify_failure(*last_exc)
        p.failure_kind = kind
        p.failure = explain_failure(kind, *last_exc)
    budgets = p.all("kv_budget_bytes")
    if not p.failure and budgets and min(b.value for b in budgets) <= 0 and not p.started:
        p.failure_kind = "kv_too_small"
        p.failure = "the KV cache budget is not positive: weights and overheads exceed gpu_memory_utilization"
    require(p, ("kv_budget_bytes", "kv_tokens", "num_blocks", "weights_bytes"),
            "'Available KV cache memory', 'GPU KV cache size' or '# GPU blocks' line")
    return p
