"""kvplan: KV-cache capacity planning for LLM inference, to the byte, per engine.

    >>> import kvplan
    >>> kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len="128k").kv_bytes
    17179869184

The core (this package minus `ui/`, `validate/` and `hub.py`) imports nothing heavy: no torch,
streamlit, plotly, transformers or huggingface_hub.
"""

from kvplan.api import capacity, kv_cache, sweep, sweep_bytes
from kvplan.engines import DEFAULT_ENGINE, ENGINE_NAMES, engine_versions, get_engine, resolve_engine
from kvplan.engines.common import Capacity, KindBytes, KVEstimate
from kvplan.errors import (DoesNotFitError, HubError, InvalidInputError, KvplanError, UnknownGPUError,
                           UnknownModelError, UnsupportedConfigError, UnsupportedDtypeError)
from kvplan.layers import (MLA, ChunkedLocal, FullAttention, LayerSpec, ModelArch, NoCache,
                           RecurrentState, SlidingWindow)
from kvplan.registry import list_models, load_model
from kvplan.versions import EngineVersion

__version__ = "0.1.0"

__all__ = [
    "kv_cache", "capacity", "sweep", "sweep_bytes", "plan", "Plan", "min_gpus", "recommend", "Recommendation", "Deployment", "load_model", "list_models", "parse_config", "get_engine",
    "ENGINE_NAMES", "DEFAULT_ENGINE", "KVEstimate", "Capacity", "KindBytes", "ModelArch", "LayerSpec",
    "FullAttention", "SlidingWindow", "ChunkedLocal", "MLA", "RecurrentState", "NoCache",
    "KvplanError", "InvalidInputError", "UnsupportedConfigError", "UnknownModelError", "UnknownGPUError",
    "UnsupportedDtypeError", "DoesNotFitError", "HubError", "validate", "engine_versions", "resolve_engine",
    "EngineVersion", "explain", "LogParseError",
]


def __getattr__(name: str):
    # Imported on first use, so `import kvplan` (and `kvplan size`) stays light: the planner pulls in
    # weights and roofline; `kvplan.validate` needs torch + transformers (requirements-validate.txt).
    if name == "parse_config":  # pydantic is imported on first use (a cached bundled model needs none)
        from kvplan.hf_config import parse_config

        return parse_config
    if name in ("plan", "Plan", "min_gpus"):
        from kvplan import planner

        return getattr(planner, name)
    if name == "explain":
        # kvplan.explain is a subpackage: `from ... import` returns its function, not the module
        from kvplan.explain import explain

        return explain
    if name == "LogParseError":
        from kvplan.errors import LogParseError

        return LogParseError
    if name == "hub":  # the submodule, for `kvplan.hub.load_hub_model` after a bare `import kvplan`
        import kvplan.hub  # binds kvplan.hub; `from kvplan import hub` here would recurse into this hook

        return kvplan.hub
    if name in ("recommend", "Recommendation", "Deployment"):
        # kvplan.recommend is also a module name; the module is callable (it forwards to the
        # function), so either binding of the attribute works.
        import kvplan.recommend as module

        value = getattr(module, name)
        if name != "recommend":
            return value
        globals()["recommend"] = value
        return value
    if name == "validate":
        from kvplan.validate import validate

        return validate
    raise AttributeError(f"module 'kvplan' has no attribute {name!r}")
