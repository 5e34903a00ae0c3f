"""Engine profiles: how each inference engine turns a ModelArch into allocated bytes.

One module per engine, each with `NAME`, `KV_DTYPES`, a frozen `Options` and two functions,
`kv_cache(arch, request, options)` and `capacity(arch, request, options, kv_memory_bytes)`.
This package is the only place that dispatches on the engine name.
"""

from __future__ import annotations

from types import ModuleType

from kvplan.errors import InvalidInputError

ENGINE_NAMES = ("vllm", "sglang", "llama.cpp", "transformers", "trtllm", "naive")
DEFAULT_ENGINE = "vllm"

_ALIASES = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "hf": "transformers",
            "tensorrt-llm": "trtllm", "tensorrt_llm": "trtllm", "trt-llm": "trtllm"}


def get_engine(name: str) -> ModuleType:
    """The profile module for an engine name (case-insensitive; llamacpp, hf, tensorrt-llm accepted)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ENGINE_NAMES:
        import difflib  # only on a miss (cold-start path)
        close = difflib.get_close_matches(key, ENGINE_NAMES, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise InvalidInputError("engine", f"unknown engine {name!r}{hint}; choose one of "
                                          f"{', '.join(ENGINE_NAMES)}")
    return _load(key)


def _load(name: str) -> ModuleType:
    """Import one profile the first time its engine is asked for (`kvplan size` needs one engine, and
    its cold start is benchmarked). Static imports only: the source scan forbids dynamic ones."""
    if name == "vllm":
        from kvplan.engines import vllm as module
    elif name == "sglang":
        from kvplan.engines import sglang as module
    elif name == "llama.cpp":
        from kvplan.engines import llamacpp as module
    elif name == "transformers":
        from kvplan.engines import transformers as module
    elif name == "trtllm":
        from kvplan.engines import trtllm as module
    else:
        from kvplan.engines import naive as module
    return module
