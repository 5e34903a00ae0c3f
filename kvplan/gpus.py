"""GPU catalog: memory, bandwidth and peak FLOP/s of the GPUs people plan on, plus user-described GPUs.

The data lives in `gpus.json` next to this file, one entry per GPU with the source of every figure.
`memory_bytes` is what the framework reports as the device total (torch `total_memory`,
`cudaMemGetInfo`), not the marketing size: an "80GB" H100 SXM reports 85,029,158,912 bytes
(79.19 GiB). `memory_bytes_source` says how each figure was obtained: "measured" (exact bytes seen in a
real log or deviceQuery run), "measured-rounded" (seen at MiB or 0.01 GiB resolution; bytes rebuilt
from it), "fixture" (seen only in someone's test data) or "derived" (computed; `memory_note` says how).

What this module does not know: what an engine leaves for the KV cache (weights, activations, CUDA
graphs, `gpu_memory_utilization` are the planner's business), the exact total on *your* driver (it
moves by a few MiB between driver releases; ECC on GDDR cards costs about 1/16), MIG slices, clocks
below boost, or sustained rather than peak bandwidth and FLOP/s. FLOP/s are dense (no 2:4 sparsity);
on GeForce cards they are the FP32-accumulate rate frameworks use for bf16.

A figure of 0 in `bandwidth_bytes_per_s` or `bf16_dense_flops` means "unknown" (only user-described
GPUs from `custom_gpu` have it); callers must check before dividing by it.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources

from kvplan.errors import InvalidInputError, UnknownGPUError
from kvplan.units import MAX_BYTES, parse_bytes, show_number

_MEMORY_SOURCES = ("measured", "measured-rounded", "fixture", "derived", "user")
_INT_FIELDS = ("memory_bytes", "bandwidth_bytes_per_s", "bf16_dense_flops")
_STR_FIELDS = ("name", "vendor", "marketing_memory", "memory_bytes_source", "source", "memory_note")
MAX_FLOPS = 10**21  # a zettaFLOP/s per GPU is a typo, not a plan
MAX_BANDWIDTH_BYTES_PER_S = 10**15  # 1 PB/s per GPU, likewise


@dataclass(frozen=True)
class GPU:
    """One GPU model. Bytes are ints; FLOP/s are ints (dense, no sparsity); 0 means unknown."""

    name: str
    vendor: str
    marketing_memory: str  # as marketed, e.g. "80GB"; display only, never used in arithmetic
    memory_bytes: int  # device total as the framework reports it (torch total_memory)
    bandwidth_bytes_per_s: int  # peak HBM/GDDR bandwidth; 0 = unknown
    bf16_dense_flops: int  # peak dense bf16 tensor FLOP/s; 0 = unknown
    fp8_dense_flops: int | None  # None: the GPU has no fp8 tensor math (or it is unknown)
    source: str  # where bandwidth and FLOP/s come from
    memory_note: str  # where memory_bytes comes from
    aliases: tuple[str, ...] = ()
    memory_bytes_source: str = "derived"  # measured | measured-rounded | fixture | derived | user

    def to_dict(self) -> dict:
        """JSON-able form with stable keys (the same keys and order as an entry of gpus.json)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "vendor": self.vendor,
            "marketing_memory": self.marketing_memory,
            "memory_bytes": self.memory_bytes,
            "memory_bytes_source": self.memory_bytes_source,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "bf16_dense_flops": self.bf16_dense_flops,
            "fp8_dense_flops": self.fp8_dense_flops,
            "source": self.source,
            "memory_note": self.memory_note,
        }


def _key(name: str) -> str:
    """Lookup key: case-insensitive, ignoring spaces, underscores and hyphens ("h100 sxm" == "H100-SXM")."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _gpu_from_entry(entry: object, index: int) -> GPU:
    if not isinstance(entry, dict):
        raise ValueError(f"gpus.json entry {index}: expected an object, got {type(entry).__name__}")
    where = f"gpus.json entry {index} ({entry.get('name', '?')!r})"
    for field in _STR_FIELDS:
        if not isinstance(entry.get(field), str) or not entry[field].strip():
            raise ValueError(f"{where}: `{field}` must be a non-empty string")
    for field in _INT_FIELDS:
        if not _positive_int(entry.get(field)):
            raise ValueError(f"{where}: `{field}` must be a positive int, got {entry.get(field)!r}")
    fp8 = entry.get("fp8_dense_flops")
    if fp8 is not None and not _positive_int(fp8):
        raise ValueError(f"{where}: `fp8_dense_flops` must be a positive int or null, got {fp8!r}")
    if entry["memory_bytes_source"] not in _MEMORY_SOURCES:
        raise ValueError(f"{where}: `memory_bytes_source` must be one of {_MEMORY_SOURCES}")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise ValueError(f"{where}: `aliases` must be a list of non-empty strings")
    return GPU(
        name=entry["name"],
        vendor=entry["vendor"],
        marketing_memory=entry["marketing_memory"],
        memory_bytes=entry["memory_bytes"],
        bandwidth_bytes_per_s=entry["bandwidth_bytes_per_s"],
        bf16_dense_flops=entry["bf16_dense_flops"],
        fp8_dense_flops=fp8,
        source=entry["source"],
        memory_note=entry["memory_note"],
        aliases=tuple(aliases),
        memory_bytes_source=entry["memory_bytes_source"],
    )


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[tuple[GPU, ...], dict[str, GPU]]:
    """Load and validate gpus.json once: the GPUs in file order, and a lookup key -> GPU index."""
    text = resources.files("kvplan").joinpath("gpus.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    if not isinstance(raw, list) or not raw:
        raise ValueError("gpus.json: expected a non-empty list of GPUs")
    gpus = tuple(_gpu_from_entry(entry, i) for i, entry in enumerate(raw))
    index: dict[str, GPU] = {}
    for gpu in gpus:
        for label in (gpu.name, *gpu.aliases):
            key = _key(label)
            other = index.get(key)
            if other is not None and other is not gpu:
                raise ValueError(f"gpus.json: {label!r} names both {other.name} and {gpu.name}")
            index[key] = gpu
    return gpus, index


def list_gpus() -> tuple[GPU, ...]:
    """Every GPU in the catalog, in catalog order."""
    return _catalog()[0]


def get_gpu(name: str) -> GPU:
    """The catalog GPU whose name or alias equals `name`, ignoring case, spaces, '_' and '-'.

    Never guesses: "H10O" is not H100. Torch device names ("NVIDIA H100 80GB HBM3") are aliases.

    Raises:
        UnknownGPUError: no exact match; `suggestions` holds close catalog names.
        InvalidInputError: `name` is not a string.
    """
    if not isinstance(name, str):
        raise InvalidInputError("gpu", f"expected a GPU name like 'H100-SXM', got {type(name).__name__}")
    _, index = _catalog()
    key = _key(name)
    if key in index:
        return index[key]
    # Suggestions only (never accepted): also try the letter O typed for a zero ("H2OO" -> "H200").
    keys = list(index)
    suggestions: list[str] = []
    for probe in dict.fromkeys((key.replace("o", "0"), key)):
        for close in difflib.get_close_matches(probe, keys, n=6, cutoff=0.6):
            if index[close].name not in suggestions:
                suggestions.append(index[close].name)
    raise UnknownGPUError(name, tuple(suggestions[:3]))


_BANDWIDTH = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([kmgt]i?b|b)?\s*(?:/\s*s|ps)?\s*$", re.IGNORECASE)
_BANDWIDTH_SCALE = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}


def _parse_bandwidth(value: str | int) -> int:
    """Bytes/s from an int or text like "3.35TB/s", "864 GB/s", "2039GB/s" (decimal units, as vendors write)."""
    field = "bandwidth"
    if isinstance(value, bool):
        raise InvalidInputError(field, "expected bytes/s like '3.35TB/s', got a boolean")
    if isinstance(value, int):
        bytes_per_s = value
    elif isinstance(value, str):
        if len(value) > 100:  # int() and str() refuse numbers of more than 4,300 digits
            raise InvalidInputError(field, f"{value[:20]!r}... is too long for a bandwidth (limit 1 PB/s)")
        m = _BANDWIDTH.match(value)
        if not m:
            raise InvalidInputError(field, f"cannot read {value[:40]!r} as a bandwidth; write e.g. 3.35TB/s or 864GB/s")
        try:
            number = Decimal(m.group(1).replace("_", "").replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the regex admits only digits and one dot
            raise InvalidInputError(field, f"cannot read {value!r} as a bandwidth") from None
        unit = (m.group(2) or "b").lower()
        exact = number * _BANDWIDTH_SCALE[unit]
        bytes_per_s = int(exact)
        if exact != bytes_per_s:
            raise InvalidInputError(field, f"{value!r} is not a whole number of bytes/s")
    else:
        raise InvalidInputError(field, f"expected bytes/s like '3.35TB/s', got {type(value).__name__}")
    if bytes_per_s <= 0:
        raise InvalidInputError(field, f"must be positive, got {show_number(bytes_per_s)} bytes/s")
    if bytes_per_s > MAX_BANDWIDTH_BYTES_PER_S:
        raise InvalidInputError(field, f"{show_number(bytes_per_s)} bytes/s is absurdly large (limit 1 PB/s)")
    return bytes_per_s


def _parse_flops(value: float) -> int:
    field = "bf16_flops"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(field, f"expected FLOP/s as a number like 989e12, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(field, f"must be a positive, finite FLOP/s, got {value!r}")
    if value > MAX_FLOPS:
        raise InvalidInputError(field, f"{value:.3g} FLOP/s is absurdly large (limit 1e21)")
    return int(round(value))


def custom_gpu(
    memory: str | int,
    *,
    bandwidth: str | int | None = None,
    bf16_flops: float | None = None,
    name: str = "custom",
) -> GPU:
    """A GPU described by the user: `memory` is taken as the device total the framework reports.

    `memory` accepts what `units.parse_bytes` does ("48GiB", "80GB" = 80*10^9, 85029158912).
    `bandwidth` is bytes/s or text like "3.35TB/s"; `bf16_flops` is dense bf16 FLOP/s (e.g. 989e12).
    Left out, either is 0, meaning unknown; fp8 is always unknown (None).

    Raises:
        InvalidInputError: memory (field "gpu_memory"), bandwidth or bf16_flops malformed or not positive.
    """
    memory_bytes = parse_bytes(memory, field="gpu_memory")
    if memory_bytes <= 0:
        raise InvalidInputError("gpu_memory", f"must be positive, got {show_number(memory_bytes)} bytes")
    if memory_bytes > MAX_BYTES:
        raise InvalidInputError("gpu_memory", f"{show_number(memory_bytes)} bytes is absurdly large")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError("gpu", "a custom GPU needs a non-empty name")
    return GPU(
        name=name,
        vendor="custom",
        marketing_memory=memory if isinstance(memory, str) else f"{memory_bytes:,} bytes",
        memory_bytes=memory_bytes,
        bandwidth_bytes_per_s=0 if bandwidth is None else _parse_bandwidth(bandwidth),
        bf16_dense_flops=0 if bf16_flops is None else _parse_flops(bf16_flops),
        fp8_dense_flops=None,
        source="user-supplied" if (bandwidth is not None or bf16_flops is not None) else "unknown (not given)",
        memory_note="user-supplied; taken as the device total the framework reports",
        memory_bytes_source="user",
    )
