"""Element sizes of KV-cache dtypes, as exact integer ratios.

A dtype stores `block_elems` values in `block_bytes` bytes: bf16 is (2 B per 1 value), fp8 (1 per 1),
int4 (1 per 2), llama.cpp's q8_0 (34 per 32: 32 int8 values + one fp16 scale), NVFP4 (9 per 16:
16 packed 4-bit values + one fp8 scale). `row_bytes(n)` is exact for any n that is a multiple of the
block. Which engine accepts which dtype is the engines' business, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from kvplan.errors import UnsupportedDtypeError
from kvplan.units import cdiv


@dataclass(frozen=True)
class Dtype:
    """A storage type: `block_bytes` bytes hold `block_elems` values."""

    name: str
    block_bytes: int
    block_elems: int = 1

    def row_bytes(self, num_elems: int) -> int:
        """Bytes of a row of `num_elems` values (ggml_row_size); rounds up to whole blocks."""
        return cdiv(num_elems, self.block_elems) * self.block_bytes

    @property
    def bits(self) -> float:
        """Average bits per value, for display only."""
        return 8 * self.block_bytes / self.block_elems


# Canonical names. llama.cpp block sizes: ggml/src/ggml.c :: type_traits (ENGINE_KV_SPEC.md C.2).
DTYPES: dict[str, Dtype] = {d.name: d for d in (
    Dtype("fp32", 4),
    Dtype("bf16", 2),
    Dtype("fp16", 2),
    Dtype("fp8", 1),
    Dtype("fp8_e4m3", 1),
    Dtype("fp8_e5m2", 1),
    Dtype("int8", 1),
    Dtype("int4", 1, 2),
    Dtype("nvfp4", 9, 16),  # vLLM: head_size//2 + head_size//16 bytes per K or V row
    Dtype("q8_0", 34, 32),
    Dtype("q5_1", 24, 32),
    Dtype("q5_0", 22, 32),
    Dtype("q4_1", 20, 32),
    Dtype("q4_0", 18, 32),
    Dtype("iq4_nl", 18, 32),
)}

ALIASES = {
    "float32": "fp32", "f32": "fp32", "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "f16": "fp16", "half": "fp16",
    "fp8_inc": "fp8", "float8_e4m3fn": "fp8_e4m3", "float8_e5m2": "fp8_e5m2",
    "uint8": "int8",
}

QUANT_BLOCK_TYPES = ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")
KV_DTYPE_NAMES = ("auto", *DTYPES)


@lru_cache(maxsize=256)
def _canonical(name: str) -> str | None:
    key = name.strip().lower().removeprefix("torch.")
    key = ALIASES.get(key, key)
    return key if key == "auto" or key in DTYPES else None


def canonical(name: str) -> str:
    """Map a user or config spelling ("bfloat16", "F16", "torch.float16") to a canonical name.

    Raises:
        UnsupportedDtypeError: the name is not a dtype kvplan knows.
    """
    if not isinstance(name, str):
        raise UnsupportedDtypeError(repr(name), "expected a dtype name such as bf16, fp8 or q8_0")
    key = _canonical(name)
    if key is not None:
        return key
    raise UnsupportedDtypeError(name, f"unknown; choose one of {', '.join(KV_DTYPE_NAMES)}")


def get_dtype(name: str) -> Dtype:
    """The Dtype for a concrete (non-"auto") name or alias."""
    key = canonical(name)
    if key == "auto":
        raise UnsupportedDtypeError(name, "'auto' must be resolved against the model's dtype first")
    return DTYPES[key]
