"""Byte and token units: constants, parsing ("32k", "80GB", "20GiB") and display.

Bytes are ints everywhere inside kvplan; only `fmt_bytes` turns them into text. Binary units (GiB =
2^30) are the default display, as torch and the engines' logs use them; decimal GB appear only where
labelled (GPU marketing sizes).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, DecimalException

from kvplan.errors import InvalidInputError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30  # what torch, vLLM ("GiB") and llama.cpp ("MiB") print
TiB = 1 << 40
KB = 10**3
MB = 10**6
GB = 10**9  # GPU marketing sizes ("H100 80GB") and SGLang's "GB" are decimal or binary: label them
TB = 10**12

# Token counts: "32k" = 32,768 as every engine's --max-model-len / -c users mean it.
_TOKEN_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20}
_BYTE_SUFFIX = {
    "": 1, "b": 1,
    "k": KiB, "kib": KiB, "kb": KB,
    "m": MiB, "mib": MiB, "mb": MB,
    "g": GiB, "gib": GiB, "gb": GB,
    "t": TiB, "tib": TiB, "tb": TB,
}
_NUMBER = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)

# Anything above these is a typo, not a plan (10M-token contexts exist; 2^40 tokens do not).
MAX_TOKENS = 1 << 34
MAX_BYTES = 1 << 60


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ints: how many size-`b` blocks hold `a` items."""
    return -(-a // b)


def _parse(text: str | int, suffixes: dict[str, int], field: str, what: str, floor: bool = False) -> int:
    if isinstance(text, bool):
        raise InvalidInputError(field, f"expected {what}, got a boolean")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        if math.isfinite(text) and floor and 0 <= text <= 2**62:
            return int(text)
        if not math.isfinite(text) or text != int(text):
            raise InvalidInputError(field, f"expected a whole number of {what}, got {text!r}")
        return int(text)
    if not isinstance(text, str):
        raise InvalidInputError(field, f"expected {what} like '32k', got {type(text).__name__}")
    m = _NUMBER.match(text)
    if not m or m.group(2).lower() not in suffixes:
        raise InvalidInputError(
            field, f"cannot read {text!r} as {what}; write e.g. {'32k or 131072' if what == 'tokens' else '80GB, 20GiB or 1073741824'}"
        )
    number = m.group(1).replace("_", "").replace(",", "")
    scale = suffixes[m.group(2).lower()]
    if len(number) > 40:  # int() refuses > 4300 digits and Decimal overflows on "1e9999999999"
        raise InvalidInputError(field, f"{text[:40]!r}... is too large")
    if "." in number or "e" in number.lower():
        try:  # exact decimal arithmetic: "0.017TB" is 17,000,000,000 bytes, not 16,999,999,999.99
            value = Decimal(number) * scale
        except DecimalException:
            raise InvalidInputError(field, f"cannot read {text!r} as {what}") from None
        if value > 2**62:
            raise InvalidInputError(field, f"{text!r} is too large")
        if floor:  # "51.38GiB" as engines print it: a fraction of a byte is dropped
            return int(value)
        if value != value.to_integral_value():
            raise InvalidInputError(field, f"{text!r} is not a whole number of {what}")
        return int(value)
    return int(number) * scale


def parse_tokens(text: str | int, field: str = "context") -> int:
    """Parse a token count: 8192, "8k" (= 8192), "128K", "1M" (= 1,048,576), "131_072".

    >>> parse_tokens("32k")
    32768
    """
    return _parse(text, _TOKEN_SUFFIX, field, "tokens")


def parse_bytes(text: str | int, field: str = "size") -> int:
    """Parse a size: 1073741824, "20GiB", "80GB" (decimal), "512MiB"; a bare "G" means GiB.

    Fractions of a byte are dropped ("51.38GiB" as vLLM logs it is 55,168,624,394 bytes).

    >>> parse_bytes("80GB"), parse_bytes("1GiB")
    (80000000000, 1073741824)
    """
    return _parse(text, _BYTE_SUFFIX, field, "bytes", floor=True)


def show_number(value: object, limit: int = 40) -> str:
    """A value for an error message, safe for any input: ints with thousands separators (a 10**5000
    int is not converted: Python refuses str() of ints over 4,300 digits), anything else repr()'d and cut."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 128:
            return f"{'-' if value < 0 else ''}a number of about {int(value.bit_length() * 0.30103):,} digits"
        return f"{value:,}"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def number_or_text(text: str) -> int | float | str:
    """'8' -> 8, '0.9' -> 0.9, anything else unchanged: settings read from a command line or a log."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def check_count(value: int, field: str, *, minimum: int = 1, maximum: int = MAX_TOKENS) -> int:
    """Return `value` if it is an int in [minimum, maximum], else raise InvalidInputError naming `field`.

    Refuses bools, floats (even 2.0: counts are whole numbers by type, or they end up in byte counts),
    strings and bytes: the error names the field, the value and the limit.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, f"expected a whole number, got {show_number(value)}")
    if value < minimum:
        raise InvalidInputError(field, f"must be at least {minimum:,}, got {show_number(value)}")
    if value > maximum:
        raise InvalidInputError(field, f"{show_number(value)} is absurdly large (limit {maximum:,})")
    return value


def fmt_bytes(num_bytes: int, unit: str = "GiB", digits: int = 2) -> str:
    """Format bytes for display: fmt_bytes(2**31) == '2.00 GiB'. Display only; never parse it back."""
    scale = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB, "KB": KB, "MB": MB, "GB": GB, "TB": TB}[unit]
    if unit == "B":
        return f"{num_bytes:,} B"
    return f"{num_bytes / scale:,.{digits}f} {unit}"


def fmt_auto(num_bytes: int) -> str:
    """Format with the largest binary unit that keeps the number >= 1 (display only)."""
    for unit, scale in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(num_bytes) >= scale:
            return fmt_bytes(num_bytes, unit)
    return f"{num_bytes:,} B"
