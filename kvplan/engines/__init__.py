"""Engine profiles: how each inference engine turns a ModelArch into allocated bytes.

One module per engine, each with `NAME`, `KV_DTYPES`, a frozen `Options` and two functions,
`kv_cache(arch, request, options)` and `capacity(arch, request, options, kv_memory_bytes)`.
This package is the only place that dispatches on the engine name.
"""

from __future__ import annotations

from types import ModuleType

from kvplan.errors import InvalidInputError
from kvplan.versions import EngineVersion, parse_version

ENGINE_NAMES = ("vllm", "sglang", "llama.cpp", "transformers", "trtllm", "naive")
DEFAULT_ENGINE = "vllm"
# Forks that size with a profile's rules at a fixed version: ik_llama.cpp is llama.cpp version "ik".
_FORKS = {"ik_llama.cpp": ("llama.cpp", "ik"), "ik-llama.cpp": ("llama.cpp", "ik"), "ik_llama": ("llama.cpp", "ik")}

_ALIASES = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "hf": "transformers",
            "tensorrt-llm": "trtllm", "tensorrt_llm": "trtllm", "trt-llm": "trtllm"}


def get_engine(name: str) -> ModuleType:
    """The profile module for an engine name (case-insensitive; llamacpp, hf, tensorrt-llm accepted;
    a version after '@', as in "vllm@0.19", is ignored here: see `resolve_engine`)."""
    key = str(name).partition("@")[0].strip().lower()
    if key in _FORKS:
        key = _FORKS[key][0]
    key = _ALIASES.get(key, key)
    if key not in ENGINE_NAMES:
        import difflib  # only on a miss (cold-start path)
        close = difflib.get_close_matches(key, ENGINE_NAMES, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise InvalidInputError("engine", f"unknown engine {name!r}{hint}; choose one of "
                                          f"{', '.join(ENGINE_NAMES)}")
    return _load(key)


def resolve_engine(engine: str, engine_version=None) -> tuple[ModuleType, EngineVersion]:
    """The profile and the parsed version for `engine` ("vllm", "vllm@0.19", "ik_llama.cpp") and an
    optional `engine_version` ("0.19", "0.20.2", "b4905", "ik"); None = the newest modelled behaviour.
    Parsed once here; the profile and planner receive the `EngineVersion` value."""
    mod = get_engine(engine)
    base = str(engine).partition("@")[0].strip().lower()
    if base in _FORKS and engine_version is None and "@" not in str(engine):
        engine_version = _FORKS[base][1]
    return mod, parse_version(mod.VERSIONS, str(engine), engine_version)


def engine_versions(engine: str | None = None) -> dict:
    """The versions kvplan models, per engine: oldest, latest (the default), every version where a rule
    changes, and each rule with its source. `engine_versions("vllm")["rules"]` lists vLLM's."""
    if engine is not None:
        mod = get_engine(engine)
        table = mod.VERSIONS
        return table.to_dict() if table is not None else {"engine": mod.NAME, "oldest": None, "latest": None,
                                                          "default": None, "versions": [], "rules": [], "forks": []}
    return {name: engine_versions(name) for name in ENGINE_NAMES}


_LOADED: dict[str, ModuleType] = {}


def _load(name: str) -> ModuleType:
    """Import one profile the first time its engine is asked for (`kvplan size` needs one engine, and
    its cold start is benchmarked). Static imports only: the source scan forbids dynamic ones."""
    module = _LOADED.get(name)
    if module is not None:  # a sweep asks once per call: skip the import machinery after the first
        return module
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
    _LOADED[name] = module
    return module
