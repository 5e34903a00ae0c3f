"""Engine profiles: how each inference engine turns a ModelArch into allocated bytes.

One module per engine, each with `NAME`, `KV_DTYPES`, a frozen `Options` and two functions,
`kv_cache(arch, request, options)` and `capacity(arch, request, options, kv_memory_bytes)`.
This package is the only place that dispatches on the engine name.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from kvplan.errors import InvalidInputError

# engine name → module in this package; a module is imported the first time its engine is asked for
# (`kvplan size` needs one engine, and its cold start is benchmarked)
_MODULES = {"vllm": "vllm", "sglang": "sglang", "llama.cpp": "llamacpp", "transformers": "transformers",
            "trtllm": "trtllm", "naive": "naive"}
ENGINE_NAMES = tuple(_MODULES)
DEFAULT_ENGINE = "vllm"

_ALIASES = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "hf": "transformers",
            "tensorrt-llm": "trtllm", "tensorrt_llm": "trtllm", "trt-llm": "trtllm"}


def get_engine(name: str) -> ModuleType:
    """The profile module for an engine name (case-insensitive; llamacpp, hf, tensorrt-llm accepted)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _MODULES:
        close = difflib.get_close_matches(key, ENGINE_NAMES, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise InvalidInputError("engine", f"unknown engine {name!r}{hint}; choose one of "
                                          f"{', '.join(ENGINE_NAMES)}")
    return importlib.import_module(f"kvplan.engines.{_MODULES[key]}")
