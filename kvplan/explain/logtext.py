"""What every engine parser shares: bounded log text, the numbers a log prints, and what was read.

Parsers know text, not bytes: they return `Logged` values exactly as printed (a number, its unit,
the raw line) and `settings`; turning them into bytes and comparing them with kvplan is `compare`'s
job. Hostile input is bounded here: at most `MAX_LOG_CHARS` characters and `MAX_LINES` lines are
read, each line is cut at `MAX_LINE_CHARS`, and the patterns are simple anchored regexes with no
nested repetition, so a log can never make a parser run long or hold much memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kvplan.errors import InvalidInputError, LogParseError
from kvplan.units import GiB, KiB, MiB, number_or_text

MAX_LOG_CHARS = 8 * MiB
"""Biggest log accepted (the largest real vLLM DEBUG startup log we know, TP=4, is 0.64 MB)."""
MAX_LINE_CHARS = 16 * KiB
"""Longer lines (progress bars, dumped tensors) are cut: every line we read is far shorter."""
MAX_LINES = 200_000  # a DEBUG vLLM startup log at TP=4 has about 3,000 lines
SEARCH_CHARS = 4096  # quantity and exception patterns look at a line's first 4 KiB (real ones are < 1 KiB)
HEAD_CHARS = 1024
"""Where a line's label must start for the line to count: every quantity and marker line of every engine
we know has its label in the first few hundred characters; long lines (vLLM's config dump, SGLang's
ServerArgs) are read in full only for settings."""
MAX_LOGGED = 10_000  # quantities kept; a log repeating a line many times keeps the first ones

UNIT_BYTES = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "KB": 10**3, "MB": 10**6, "GB": 10**9}


@dataclass(frozen=True)
class Logged:
    """One number a log printed: `value` in `unit` as printed ("14.99", "GiB"), `decimals` printed."""

    name: str
    value: float
    unit: str
    decimals: int
    line: str
    rank: str = ""

    @property
    def half_step(self) -> float:
        """Half the last printed digit: the printed value is within ± this of the true one."""
        return 0.5 * 10 ** -self.decimals if self.decimals else 0.0

    def to_bytes(self) -> int:
        return int(round(self.value * UNIT_BYTES[self.unit]))

    def byte_interval(self) -> tuple[int, int]:
        scale = UNIT_BYTES[self.unit]
        return (int((self.value - self.half_step) * scale), int((self.value + self.half_step) * scale))


@dataclass
class ParsedLog:
    """What one engine parser read from a log."""

    engine: str  # vllm | sglang | llama.cpp | trtllm | tgi
    variant: str = ""  # "V0" / "V1" (vLLM), "ik_llama.cpp" (llama.cpp fork), "pytorch" (TRT-LLM)
    engine_version: str | None = None
    model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    logged: list[Logged] = field(default_factory=list)
    failure: str | None = None
    failure_kind: str | None = None  # oom | refused | kv_too_small | config | environment | other
    started: bool = False  # the engine got as far as allocating its KV cache

    def add(self, name: str, text: str, unit: str, line: str, rank: str = "") -> None:
        if len(self.logged) >= MAX_LOGGED:
            return
        num = text.replace(",", "").strip()
        decimals = len(num.split(".", 1)[1]) if "." in num else 0
        try:
            value = float(num)
        except ValueError:
            return
        self.logged.append(Logged(name, value, unit, decimals, line[:400], rank))

    def setting(self, key: str, value: Any) -> None:
        if value is not None and value != "":
            self.settings[key] = value

    def first(self, name: str) -> Logged | None:
        return next((q for q in self.logged if q.name == name), None)

    def all(self, name: str) -> list[Logged]:
        return [q for q in self.logged if q.name == name]

    def ranks(self) -> list[str]:
        seen: dict[str, None] = {}
        for q in self.logged:
            seen.setdefault(q.rank, None)
        return list(seen)


def literal(text: str) -> Any:
    """A value as Python's repr printed it in an engine's settings line: 'x' -> x, True/False/None, numbers."""
    if text.startswith("'"):
        return text[1:-1]
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    return number_or_text(text)


def bounded_lines(text: str) -> list[str]:
    """The log's lines, bounded (see the module doc). Carriage returns (progress bars) split lines too."""
    if not isinstance(text, str):
        raise InvalidInputError("log", f"expected the log as text, got {type(text).__name__}")
    if len(text) > MAX_LOG_CHARS:
        raise InvalidInputError("log", f"{len(text):,} characters is more than the {MAX_LOG_CHARS:,} a "
                                       "startup log needs; pass the part up to the KV-cache lines")
    lines = [line[:MAX_LINE_CHARS] for line in re.split(r"\r\n|\r|\n", text)]
    if len(lines) > MAX_LINES:
        raise InvalidInputError("log", f"{len(lines):,} lines is more than the {MAX_LINES:,} a startup log needs; "
                                       "pass the part up to the KV-cache lines")
    return lines


def read_log_file(path: str) -> str:
    """Read a log file (or stdin for "-") as text, refusing more than MAX_LOG_CHARS; undecodable bytes
    become U+FFFD (a log is text; a stray binary byte must not stop the parse)."""
    import sys

    if path == "-":
        data = sys.stdin.buffer.read(MAX_LOG_CHARS + 1)
    else:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_LOG_CHARS + 1)
        except FileNotFoundError:
            raise InvalidInputError("LOGFILE", f"no such file: {path!r}") from None
        except IsADirectoryError:
            raise InvalidInputError("LOGFILE", f"{path!r} is a directory; give the log file") from None
    if len(data) > MAX_LOG_CHARS:
        raise InvalidInputError("LOGFILE", f"more than {MAX_LOG_CHARS:,} bytes; pass the startup part of the log")
    return data.decode("utf-8", errors="replace")


# Exception lines a failed startup ends with ("ValueError: ...", "torch.OutOfMemoryError: ...").
_EXC = re.compile(r"(?:^|[\s:)\]])((?:[A-Za-z_][A-Za-z0-9_]{0,40}\.){0,4}[A-Z][A-Za-z0-9_]{0,60}"
                  r"(?:Error|Exception|Exit)):\s?(.{0,600})")


def exception_line(line: str) -> tuple[str, str] | None:
    m = _EXC.search(line[:2000])
    if not m:
        return None
    return m.group(1), m.group(2).strip()


def classify_failure(cls: str, msg: str) -> str:
    low = (cls + ": " + msg).lower()
    if "out of memory" in low or "outofmemory" in low:
        return "oom"
    if "kv cache is needed" in low or "larger than the available kv cache" in low or \
            "no available memory for the cache blocks" in low or "not enough memory" in low:
        return "kv_too_small"
    if "less than desired gpu memory utilization" in low or "free memory on device" in low:
        return "refused"
    if "max_model_len" in low or "not divisible" in low or "does not recognize this architecture" in low \
            or "not supported" in low or "out of bounds" in low:
        return "config"
    if "connect" in low or "huggingface.co" in low:
        return "environment"
    return "other"


_PRIORITY = ("oom", "kv_too_small", "refused", "config", "environment", "other")


def pick_failure(excs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The root cause among a failed startup's exception lines: the most specific kind, its first line
    (later lines are wrappers: "Engine core initialization failed. See root cause above")."""
    if not excs:
        return None
    kinds = [classify_failure(*e) for e in excs]
    best = min(kinds, key=_PRIORITY.index)
    return excs[kinds.index(best)]


def explain_failure(kind: str, cls: str, msg: str) -> str:
    """The cause of a failed startup, in words (the engine's own message follows, cut to 300 chars)."""
    head = {
        "oom": "the GPU ran out of memory during startup",
        "kv_too_small": "the KV cache budget cannot hold one max_model_len request",
        "refused": "the engine refused to start: less free GPU memory than gpu_memory_utilization asks for "
                   "(another process holds memory on that GPU)",
        "config": "the engine rejected the configuration",
        "environment": "the environment failed (download, network or device setup), not memory",
        "other": "the engine failed",
    }[kind]
    return f"{head}: {cls}: {msg[:300]}"


class Pattern:
    """A compiled pattern with the literal text a line must contain before the regex is tried: the
    prefilter keeps a long hostile line from meeting every pattern of every engine."""

    def __init__(self, source: str):
        self.regex = re.compile(source.replace("{N}", r"([0-9][0-9,]{0,24}(?:\.[0-9]{1,12})?)"))
        # literal runs outside alternations: "(GiB|GB)" or "(?:GPU|cuda)" may hold either text
        plain = re.sub(r"\((?:\?:)?[^()]*\|[^()]*\)", "\x00", source.replace("{N}", "\x00"))
        runs = [] if "|" in plain else re.findall(r"[A-Za-z _:#=-]{4,}", plain)
        self.literal = max(runs, key=len) if runs else ""
        self.pattern = self.regex.pattern

    def search(self, line: str):
        if self.literal:
            at = line.find(self.literal)
            if at < 0:
                return None
            # numbers sit within a few hundred characters of their label (SGLang's "mem usage=" after
            # "Load weight end." is the farthest)
            return self.regex.search(line, max(0, at - 300), at + 600)
        return self.regex.search(line, 0, SEARCH_CHARS)


def num(pattern: str) -> Pattern:
    """A pattern; `{N}` stands for a printed number like 1,234.56."""
    return Pattern(pattern)


def require(parsed: ParsedLog, names: tuple[str, ...], what: str) -> None:
    """A log with neither a failure nor any of `names` is truncated (or not a startup log)."""
    if parsed.failure or any(parsed.first(n) for n in names):
        return
    raise LogParseError(parsed.engine, f"the {parsed.engine} log has no {what}: it ends before the engine "
                                       "allocated its KV cache (truncated?) and shows no error",
                        missing=names)
