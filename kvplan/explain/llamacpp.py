"""llama.cpp (and forks: ik_llama.cpp, WasmEdge's ggml plugin) startup logs.

Reads the context parameters (`llama_context: n_ctx = ...`, `n_seq_max`, `n_ubatch`, `kv_unified`,
`flash_attn`), the cache lines of every generation of the code:
  new:   "llama_kv_cache: size = 3072.00 MiB (131072 cells, 12 layers, 1/1 seqs), K (f16): ..., V (f16): ..."
  iSWA:  "llama_kv_cache_iswa: creating     SWA KV cache, size = 768 cells" before the SWA cache's line
  old:   "llama_new_context_with_model: KV self size  = 5120.00 MiB, K (f16): 2560.00 MiB, V (f16): ..."
  MLA:   "KV self size  = 2196.00 MiB, K^R (f16): 244.00 MiB, c^KV (f16): 1952.00 MiB" (ik: "kv^T: not used")
Each cache is one `cache` label: "" (the only one), "non-SWA" / "SWA" (iSWA), "MLA".
"""

from __future__ import annotations

import re

from kvplan.explain.logtext import (HEAD_CHARS, SEARCH_CHARS, classify_failure, exception_line,
                                    explain_failure, num, ParsedLog, pick_failure, require)

_SIZE = num(r"size = {0,8}{N} ?(MiB|GiB|KiB) \( {0,8}{N} cells, {0,8}{N} layers, {0,8}([0-9]{1,6})(?:/ {0,4}[0-9]{1,6})? seqs\)")
_KV = re.compile(r"\b(K|V) \(([a-z0-9_]{1,12})\): {0,8}([0-9]{1,12}\.[0-9]{1,4}) ?(MiB|GiB|KiB)")
_SELF = num(r"KV self size {0,8}= {0,8}{N} ?(MiB|GiB)")
_MLA = re.compile(r"(K\^R|c\^KV) \(([a-z0-9_]{1,12})\): {0,8}([0-9]{1,12}\.[0-9]{1,4}) ?(MiB|GiB)")
_PARAM = re.compile(r"(?:llama_context|llama_new_context_with_model|llama_init_from_model|print_info|"
                    r"llm_load_print_meta): {1,4}([a-z_]{1,24}) {0,24}= {0,4}(\S{1,40})")
_INIT = re.compile(r"kv_size = (\d{1,10}),.{0,40}type_k = '([a-z0-9_]{1,12})', type_v = '([a-z0-9_]{1,12})'")
_SWA = re.compile(r"creating {1,8}(non-SWA|SWA) KV cache, size = (\d{1,10}) cells")
_SLOT = re.compile(r"n_ctx_slot[=: ]{1,3}(\d{1,10})")
_BUILD = [re.compile(r"build[: =]{1,4}(\d{1,6}) \(([0-9a-f]{4,40})\)"), re.compile(r"LLAMA_BUILD_NUMBER (\d{1,6})")]
_KEEP = {"n_ctx", "n_seq_max", "n_ubatch", "n_batch", "flash_attn", "kv_unified", "swa_full", "n_ctx_per_seq",
         "n_layer", "n_head_kv", "n_embd_head_k", "n_embd_head_v", "n_swa", "n_ctx_train", "general.name",
         "mla_attn", "causal_attn"}


def detect(lines: list[str]) -> bool:
    marks = ("llama_kv_cache", "llama_context:", "llama_new_context_with_model", "llm_load_print_meta",
             "print_info:", "KV self size", "llama_model_loader")
    return any(m in h for h in (ln[:HEAD_CHARS] for ln in lines) for m in marks)


def parse(lines: list[str]) -> ParsedLog:
    p = ParsedLog("llama.cpp")
    cache = ""
    excs: list[tuple[str, str]] = []
    for full in lines:
        line = full[:HEAD_CHARS]
        if ("ik_llama" in line or "kv^T" in line or "-mla " in line or "mla_attn" in line) and not p.variant:
            p.variant = "ik_llama.cpp"
        if p.engine_version is None and ("build" in line or "BUILD_NUMBER" in line):
            for pat in _BUILD:
                bm = pat.search(line)
                if bm:
                    p.engine_version = "b" + bm.group(1)
                    break
        pm = _PARAM.search(line[:SEARCH_CHARS]) if " = " in line or " =" in line else None
        if pm and pm.group(1) in _KEEP:
            key, val = pm.group(1), pm.group(2)
            val = {"true": True, "false": False, "enabled": True, "disabled": False, "on": True,
                   "off": False}.get(val.lower(), val)
            if isinstance(val, str) and val.isdigit():
                val = int(val)
            p.settings.setdefault(key, val)
        if "general.name" in line and "model_name" not in p.settings:
            gm = re.search(r"general\.name(?: str)? {0,40}= {0,4}(.{1,120})$", line)
            if gm:
                p.settings["model_name"] = gm.group(1).strip()
        if ".gguf" in line and "model_file" not in p.settings:
            fm = re.search(r"(?:-m|--model|from) {1,4}(\S{1,300}\.gguf)", line[:SEARCH_CHARS])
            if fm:
                p.settings["model_file"] = fm.group(1)
        if "n_ctx_slot" in line and "n_ctx" not in p.settings:
            nm = _SLOT.search(line)
            if nm:
                p.settings["n_ctx"] = int(nm.group(1))
        im = _INIT.search(line) if "kv_size" in line else None
        if im:
            p.settings.setdefault("n_ctx", int(im.group(1)))
            p.settings.setdefault("type_k", im.group(2))
            p.settings.setdefault("type_v", im.group(3))
        sm = _SWA.search(line) if "creating" in line else None
        if sm:
            cache = sm.group(1)
            p.add("cells", sm.group(2), "cells", line, cache)
            continue
        zm = _SIZE.search(line) if "cells" in line else None
        if zm:
            p.add("kv_bytes", zm.group(1), zm.group(2), line, cache)
            if not p.first("cells") or cache == "":
                p.add("cells", zm.group(3), "cells", line, cache)
            p.settings.setdefault("n_seq_max", int(zm.group(5)))
            p.add("layers", zm.group(4), "layers", line, cache)
            for which, typ, val, unit in _KV.findall(line):
                p.add(f"{which.lower()}_bytes", val, unit, line, cache)
                p.settings.setdefault(f"type_{which.lower()}", typ)
            continue
        if "KV self size" in line:
            em = _SELF.search(line)
            mla = _MLA.findall(line)
            if em and (mla or "c^KV" in line):
                # builds between two MLA layouts first logged a vestigial per-head cache of a few MiB
                p.logged = [q for q in p.logged if q.rank != ""]
                for which, typ, val, unit in mla:
                    name = "latent_bytes" if which == "c^KV" else "rope_bytes"
                    if "K^R" in line:  # ik_llama.cpp's c^KV already holds the rope part (no K^R printed)
                        p.add(name, val, unit, line, "MLA")
                    if which == "c^KV":
                        p.settings.setdefault("type_k", typ)
                p.add("kv_bytes", em.group(1), em.group(2), line, "MLA")
            elif em and float(em.group(1)) > 0:
                pairs = _KV.findall(line)
                # DeepSeek on builds between two MLA layouts logged a vestigial tiny cache first: keep the last
                p.logged = [q for q in p.logged if not (q.rank == "" and q.name in ("kv_bytes", "k_bytes", "v_bytes"))]
                p.add("kv_bytes", em.group(1), em.group(2), line, "")
                for which, typ, val, unit in pairs:
                    p.add(f"{which.lower()}_bytes", val, unit, line, "")
                    p.settings.setdefault(f"type_{which.lower()}", typ)
        if "error" in line.lower() and ("failed" in line or "Error" in line):
            exc = exception_line(line)
            if exc:
                if len(excs) < 1000:
                    excs.append(exc)
            elif "failed to allocate" in line or "out of memory" in line.lower():
                excs.append(("ggml error", line.strip()[:400]))
    last_exc = pick_failure(excs)
    p.started = bool(p.first("kv_bytes"))
    if p.variant == "":
        p.variant = "llama.cpp"
    if last_exc and not p.started:
        kind = classify_failure(*last_exc)
        if "failed to allocate" in last_exc[1]:
            kind = "oom"
        p.failure_kind, p.failure = kind, explain_failure(kind, *last_exc)
    p.model = p.settings.get("model_name") or p.settings.get("model_file")
    require(p, ("kv_bytes",), "'llama_kv_cache: size = ...' or 'KV self size = ...' line")
    return p
