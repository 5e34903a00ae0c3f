"""TensorRT-LLM startup logs (C++ runtime "[TensorRT-LLM][INFO]" and the PyTorch backend "[TRT-LLM] [I]"):
"[MemUsageChange] Allocated X GiB for max tokens in paged KV cache (N)", "Number of blocks in KV cache
primary pool: B", "Number of tokens per block: T", "Memory usage when calculating max tokens in paged kv
cache: total: X GiB, available: Y GiB", "fraction is set F", "Loaded engine size: X MiB".
The PyTorch backend allocates twice (a small cache to profile, then the real one): the last line wins.
"""

from __future__ import annotations

import re

from kvplan.explain.logtext import (HEAD_CHARS, SEARCH_CHARS, classify_failure, exception_line,
                                    explain_failure, num, ParsedLog, pick_failure, require)

_ALLOC = num(r"Allocated {N} ?(GiB|GB|MiB) for max tokens in paged KV cache \({N}\)")
_PATTERNS = [
    ("num_blocks", num(r"Number of blocks in KV cache primary pool: {N}"), "blocks"),
    ("weights_bytes", num(r"Loaded engine size: {N} ?(MiB|GiB)"), None),
    ("free_for_kv_bytes", num(r"paged kv cache: total: {N} ?GiB, available: {N} ?(GiB)"), "second"),
    ("free_for_kv_bytes", num(r"available KV cache memory when calculating max tokens: {N} ?(GiB)"), None),
    ("total_memory_bytes", num(r"paged kv cache: total: {N} ?(GiB)"), None),
    ("total_memory_bytes", num(r"device total memory {N} ?(GiB)"), None),
]
_SET = [("block_size", re.compile(r"Number of tokens per block: (\d{1,6})")),
        ("free_gpu_memory_fraction", re.compile(r"(?:fraction is set|free_gpu_memory_fraction[\"':= ]{1,4}|"
                                                r"KV Memory Percentage: {0,8})([0-9.]{1,20})(%?)")),
        ("max_seq_len", re.compile(r"\bmax_seq_len[=: ]{1,4}(\d{1,9})")),
        ("max_num_tokens", re.compile(r"\bmax_num_tokens[=: ]{1,4}(\d{1,9})")),
        ("max_batch_size", re.compile(r"\bmax_batch_size[=: ]{1,4}(\d{1,9})")),
        ("tp", re.compile(r"(?:TP Size: {0,20}|tp_size[=:] {0,4})(\d{1,4})")),
        ("pp", re.compile(r"(?:PP Size: {0,20}|pp_size[=:] {0,4})(\d{1,4})")),
        ("kv_cache_dtype", re.compile(r"KV Cache Dtype: {0,20}([A-Za-z0-9_]{1,12})")),
        ("model", re.compile(r"^\s{0,8}[Mm]odel: {1,20}(\S{1,200})\s*$"))]
_VERSION = re.compile(r"TensorRT-LLM [Vv]ersion:? {0,20}([0-9]+\.[0-9]+\.[0-9A-Za-z.+_-]{1,30})")


def detect(lines: list[str]) -> bool:
    return any(("TensorRT-LLM" in h or "[TRT-LLM]" in h or "paged KV cache (" in h)
               for h in (ln[:HEAD_CHARS] for ln in lines))


def parse(lines: list[str]) -> ParsedLog:
    p = ParsedLog("trtllm", variant="")
    excs: list[tuple[str, str]] = []
    for full in lines:
        line = full[:HEAD_CHARS]
        if "[TRT-LLM]" in line or "PyExecutor" in line:
            p.variant = "pytorch"
        if p.engine_version is None and "ersion" in line:
            vm = _VERSION.search(line)
            if vm:
                p.engine_version = vm.group(1)
        am = _ALLOC.search(line) if "paged KV cache (" in line else None
        if am:
            p.logged = [q for q in p.logged if q.name not in ("kv_bytes", "kv_tokens")]  # last allocation wins
            p.add("kv_bytes", am.group(1), am.group(2), line)
            p.add("kv_tokens", am.group(3), "tokens", line)
        for name, pat, how in _PATTERNS:
            qm = pat.search(line)
            if qm:
                if how == "blocks":
                    p.logged = [q for q in p.logged if q.name != name]
                    p.add(name, qm.group(1), "blocks", line)
                elif how == "second":
                    p.add(name, qm.group(2), qm.group(3), line)
                else:
                    p.add(name, qm.group(1), qm.group(2), line)
                break
        head = line[:SEARCH_CHARS]
        for key, pat in _SET:
            sm = pat.search(head) if ("odel" in head or "ize" in head or "max_" in head or "fraction" in head
                                      or "Percentage" in head or "Dtype" in head or "per block" in head) else None
            if sm:
                val = sm.group(1)
                if key == "free_gpu_memory_fraction":
                    f = float(val) / (100 if sm.group(2) else 1)
                    p.settings[key] = round(f, 4)
                elif key in ("kv_cache_dtype", "model"):
                    p.settings.setdefault(key, val)
                else:
                    p.settings[key] = int(val)
        if "Error" in line or "error" in line:
            exc = exception_line(line)
            if exc:
                if len(excs) < 1000:
                    excs.append(exc)
    p.variant = p.variant or "cpp"
    p.model = p.settings.get("model")
    last_exc = pick_failure(excs)
    p.started = bool(p.first("kv_bytes"))
    if last_exc and not p.started:
        kind = classify_failure(*last_exc)
        p.failure_kind, p.failure = kind, explain_failure(kind, *last_exc)
    require(p, ("kv_bytes", "num_blocks"), "'Allocated X GiB for max tokens in paged KV cache (N)' line")
    return p
