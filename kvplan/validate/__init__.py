"""`kvplan validate`: measure the KV cache a real model holds (CUDA, or CPU for tests) and compare it
with the `transformers` profile's prediction; allocate the `vllm` layout and time decode reads.

Needs torch and transformers (`pip install -r requirements-validate.txt`); the rest of kvplan never
imports this package. See `validate` for what is measured.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from kvplan.errors import InvalidInputError, UnknownModelError
from kvplan.registry import bundled_config, list_models, load_model, read_config_file
from kvplan.units import check_count, parse_tokens
from kvplan.validate import measure as M
from kvplan.validate import paged as P

__all__ = ["validate", "ValidationReport"]

FIT_FRACTION = 0.8  # build the whole model only when weights + 2 × cache stay under this share of free memory
MAX_CONTEXTS = 32  # context lengths measured in one run
MAX_BATCH = 4096
DECODE_BATCHES_CUDA = (1, 8, 32)  # decode reads timed at these batches (a row is skipped where the blocks run out)
# Tokens in one prefill (context × batch). The prefill is eager torch: on CPU, attention over 64k
# tokens of a 4-layer toy model already takes tens of seconds, so a typo like `--context 1M` is
# refused up front, not left running for minutes at 7 GB; CUDA gets 32× more.
MAX_PREFILL_TOKENS = {"cpu": 1 << 16, "cuda": 1 << 21}


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """One validate run. `data` is the JSON report; `failures` lists what broke the tolerance."""

    data: dict[str, Any]

    @property
    def failures(self) -> list[str]:
        return list(self.data.get("failures", []))

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return self.data


def _raw_config(model) -> tuple[dict[str, Any], str]:
    if isinstance(model, Mapping):
        return dict(model), str(model.get("_name_or_path") or "custom")
    text = os.fspath(model)
    if text in list_models():
        return bundled_config(text), text
    if os.path.exists(text):
        return read_config_file(text), os.path.basename(os.path.normpath(text))
    from kvplan import hub  # a Hub id, like every other command (config.json only; no code is run)

    if hub.is_hub_ref(text):
        return hub.fetch_config(text), text
    raise UnknownModelError(text)


def _contexts(context_len) -> list[int]:
    if isinstance(context_len, (list, tuple)):
        items = list(context_len)
    else:
        items = [c for c in str(context_len).split(",") if c.strip()]
    if not items:
        raise InvalidInputError("context", "give at least one context length")
    if len(items) > MAX_CONTEXTS:
        raise InvalidInputError("context", f"{len(items):,} context lengths in one run (limit {MAX_CONTEXTS})")
    return [check_count(parse_tokens(c, "context"), "context") for c in items]


def _check_prefill(arch, hf, contexts: list[int], batch: int, device: str, lo: int, torch_dtype, kv_dtype: str,
                   free: int, num_experts: int | None = None) -> None:
    """Refuse a prefill that cannot finish in reasonable time and memory, before building anything:
    the tokens (context × batch) against MAX_PREFILL_TOKENS, and the logits + cache + weights of the
    smallest buildable model against the device's free memory."""
    tokens = max(contexts) * batch
    limit = MAX_PREFILL_TOKENS["cpu" if device == "cpu" else "cuda"]
    if tokens > limit:
        raise InvalidInputError("context", f"a prefill of {max(contexts):,} tokens × batch {batch:,} = "
                                           f"{tokens:,} tokens is more than validate measures on {device} "
                                           f"(limit {limit:,}); use a shorter --context or a smaller --batch")
    elem = {"fp32": 4}.get(kv_dtype, 2)
    vocab = getattr(hf, "vocab_size", 0) or arch.weight_dims.vocab_size or 0
    cache = M.predicted_full(arch, max(contexts) + 1, batch, kv_dtype) * lo // max(1, arch.num_layers)
    # the smallest model validate may build: `lo` layers, routed experts cut as far as it would cut them
    smallest = M.reduce_config(hf, lo, num_experts=num_experts or M.shrunk_experts(hf))
    need = tokens * vocab * max(elem, 4) + 2 * cache + M.param_bytes(smallest, torch_dtype)
    if free and need > FIT_FRACTION * free:
        raise InvalidInputError("context", f"a prefill of {tokens:,} tokens needs about {need / 2**30:,.1f} GiB "
                                           f"(logits, cache, {lo} layers of weights); {device} has "
                                           f"{free / 2**30:,.1f} GiB free; use a shorter --context or --batch")


def _device_info(device: str) -> dict[str, Any]:
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return {"device": "cuda", "device_name": props.name, "total_memory_bytes": props.total_memory,
                "cuda_version": torch.version.cuda, "driver_version": _driver_version(),
                "compute_capability": f"{props.major}.{props.minor}"}
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover
        total = None
    return {"device": "cpu", "device_name": platform.processor() or platform.machine(), "total_memory_bytes": total}


def _driver_version() -> str | None:
    """The NVIDIA driver's version from `nvidia-smi` (None when it is not there or does not answer)."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[:1]
    return first[0].strip()[:40] if first and first[0].strip() else None


def _bandwidth(device_name: str) -> tuple[int | None, str | None]:
    from kvplan.errors import UnknownGPUError
    from kvplan.gpus import get_gpu

    try:
        gpu = get_gpu(device_name)
    except (UnknownGPUError, Exception):  # noqa: BLE001 - unknown GPU: no roofline, never a guess
        return None, None
    return (gpu.bandwidth_bytes_per_s or None), gpu.name


def _err(measured: int | None, predicted: int) -> float | None:
    if measured is None:
        return None
    return (measured - predicted) / predicted if predicted else (0.0 if measured == 0 else float("inf"))


def validate(model, *, context_len: int | str | Sequence[int | str], batch: int = 1, device: str | None = None,
             dtype: str | None = None, depth: str | int = "auto", tolerance: float = 0.01, paged: bool = True,
             speed: bool = False, speed_new_tokens: int = 64, speed_prompt_len: int = 128,
             num_experts: int | None = None, model_id: str | None = None,
             progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Measure the cache a real `model` holds after a prefill and compare it with kvplan's prediction.

    The model (a bundled id, a config.json path or folder, or a config dict) is built from its config
    with random weights on `device` ("cuda" when available, else "cpu"), in `dtype` (default: the
    config's). `depth` "auto" builds every layer when weights plus twice the cache fit in 80 % of free
    memory, else the fewest leading layers that hold every layer kind ("min" always builds those);
    "full" or a layer count force it. Routed MoE experts are cut when the built layers would not fit.
    Per context: `predicted_bytes` (the `transformers` profile, whole model), `measured_bytes` (bytes of
    the cache's tensors, scaled to the whole model by the real layer counts when depth is reduced),
    `error` = measured / predicted − 1, plus the per-layer check on the built layers and, on CUDA,
    `memory_allocated` with and without the cache and the prefill peak. With `paged`, the `vllm` layout
    is allocated and decode reads timed against a bandwidth roofline; with `speed`, generation tokens/s
    with and without the cache. `num_experts` cuts MoE routed experts (they hold no cache) to build faster.
    `progress`, when given, is called with one line of text before each step (the CLI prints them), and
    says when no device was asked for and no CUDA GPU is visible, so the run falls back to the CPU.

    Raises:
        UnknownModelError, UnsupportedConfigError: the model cannot be found, parsed, or built by the
            installed transformers.
        InvalidInputError: a number or choice is out of range (the field is named).
    """
    import transformers

    transformers.logging.set_verbosity_error()
    raw, name = _raw_config(model)
    name = model_id or name
    arch = load_model(raw, model_id=name)
    contexts = _contexts(context_len)
    check_count(batch, "batch", maximum=MAX_BATCH)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise InvalidInputError("tolerance", f"must be a fraction in [0, 1), got {str(tolerance)[:40]!r}")
    if isinstance(speed_new_tokens, bool) or not isinstance(speed_new_tokens, int):
        raise InvalidInputError("speed_new_tokens", f"expected a whole number, got {str(speed_new_tokens)[:40]!r}")
    check_count(speed_new_tokens, "speed_new_tokens", maximum=4096)
    if isinstance(speed_prompt_len, bool) or not isinstance(speed_prompt_len, int):
        raise InvalidInputError("speed_prompt_len", f"expected a whole number, got {str(speed_prompt_len)[:40]!r}")
    check_count(speed_prompt_len, "speed_prompt_len", maximum=32768)
    if num_experts is not None:
        check_count(num_experts, "num_experts", maximum=1 << 16)
    if not isinstance(device, (str, type(None))):
        raise InvalidInputError("device", f"choose cuda or cpu, got {str(device)[:40]!r}")
    say = progress or (lambda line: None)
    if device is None and not torch.cuda.is_available():
        say("no CUDA GPU visible: measuring on the CPU (slow at long contexts; --device cpu hides this)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError("device", "CUDA is not available here; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise InvalidInputError("device", f"choose cuda or cpu, got {device!r}")
    kv_dtype = (dtype or arch.dtype).lower()
    if kv_dtype not in M.TORCH_DTYPES:
        raise InvalidInputError("dtype", f"choose bf16, fp16 or fp32, got {dtype!r}")
    torch_dtype = M.TORCH_DTYPES[kv_dtype]

    hf = M.text_config(raw)
    M.model_class(hf)
    lo = M.min_depth(arch, hf)
    want = M.check_depth(depth, arch, hf)
    notes: list[str] = []
    experts = num_experts
    free = M.available_bytes(device)
    _check_prefill(arch, hf, contexts, batch, device, lo, torch_dtype, kv_dtype, free, num_experts)
    worst_cache = max(M.predicted_full(arch, c + 1, batch, kv_dtype) for c in contexts)
    if want == "auto":
        full_w = M.param_bytes(hf, torch_dtype)
        k = arch.num_layers if full_w + 2 * worst_cache < FIT_FRACTION * free else lo
        if k < arch.num_layers:
            notes.append(f"the whole model ({full_w / 2**30:.1f} GiB of weights) does not fit in "
                         f"{FIT_FRACTION:.0%} of free memory: built {k} of {arch.num_layers} layers")
    else:
        k = want
    cfg = M.reduce_config(hf, k, num_experts=experts) if k < arch.num_layers or experts else hf
    if experts:
        notes.append(f"routed experts cut to {experts} (experts hold no cache)")
    weights = M.param_bytes(cfg, torch_dtype)
    scale = worst_cache * k / arch.num_layers
    if not experts and weights + 2 * scale > FIT_FRACTION * free and M.shrunk_experts(hf):
        experts = M.shrunk_experts(hf)
        cfg = M.reduce_config(hf, k, num_experts=experts)
        weights = M.param_bytes(cfg, torch_dtype)
        notes.append(f"routed experts cut to {experts} to fit (experts hold no cache)")
    if k < arch.num_layers:
        notes.append(f"reduced depth: per-layer bytes measured on layers 0..{k - 1} and scaled back by the "
                     f"real layer counts ({arch.label()})")

    say(f"building {name} ({k} of {arch.num_layers} layers, {kv_dtype}, random weights) on {device}")
    model_obj = M.build_model(cfg, device, torch_dtype)
    limit = M.position_limit(model_obj)
    longest = max(max(contexts) + 1, speed_prompt_len + speed_new_tokens if speed else 0)
    if limit is not None and longest > limit:
        raise InvalidInputError("context", f"{name} embeds at most {limit:,} positions (a learned position "
                                           f"table) and this run needs {longest:,} (the longest context plus "
                                           f"one decode step, or the --speed prompt plus its tokens); "
                                           f"use a --context of at most {limit - 1:,}")
    mla_cache = M.mla_cache_style(model_obj)
    if "mla" in arch.kinds:
        notes.append(f"installed transformers caches MLA {mla_cache}: predicted with mla_cache={mla_cache!r}")

    info = _device_info(device)
    failures: list[str] = []
    rows = []
    for i, ctx in enumerate(contexts, 1):
        say(f"context {ctx:,} × batch {batch} ({i} of {len(contexts)}): prefill and one decode step")
        r = M.prefill(model_obj, num_tokens=ctx, batch=batch, device=device, vocab_size=cfg.vocab_size)
        pred_layers = M.predicted_layers(arch, k, ctx, batch, kv_dtype, mla_cache)
        meas_layers = M.per_layer(r["rows"])
        mismatched = sorted(i for i in set(pred_layers) | set(meas_layers)
                            if pred_layers.get(i) != meas_layers.get(i))
        predicted = M.predicted_full(arch, ctx, batch, kv_dtype, mla_cache)
        measured = M.scale_to_full(arch, k, meas_layers)
        built_pred = sum(sum(t.values()) for t in pred_layers.values())
        built_meas = sum(sum(t.values()) for t in meas_layers.values())
        row = {"context_len": ctx, "batch": batch, "predicted_bytes": predicted, "measured_bytes": measured,
               "error": _err(measured, predicted), "peak_bytes": r["peak_bytes"],
               "built_layers": k, "built_predicted_bytes": built_pred, "built_measured_bytes": built_meas,
               "built_storage_bytes": M.unique_storage_bytes(r["rows"]),
               "allocated_bytes": r["allocated_bytes"], "allocated_error": _err(r["allocated_bytes"], built_pred),
               "layers_mismatched": [{"layer": i, "predicted": pred_layers.get(i), "measured": meas_layers.get(i)}
                                     for i in mismatched][:8],
               "prefill_s": round(r["prefill_s"], 4)}
        if "rows_decode" in r:
            pred_d = sum(sum(t.values()) for t in
                         M.predicted_layers(arch, k, ctx + 1, batch, kv_dtype, mla_cache).values())
            meas_d = sum(x["bytes"] for x in r["rows_decode"])
            row["after_decode"] = {
                "predicted_bytes": pred_d, "measured_bytes": meas_d, "error": _err(meas_d, pred_d),
                "storage_bytes": M.unique_storage_bytes(r["rows_decode"]),
                "allocated_bytes": r["allocated_bytes_decode"],
                "allocated_error": _err(r["allocated_bytes_decode"], pred_d),
                "allocator_block_bytes": r.get("block_bytes_decode")}
        if row["built_storage_bytes"] > built_meas * (1 + tolerance):
            row["note"] = ("after prefill the sliding layers' views still pin the whole prefill's K/V "
                           "storage; one decode step releases it (see after_decode)")
        rows.append(row)
        if abs(row["error"]) > tolerance:
            failures.append(f"context {ctx}: bytes error {row['error']:+.2%} exceeds {tolerance:.2%}")
        if mismatched:
            failures.append(f"context {ctx}: layers {mismatched[:8]} differ from the prediction")
        dec = row.get("after_decode", {})
        if dec and not allocated_check(dec, tolerance):
            failures.append(f"context {ctx}: allocated memory after one decode step is "
                            f"{dec['allocated_error']:+.2%} off the prediction")

    report: dict[str, Any] = {
        "model": name, "engine_profile": "transformers", "engine": "transformers", "model_type": arch.model_type,
        **info, "torch_version": torch.__version__, "transformers_version": _tf_version(),
        "dtype": kv_dtype, "batch": batch, "tolerance": tolerance,
        "depth": {"mode": "full" if k >= arch.num_layers else "reduced", "layers_built": k,
                  "layers_total": arch.num_layers, "experts_kept": experts},
        "mla_cache": mla_cache if "mla" in arch.kinds else None,
        "weights_bytes": weights, "layers": arch.kind_counts(), "results": rows, "notes": notes,
    }
    if speed:
        say("timing generation with and without the cache")
        report["generation"] = M.generation_speed(model_obj, device=device, vocab_size=cfg.vocab_size,
                                                  new_tokens=speed_new_tokens, prompt_len=speed_prompt_len)
    del model_obj
    if paged:
        say("allocating the vllm paged layout and timing decode reads")
        report["paged"] = _paged(arch, kv_dtype, device, contexts, info, failures, tolerance)
    report["failures"] = failures
    report["passed"] = not failures
    return ValidationReport(report)


def allocated_check(dec: dict[str, Any], tolerance: float) -> bool:
    """Does `memory_allocated` after one decode step agree with the prediction (`dec`: a result row's
    `after_decode`)? It counts allocator blocks, not tensor bytes: a cache tensor put into a block the
    prefill freed may take the whole block, up to 1 MiB more than its bytes (PyTorch's caching allocator
    does not split off a remainder under 1 MiB). So when the growth is off by more than `tolerance`, it
    still passes if the cache tensors match the prediction exactly and the blocks holding them account for
    the growth to within `tolerance` of the prediction; a note on `dec` then says so."""
    err = dec.get("allocated_error")
    if err is None or abs(err) <= tolerance:
        return True
    blocks, grew, predicted = dec.get("allocator_block_bytes"), dec["allocated_bytes"], dec["predicted_bytes"]
    if blocks is None or dec["measured_bytes"] != predicted or abs(grew - blocks) > tolerance * predicted:
        return False
    dec["note"] = (f"memory_allocated grew by {grew:,} B: the allocator blocks holding the cache's tensors are "
                   f"{blocks:,} B, {blocks - dec['storage_bytes']:,} B more than the tensors (whole cached blocks "
                   f"reused after the prefill), and {grew - blocks:,} B is held outside the cache")
    return True


def _paged(arch, kv_dtype, device, contexts, info, failures, tolerance) -> dict[str, Any]:
    from kvplan.engines import vllm

    if kv_dtype not in vllm.KV_DTYPES:
        return {"skipped": f"vllm has no {kv_dtype} cache"}
    cuda = device.startswith("cuda")
    budget = min(P.CUDA_BUDGET_BYTES, int(M.available_bytes(device) * 0.3)) if cuda else 64 << 20
    row, tensors, lay = P.allocate(arch, kv_dtype, device, budget_bytes=budget)
    if "skipped" in row:
        return row
    if abs(row["error"]) > tolerance:
        failures.append(f"paged allocation {row['error']:+.2%} off the vllm profile")
    bw, gpu = _bandwidth(info["device_name"]) if cuda else (None, None)
    row["roofline_gpu"] = gpu
    row["bandwidth_bytes_per_s"] = bw
    timing_contexts = sorted({*contexts, *((1024, 4096, 16384) if cuda else (256,))})
    row["decode"] = [t for batch in (DECODE_BATCHES_CUDA if cuda else (1,))
                     for t in P.decode_timings(arch, lay, tensors, kv_dtype, device, timing_contexts, batch=batch,
                                               bandwidth_bytes_per_s=bw, iters=20 if cuda else 3)]
    del tensors
    return row


def _tf_version() -> str:
    import transformers

    return transformers.__version__


class _CallableModule(types.ModuleType):
    """Importing this package sets `kvplan.validate` to the package itself (Python's submodule rule),
    so the package is made callable: `kvplan.validate(...)` is `validate(...)` either way."""

    def __call__(self, *args, **kwargs) -> ValidationReport:
        return validate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
