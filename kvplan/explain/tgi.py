"""Hugging Face text-generation-inference startup logs: the launcher's `Args { model_id: "...",
max_total_tokens: Some(N), cuda_memory_fraction: F, ... }` and the shard's "KV-cache blocks: B, size: S"
or the router's "Setting max batch total tokens to N"."""

from __future__ import annotations

import re

from kvplan.explain.logtext import (HEAD_CHARS, classify_failure, exception_line, explain_failure, num,
                                    ParsedLog, pick_failure, require)

_ARGS = re.compile(r"\b([a-z_]{1,40}): (Some\(([^()]{0,200})\)|\"[^\"]{0,300}\"|[A-Za-z0-9_.]{1,40})")
_KEEP = {"model_id", "revision", "max_total_tokens", "max_input_tokens", "max_input_length", "max_batch_prefill_tokens",
         "max_batch_total_tokens", "cuda_memory_fraction", "num_shard", "dtype", "quantize", "kv_cache_dtype",
         "max_concurrent_requests"}
_BLOCKS = num(r"KV-cache blocks: {N}, size: {N}")
_TOTAL = num(r"max batch total tokens to {N}")
_VERSION = re.compile(r"(?:text-generation-launcher|version[\"=: ]{1,4})v?([0-9]+\.[0-9]+\.[0-9][0-9A-Za-z.+-]{0,20})")


def detect(lines: list[str]) -> bool:
    return any(("text_generation_launcher" in h or "text_generation_router" in h
                or "text-generation-launcher" in h or "KV-cache blocks:" in h) for h in (ln[:HEAD_CHARS] for ln in lines))


def parse(lines: list[str]) -> ParsedLog:
    p = ParsedLog("tgi")
    excs: list[tuple[str, str]] = []
    for full in lines:
        line = full[:HEAD_CHARS]
        if "Args {" in line:
            for key, val, inner in _ARGS.findall(full):
                if key in _KEEP:
                    v = inner if val.startswith("Some(") else val
                    v = v.strip('"')
                    p.setting(key, int(v) if v.isdigit() else v)
        if p.engine_version is None and ("version" in line or "launcher" in line):
            vm = _VERSION.search(line)
            if vm:
                p.engine_version = vm.group(1)
        dm = re.search(r"Default `([a-z_]{1,40})` to (\d{1,12})", line) if "Default `" in line else None
        if dm and dm.group(1) in _KEEP:
            p.settings.setdefault(dm.group(1), int(dm.group(2)))
        sm = re.search(r"Sharding model on (\d{1,4}) processes", line) if "Sharding model" in line else None
        if sm:
            p.settings.setdefault("num_shard", int(sm.group(1)))
        mm = re.search(r"(?:for model|model_id: \") ?([A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,95})", line) \
            if "model" in line and "model_id" not in p.settings else None
        if mm:
            p.settings["model_id"] = mm.group(1)
        bm = _BLOCKS.search(line) if "KV-cache blocks" in line else None
        if bm:
            p.add("num_blocks", bm.group(1), "blocks", line)
            p.settings["block_size"] = int(bm.group(2).replace(",", ""))
        tm = _TOTAL.search(line) if "total tokens" in line else None
        if tm:
            p.add("kv_tokens", tm.group(1), "tokens", line)
        if "Error" in line or "error" in line:
            exc = exception_line(line)
            if exc:
                if len(excs) < 1000:
                    excs.append(exc)
    p.model = p.settings.get("model_id")
    last_exc = pick_failure(excs)
    p.started = bool(p.first("num_blocks") or p.first("kv_tokens"))
    if last_exc and not p.started:
        kind = classify_failure(*last_exc)
        p.failure_kind, p.failure = kind, explain_failure(kind, *last_exc)
    require(p, ("num_blocks", "kv_tokens"), "'KV-cache blocks: B, size: S' or 'max batch total tokens' line")
    return p
