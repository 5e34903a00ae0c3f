"""SGLang startup logs: `server_args=ServerArgs(...)`, "Load weight begin/end. avail mem=X GB",
"KV Cache is allocated. #tokens: N, K size: X GB, V size: Y GB" (or "KV size" for MLA), "Capture cuda
graph end ... mem usage=X GB", "max_total_num_tokens=N, ..., max_running_requests=M, context_len=L".

SGLang prints "GB" for 2^30 bytes (its get_available_gpu_memory divides by 1 << 30). Ranks are the
"TP0" / "DP1 TP1 EP1" tags in the timestamp bracket.
"""

from __future__ import annotations

import re

from kvplan.explain.logtext import (HEAD_CHARS, classify_failure, exception_line, explain_failure, literal,
                                    num, ParsedLog, pick_failure, require)

_RANK = re.compile(r"^\W{0,4}\[[0-9: -]{8,26}((?: (?:DP|TP|PP|EP)\d{1,4}){1,4})\]")
_SA = re.compile(r"\b([a-z_]{1,40})=('[^']{0,300}'|[A-Za-z0-9_.\-]{1,60})")
_KEEP = {"model_path", "tp_size", "pp_size", "dp_size", "mem_fraction_static", "max_total_tokens", "chunked_prefill_size",
         "max_running_requests", "kv_cache_dtype", "page_size", "context_length", "cuda_graph_max_bs", "dtype",
         "quantization", "enable_dp_attention", "attention_backend", "disable_cuda_graph"}
_PATTERNS = [
    ("load_begin_free_bytes", num(r"Load weight begin\. avail mem={N} ?(GB)")),
    ("weights_free_after_bytes", num(r"Load weight end\..{0,200}avail mem={N} ?(GB)")),
    ("weights_bytes", num(r"Load weight end\..{0,260}mem usage={N} ?(GB)")),
    ("k_bytes", num(r"KV Cache is allocated\..{0,40}K size: {N} ?(GB)")),
    ("v_bytes", num(r"KV Cache is allocated\..{0,80}V size: {N} ?(GB)")),
    ("kv_bytes", num(r"KV Cache is allocated\..{0,40}KV size: {N} ?(GB)")),
    ("pool_end_free_bytes", num(r"Memory pool end\. avail mem={N} ?(GB)")),
    ("cuda_graph_bytes", num(r"Capture cuda graph end\..{0,120}mem usage={N} ?(GB)")),
]
_TOKENS = [num(r"KV Cache is allocated\. #tokens: {N}"), num(r"max_total_num_tokens={N}")]


def detect(lines: list[str]) -> bool:
    return any(("ServerArgs(" in h or "KV Cache is allocated" in h or "max_total_num_tokens=" in h or "sglang" in h)
               for h in (ln[:HEAD_CHARS] for ln in lines))


def parse(lines: list[str]) -> ParsedLog:
    p = ParsedLog("sglang")
    excs: list[tuple[str, str]] = []
    for full in lines:
        line = full[:HEAD_CHARS]
        m = _RANK.match(line)
        rank = m.group(1).strip() if m else ""
        if "ServerArgs(" in line:
            for key, val in _SA.findall(full[full.find("ServerArgs("):]):
                if key in _KEEP:
                    p.setting(key, literal(val))
        if "sglang" in line and p.engine_version is None:
            vm = re.search(r"sglang(?:==| version:? ?v?)([0-9]+\.[0-9]+\.[0-9][0-9A-Za-z.+_-]{0,30})", line)
            if vm:
                p.engine_version = vm.group(1)
        if "mem" in line or "KV Cache" in line:
            for name, pat in _PATTERNS:
                qm = pat.search(line)
                if qm:
                    p.add(name, qm.group(1), "GiB", line, rank)
        if "#tokens" in line or "max_total_num_tokens=" in line:
            for pat in _TOKENS:
                qm = pat.search(line)
                if qm:
                    name = "kv_tokens" if "#tokens" in pat.pattern else "max_total_num_tokens"
                    p.add(name, qm.group(1), "tokens", line, rank)
            for key in ("max_running_requests", "context_len", "chunked_prefill_size"):
                km = re.search(rf"\b{key}=(\d{{1,12}})", line)
                if km and "max_total_num_tokens=" in line:
                    if key == "max_running_requests":
                        p.add(key, km.group(1), "requests", line, rank)
                    else:
                        p.settings.setdefault("context_length" if key == "context_len" else key, int(km.group(1)))
        if "Error" in line or "Exception" in line:
            exc = exception_line(line)
            if exc:
                if len(excs) < 1000:
                    excs.append(exc)
    if p.settings.get("model_path"):
        p.model = str(p.settings["model_path"])
    last_exc = pick_failure(excs)
    p.started = bool(p.first("kv_tokens") or p.first("k_bytes") or p.first("kv_bytes")
                     or p.first("max_total_num_tokens"))
    if last_exc and not p.started:
        kind = classify_failure(*last_exc)
        if "Not enough memory" in last_exc[1] or "mem-fraction-static" in last_exc[1]:
            kind = "kv_too_small"
        p.failure_kind, p.failure = kind, explain_failure(kind, *last_exc)
    require(p, ("kv_tokens", "k_bytes", "kv_bytes", "max_total_num_tokens"),
            "'KV Cache is allocated' or 'max_total_num_tokens=' line")
    return p
