"""`kvplan explain`: read an engine's startup log, rerun kvplan with the settings it shows, compare.

    >>> import kvplan
    >>> ex = kvplan.explain(open("engine.log").read())          # doctest: +SKIP
    >>> [(q.name, q.logged, q.predicted, q.within_precision) for q in ex.quantities]   # doctest: +SKIP

One parser per engine (vllm, sglang, llamacpp, trtllm, tgi) turns the text into settings and logged
quantities (`logtext.ParsedLog`); `compare` runs the ordinary profiles and the planner with those
settings. The model comes from MODEL / `config` when given, else from the log (a bundled id, or the
bundled model a fine-tune or quantization of it shares its geometry with, named in `model_source`),
else the Hub; offline, an unresolved model is a `LogParseError` asking for --config.
"""

from __future__ import annotations

import os
import re
from typing import Any

from kvplan.errors import KvplanError, LogParseError
from kvplan.explain import llamacpp, sglang, tgi, trtllm, vllm
from kvplan.explain.compare import Explanation, Quantity, compare
from kvplan.explain.logtext import MAX_LINE_CHARS, MAX_LOG_CHARS, ParsedLog, bounded_lines, read_log_file

__all__ = ["explain", "parse_log", "detect_engine", "read_log_file", "Explanation", "Quantity", "ParsedLog",
           "MAX_LOG_CHARS", "MAX_LINE_CHARS", "ENGINES"]

PARSERS = {"llama.cpp": llamacpp, "trtllm": trtllm, "tgi": tgi, "sglang": sglang, "vllm": vllm}
ENGINES = tuple(PARSERS)
_ENGINE_ALIASES = {"llamacpp": "llama.cpp", "ik_llama.cpp": "llama.cpp", "ik_llama": "llama.cpp",
                   "tensorrt-llm": "trtllm", "trt-llm": "trtllm", "text-generation-inference": "tgi"}


def detect_engine(lines: list[str]) -> str:
    """The engine whose marker lines the log has (most specific first: an SGLang log may mention vllm)."""
    for name in ENGINES:
        if PARSERS[name].detect(lines):
            return name
    raise LogParseError("", "no engine recognized: expected a vLLM ('Available KV cache memory', 'GPU KV cache "
                            "size', '# GPU blocks'), SGLang ('KV Cache is allocated'), llama.cpp "
                            "('llama_kv_cache'), TensorRT-LLM ('paged KV cache') or TGI ('KV-cache blocks') "
                            "startup line", missing=("engine marker line",))


def parse_log(text: str, engine: str | None = None) -> ParsedLog:
    """Read settings and logged quantities from a startup log (no kvplan numbers; see `explain`)."""
    lines = bounded_lines(text)
    if engine:
        key = _ENGINE_ALIASES.get(str(engine).lower(), str(engine).lower())
        if key not in PARSERS:
            from kvplan.errors import InvalidInputError
            raise InvalidInputError("engine", f"explain reads {', '.join(ENGINES)} logs, not {engine!r}")
    else:
        key = detect_engine(lines)
    return PARSERS[key].parse(lines)


_SUFFIXES = ("instruct", "chat", "it", "hf", "base", "fp8", "dynamic", "fp8-dynamic", "quantized.w8a8",
             "quantized.w4a16", "w8a8", "w4a16", "awq", "gptq", "int4", "int8", "2503", "2407", "2501", "v0.1",
             "v0.2", "v0.3")


def _name_key(name: str) -> str:
    return name.lower().replace("meta-llama-3.1", "llama-3.1").replace("meta-llama-3", "llama-3")


def _canonical(name: str) -> str:
    cand = _name_key(name)
    for _ in range(8):
        stripped = next((cand[: -len(s) - 1] for s in _SUFFIXES if cand.endswith("-" + s)), None)
        if not stripped:
            break
        cand = stripped
    return cand


def _bundled_match(logged: str) -> tuple[str, str] | None:
    """A bundled id with the logged model's KV geometry: the same id, or the same name once fine-tune /
    quantization suffixes are dropped on both sides (Qwen2.5-7B-Instruct -> Qwen/Qwen2.5-7B,
    RedHatAI/...-quantized.w8a8 -> the base it quantizes, Mixtral-8x7B-Instruct-v0.1 -> Mixtral-8x7B-v0.1).
    Returns (id, how) or None; sizes and family names must match exactly."""
    from kvplan.registry import list_models

    ids = list_models()
    if logged in ids:
        return logged, "bundled"
    tail = "/".join(logged.replace("\\", "/").rstrip("/").split("/")[-2:])
    if tail in ids:
        return tail, "bundled (from the log's model path)"
    want = _canonical(tail.split("/")[-1])
    same_org = [m for m in ids if _canonical(m.split("/")[-1]) == want]
    if not same_org:
        return None
    org = tail.split("/")[0].lower() if "/" in tail else ""
    mid = next((m for m in same_org if m.split("/")[0].lower() == org), same_org[0])
    return mid, f"bundled {mid} (same KV geometry as {logged}: a fine-tune or quantization of it)"


def _resolve(parsed: ParsedLog, model: Any, config: Any, offline: bool):
    from kvplan.api import _arch
    from kvplan.registry import load_model

    if config is not None:
        return load_model(config), f"--config {os.fspath(config) if not isinstance(config, dict) else '(dict)'}"
    if model is not None:
        arch = _arch(model)
        return arch, f"MODEL {model if isinstance(model, (str, os.PathLike)) else arch.model_id}"
    if not parsed.model:
        raise LogParseError(parsed.engine, "the log does not name the model (llama.cpp prints only the GGUF "
                                           "name): pass MODEL or --config PATH", missing=("model",))
    hit = _bundled_match(parsed.model)
    if hit:
        return load_model(hit[0]), hit[1]
    ref = parsed.model
    if not offline and re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,95}", ref):
        try:
            return _arch(ref), "Hugging Face Hub"
        except KvplanError as err:
            raise LogParseError(parsed.engine, f"cannot resolve the log's model {ref!r} ({err}); pass "
                                               "--config PATH (its config.json) or MODEL", missing=("config",)) from None
    raise LogParseError(parsed.engine, f"the log's model {ref[:200]!r} is not bundled"
                                       f"{' and the Hub is not used offline' if offline else ''}: pass --config PATH "
                                       "(its config.json) or MODEL", missing=("config",))


def explain(text: str, model: Any = None, *, config: Any = None, engine: str | None = None,
            engine_version: str | None = None, settings: dict[str, Any] | None = None,
            offline: bool = False) -> Explanation:
    """Explain an engine startup log: what it set, what it logged, what kvplan predicts, and why they differ.

    `text` is the log (text, not bytes; at most MAX_LOG_CHARS). `model` / `config` override the model
    the log names (a bundled id, a config.json path or dict, a Hub id); `engine` skips detection;
    `engine_version` ("0.19.0" or "vllm@0.19") stands in for a log that does not print it; `settings`
    fills in what an excerpt leaves out, in the engine's own names ({"tensor_parallel_size": 4} for vLLM,
    {"tp_size": 4} for SGLang, {"n_seq_max": 4} for llama.cpp); `offline` never asks the Hub.

    Raises:
        LogParseError: no engine recognized, a truncated log (names what is missing), or a model that
            cannot be resolved (asks for --config).
        InvalidInputError: text too large or not a str.
    """
    parsed = parse_log(text, engine)
    if engine_version:
        parsed.engine_version = str(engine_version).split("@")[-1].lstrip("v")
    for key, value in (settings or {}).items():
        if len(parsed.settings) < 200 and isinstance(key, str):
            parsed.settings.setdefault(key, value)
    try:
        arch, source = _resolve(parsed, model, config, offline)
    except LogParseError as err:
        if not parsed.failure:
            raise
        # A failed startup is explained by its cause; without the model the numbers are only read.
        arch, source = None, f"unresolved ({err}); the failure is read from the log"
    return compare(parsed, arch, source)


class _CallableModule(type(os)):
    """`kvplan.explain` is this package once any submodule is imported (Python sets the attribute on the
    parent package), yet the public API is the function `kvplan.explain(text, ...)`: calling the
    package calls the function, so both spellings always work."""

    def __call__(self, *args, **kwargs) -> Explanation:
        return explain(*args, **kwargs)


import sys as _sys  # noqa: E402 - must run after `explain` is defined

_sys.modules[__name__].__class__ = _CallableModule
