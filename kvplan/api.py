"""The public sizing functions: `kv_cache` and `capacity`, on any MODEL and any engine profile.

These take user-level inputs (a model id or config, "32k", "20GiB", engine names, "auto" dtypes),
validate them into typed errors, and hand a `ModelArch` and a `Request` to the engine profile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kvplan.engines import DEFAULT_ENGINE, resolve_engine
from kvplan.engines.common import Capacity, KVEstimate, make_options, make_request, resolve_kv_dtype
from kvplan.errors import InvalidInputError, UnknownModelError
from kvplan.layers import ModelArch
from kvplan.registry import load_model
from kvplan.units import MAX_BYTES, MAX_TOKENS, check_count, parse_bytes, parse_tokens

Model = str | os.PathLike | Mapping[str, Any] | ModelArch


def _arch(model: Model) -> ModelArch:
    """MODEL in resolution order: a ModelArch, a bundled id, a path (config.json / folder / .gguf),
    then a Hub id "org/name[@revision]" (fetched by `kvplan.hub`; no code from the repo is run)."""
    if isinstance(model, ModelArch):
        return model
    try:
        return load_model(model)
    except UnknownModelError:
        from kvplan import hub  # lazy: huggingface_hub is imported only for a Hub id

        if isinstance(model, str) and hub.is_hub_ref(model):
            return hub.load_hub_model(model)
        raise


def _prepare(model, engine, kv_dtype, context_len, batch, tp, pp, options, context_field="context_len",
             engine_version=None):
    arch = _arch(model)
    mod, version = resolve_engine(engine, engine_version)
    arch = _with_draft(arch, mod.NAME, options)
    dtype = resolve_kv_dtype(mod.NAME, kv_dtype, arch.dtype, mod.KV_DTYPES,
                             auto_fp32_as="fp32" if mod.NAME == "transformers" else
                             "fp16" if mod.NAME == "llama.cpp" else "bf16")
    if mod.NAME == "llama.cpp" and str(kv_dtype).lower() == "auto":
        dtype = "fp16"  # llama.cpp's -ctk/-ctv default is f16 whatever the weights are
    req = make_request(parse_tokens(context_len, context_field), batch, dtype, tp, pp)
    opts = make_options(mod.Options, mod.NAME, options, version, mod.VERSIONS)
    return arch, mod, req, opts, version


def _with_draft(arch: ModelArch, engine: str, options: dict[str, Any]) -> ModelArch:
    """Apply `speculative=` / `draft_model=` (taken out of the engine options): the draft's layers join
    the target's (see kvplan.speculative)."""
    method, draft = options.pop("speculative", None), options.pop("draft_model", None)
    if method is None and draft is None:
        return arch
    from kvplan import speculative

    name = speculative.method_name(method, draft)
    if name is None:
        return arch
    if engine in ("transformers", "naive"):
        raise InvalidInputError("speculative", f"speculative decoding is not modelled for engine {engine}; "
                                               "use vllm, sglang, llama.cpp or trtllm")
    return speculative.with_draft(arch, name, _arch(draft) if draft is not None else None)


def _versioned(result, mod, version):
    notes = mod.VERSIONS.notes(version) if mod.VERSIONS is not None else []
    if notes:
        return replace(result, engine_version=str(version), notes=tuple(result.notes) + tuple(notes))
    # The profile has just built this result and nobody else holds it: stamping the version in place
    # keeps sweeps cheap (dataclasses.replace cost about a quarter of a sweep step).
    object.__setattr__(result, "engine_version", str(version))
    return result


def kv_cache(model: Model, *, context_len: int | str, batch: int = 1, engine: str = DEFAULT_ENGINE,
             kv_dtype: str = "auto", tp: int = 1, pp: int = 1, engine_version: str | None = None,
             **options: Any) -> KVEstimate:
    """KV cache (plus recurrent state) that `engine` allocates for `batch` sequences of `context_len`
    tokens, on the most-loaded GPU of a `tp` × `pp` layout.

    `engine_version` ("0.19", "0.20.2", llama.cpp "b4905" or "ik") selects that release's rules
    (`kvplan.engine_versions()` lists them); `engine="vllm@0.19"` says the same. Default: the newest
    behaviour kvplan models. The result's `engine_version` says which was used.

    `options` are the engine's own knobs (e.g. `block_size=32` for vLLM, `parallel=4, ubatch=512,
    swa_full=True` for llama.cpp); `kvplan.engines.get_engine(name).Options` documents them.

    >>> est = kv_cache("meta-llama/Llama-2-7b-hf", context_len=4096, engine="naive", kv_dtype="fp16")
    >>> est.kv_bytes == 2 * 2**30
    True

    Raises:
        UnknownModelError, UnsupportedConfigError: the model cannot be found or parsed.
        InvalidInputError: a number or option is out of range (the field is named).
        UnsupportedDtypeError: the engine cannot store that KV dtype.
    """
    arch, mod, req, opts, version = _prepare(model, engine, kv_dtype, context_len, batch, tp, pp, options,
                                             engine_version=engine_version)
    return _versioned(mod.kv_cache(arch, req, opts), mod, version)


def capacity(model: Model, *, kv_memory: int | str, max_model_len: int | str,
             engine: str = DEFAULT_ENGINE, kv_dtype: str = "auto", tp: int = 1, pp: int = 1,
             engine_version: str | None = None, **options: Any) -> Capacity:
    """How a per-GPU KV budget becomes blocks, tokens and concurrent `max_model_len`-token requests,
    counted the engine's way (vLLM: "GPU KV cache size" and "Maximum concurrency").

    >>> cap = capacity("meta-llama/Llama-3.1-8B", kv_memory=26306 * 2 * 2**20, max_model_len=131072)
    >>> cap.num_blocks, cap.kv_tokens, round(cap.max_concurrency, 2)
    (26306, 420896, 3.21)

    Raises:
        the same errors as `kv_cache`.
    """
    arch, mod, req, opts, version = _prepare(model, engine, kv_dtype, max_model_len, 1, tp, pp, options,
                                             "max_model_len", engine_version)
    budget = check_count(parse_bytes(kv_memory, "kv_memory"), "kv_memory", minimum=0, maximum=MAX_BYTES)
    return _versioned(mod.capacity(arch, req, opts, budget), mod, version)


MAX_SWEEP_POINTS = 10_000  # a chart has hundreds of points; 10^6 took a minute and a gigabyte


def _context_list(context_lens: Any) -> list[int]:
    """The contexts of a sweep: a list/tuple/range (or other iterable) of token counts, at most
    MAX_SWEEP_POINTS. A string or bytes is refused ("8192" would sweep the digits [8, 1, 9, 2], b"12"
    the byte values [49, 50])."""
    if type(context_lens) in (list, tuple) and len(context_lens) <= MAX_SWEEP_POINTS:
        items = list(context_lens)  # the common case, copied in one C call
    elif isinstance(context_lens, (str, bytes, bytearray, memoryview, Mapping)) or \
            not hasattr(context_lens, "__iter__"):
        raise InvalidInputError("context_lens", f"expected a list of token counts like [8192, '32k'], got "
                                                f"{type(context_lens).__name__}")
    else:
        import itertools

        items = list(itertools.islice(iter(context_lens), MAX_SWEEP_POINTS + 1))
    if len(items) > MAX_SWEEP_POINTS:
        raise InvalidInputError("context_lens", f"more than {MAX_SWEEP_POINTS:,} contexts in one sweep "
                                                f"(limit {MAX_SWEEP_POINTS:,}); sample fewer points")
    # plain ints in range skip the parser (the common case: a chart's 200 points), checked in C loops
    if items and set(map(type, items)) == {int} and 0 < min(items) and max(items) <= MAX_TOKENS:
        return items
    return [c if type(c) is int and 0 < c <= MAX_TOKENS else check_count(parse_tokens(c, "context_lens"),
                                                                          "context_lens") for c in items]


def _sweep_setup(model, context_lens, engine, kv_dtype, batch, tp, pp, engine_version, options):
    """What `sweep` and `sweep_bytes` share: the contexts (validated once), the engine module, its
    version, its sweep plan and `one(ctx)`, kv_cache at one context (for an engine or layer kind with no
    plan, swept the slow way). Empty contexts: ([], None, None, None, None)."""
    contexts = _context_list(context_lens)
    if not contexts:
        return contexts, None, None, None, None
    arch, mod, first, opts, version = _prepare(model, engine, kv_dtype, contexts[0], batch, tp, pp, options,
                                               engine_version=engine_version)
    # Each engine turns its layout into per-context arithmetic (sweep_plan), which tests/test_sweep.py
    # holds equal to kv_cache at every context.
    plan = mod.sweep_plan(arch, first, opts) if hasattr(mod, "sweep_plan") else None

    def one(ctx: int) -> KVEstimate:
        return _versioned(mod.kv_cache(arch, make_request(ctx, batch, first.kv_dtype, tp, pp), opts), mod, version)
    return contexts, mod, version, plan, one


def sweep(model: Model, *, context_lens, batch: int = 1, engine: str = DEFAULT_ENGINE,
          kv_dtype: str = "auto", tp: int = 1, pp: int = 1, engine_version: str | None = None,
          **options: Any) -> list[KVEstimate]:
    """`kv_cache` at many context lengths at once (for charts): inputs are validated once.

    >>> [e.kv_bytes for e in sweep("meta-llama/Llama-3.1-8B", context_lens=[16, 17])] == [2**21, 2**22]
    True
    """
    contexts, mod, version, plan, one = _sweep_setup(model, context_lens, engine, kv_dtype, batch, tp, pp,
                                                     engine_version, options)
    if plan is not None:
        from kvplan.engines.sweep import evaluate_sweep

        version_notes = tuple(mod.VERSIONS.notes(version)) if mod.VERSIONS is not None else ()
        return evaluate_sweep(plan, contexts, engine_version=str(version), version_notes=version_notes)
    return [one(ctx) for ctx in contexts]


def sweep_bytes(model: Model, *, context_lens, batch: int = 1, engine: str = DEFAULT_ENGINE,
                kv_dtype: str = "auto", tp: int = 1, pp: int = 1, engine_version: str | None = None,
                total: bool = False, **options: Any) -> list[int]:
    """Only the bytes of `sweep`: each context's `kv_bytes` (the most-loaded GPU), or its `total_bytes`
    (all tp·pp GPUs) with `total=True`, equal to the byte to those fields of `sweep`'s results but
    without building them (for scanning many models, engines and contexts).

    >>> sweep_bytes("meta-llama/Llama-3.1-8B", context_lens=[16, 17]) == [2**21, 2**22]
    True
    """
    contexts, _, _, plan, one = _sweep_setup(model, context_lens, engine, kv_dtype, batch, tp, pp,
                                             engine_version, options)
    if plan is not None:
        from kvplan.engines.sweep import evaluate_bytes

        return evaluate_bytes(plan, contexts, total=total)
    field = "total_bytes" if total else "kv_bytes"
    return [getattr(one(ctx), field) for ctx in contexts]
