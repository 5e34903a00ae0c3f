"""A serving workload and its latency SLA, parsed and validated once.

A workload is *who* is served: either `users` concurrent sessions or a `request_rate` (requests/s),
and *what* each request is: prompt and output lengths, as means, as means with a p95, or as an
explicit length distribution (a CSV/JSON of per-request lengths, or a histogram with counts), plus
a shared prefix (system prompt) that engines with prefix caching store once.

Two facts from queueing theory are used, both Little's law (L = λ·W, for any stable system):

* concurrency = request rate × time a request spends in the system (`littles_law_concurrency`);
* the requests *live* at any instant are length-biased: a request occupies the engine for a time
  proportional to its output tokens, so among concurrent requests a class with share `c_i` of the
  requests and `O_i` output tokens has share `c_i·O_i / Σ c_j·O_j` (`LengthClass.live_share`).

Each request's KV is sized at its end (prompt + output tokens): the most it will hold, and what the
engine must have room for unless it preempts. This module knows tokens, not bytes: the engines turn
lengths into blocks and bytes (see `kvplan.recommend`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from kvplan.errors import InvalidInputError
from kvplan.units import MAX_TOKENS, check_count, parse_tokens

__all__ = ["Workload", "SLA", "LengthClass", "make_workload", "make_sla", "read_lengths",
           "littles_law_concurrency", "lognormal_quantiles", "Z95", "MAX_LENGTH_CLASSES"]

Z95 = 1.6448536269514722  # standard normal 95th percentile
MAX_LENGTH_CLASSES = 16  # distinct request lengths kept after bucketing (each bucket takes its longest)
MAX_ROWS = 1_000_000  # rows read from a lengths file: bounded work from a small input
MAX_USERS = 10**7
MAX_RATE = 10**6  # requests/s


@dataclass(frozen=True)
class LengthClass:
    """Requests of one (prompt, output) length: `share` of all requests (shares sum to 1) and
    `live_share` of the requests in flight at any instant (∝ share × output tokens, Little's law)."""

    prompt_tokens: int
    output_tokens: int
    share: float
    live_share: float

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "share": self.share, "live_share": self.live_share}


@dataclass(frozen=True)
class Workload:
    """A validated workload. Exactly one of `users` / `request_rate` is set.

    `prompt_tokens` / `output_tokens` are request-weighted means; `prompt_p95` / `output_p95` the
    95th percentiles of the distribution (the mean when only a mean was given); `classes` the
    distribution the planner sizes over (at most MAX_LENGTH_CLASSES); `max_model_len` the engine
    setting (default: the longest request, capped at the model's maximum); `prefix_tokens` a shared
    prefix counted in every prompt (and stored once where the engine caches prefixes).
    """

    users: int | None
    request_rate: float | None
    prompt_tokens: float
    output_tokens: float
    prompt_p95: int
    output_p95: int
    prefix_tokens: int
    max_model_len: int
    classes: tuple[LengthClass, ...]
    distribution: str  # "mean" | "lognormal (mean, p95)" | "lengths (N requests)"
    notes: tuple[str, ...] = ()

    @property
    def longest_request(self) -> int:
        return max(c.total_tokens for c in self.classes)

    @property
    def live_mean_context(self) -> float:
        """Mean context a live request holds during decode (prompt + half its output), live-weighted."""
        return sum(c.live_share * (c.prompt_tokens + c.output_tokens / 2) for c in self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {"users": self.users, "request_rate": self.request_rate, "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens, "prompt_p95": self.prompt_p95, "output_p95": self.output_p95,
                "prefix_tokens": self.prefix_tokens, "max_model_len": self.max_model_len,
                "longest_request": self.longest_request, "distribution": self.distribution,
                "classes": [c.to_dict() for c in self.classes], "notes": list(self.notes)}


@dataclass(frozen=True)
class SLA:
    """Latency targets; None = no target. `tpot_ms`: time per output token (decode) per user;
    `ttft_ms`: time to first token for a p95-length prompt, excluding queueing."""

    tpot_ms: float | None = None
    ttft_ms: float | None = None

    @property
    def min_tokens_per_s_per_user(self) -> float | None:
        return None if self.tpot_ms is None else 1000.0 / self.tpot_ms

    def to_dict(self) -> dict[str, Any]:
        return {"tpot_ms": self.tpot_ms, "ttft_ms": self.ttft_ms,
                "min_tokens_per_s_per_user": self.min_tokens_per_s_per_user}


def littles_law_concurrency(request_rate: float, seconds_per_request: float) -> float:
    """Little's law, L = λ·W: requests in flight for `request_rate` requests/s that each stay
    `seconds_per_request` (TTFT + output tokens × TPOT).

    >>> littles_law_concurrency(2.0, 15.0)  # 2 req/s, 15 s each: 30 in flight
    30.0
    """
    return request_rate * seconds_per_request


def _positive_number(value: Any, field: str, *, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(field, f"expected a number, got {value!r}")
    if value <= 0:
        raise InvalidInputError(field, f"must be positive, got {value!r}")
    if value > maximum:
        raise InvalidInputError(field, f"{value!r} is absurdly large (limit {maximum:g})")
    return float(value)


def _tokens(value: Any, field: str, *, minimum: int = 1) -> int:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(field, f"expected a token count, got {value!r}")
        value = math.ceil(value)
    n = parse_tokens(value, field)
    if n < minimum:
        raise InvalidInputError(field, f"must be at least {minimum}, got {n}")
    if n > MAX_TOKENS:
        raise InvalidInputError(field, f"{n:,} tokens is absurdly large")
    return n


def lognormal_quantiles(mean: float, p95: float, k: int, field: str) -> list[int]:
    """`k` equally likely lengths (the quantiles at (i+½)/k) of the lognormal with this mean and p95.

    A lognormal with mean m and p95 q has σ = z − √(z² − 2·ln(q/m)) (z = 1.645, the smaller root),
    which exists only for q/m ≤ e^(z²/2) ≈ 3.87; beyond that give the lengths themselves.
    """
    if p95 < mean:
        raise InvalidInputError(field, f"the p95 ({p95:g}) is below the mean ({mean:g})")
    if p95 == mean:
        return [math.ceil(mean)] * k
    disc = Z95 * Z95 - 2 * math.log(p95 / mean)
    if disc < 0:
        raise InvalidInputError(field, f"a p95 {p95 / mean:.2f}× the mean is more skewed than a lognormal "
                                       "allows (at most 3.87×); pass the lengths themselves (--lengths FILE)")
    sigma = Z95 - math.sqrt(disc)
    mu = math.log(mean) - sigma * sigma / 2
    from statistics import NormalDist

    nd = NormalDist()
    return [max(1, math.ceil(math.exp(mu + sigma * nd.inv_cdf((i + 0.5) / k)))) for i in range(k)]


def read_lengths(source: str | Path | Iterable) -> list[tuple[int, int, int]]:
    """Per-request lengths as (prompt_tokens, output_tokens, count) rows.

    `source` is a path to a .csv or .json file, or already-parsed rows. CSV: a header naming
    `prompt_tokens` and `output_tokens` (and optionally `count`, making it a histogram); other
    columns are ignored. JSON: a list of objects with those keys, or {"requests": [...]}.
    Rows (or a list of [prompt, output] / [prompt, output, count]) may also be passed directly.
    """
    field = "lengths"
    rows: list[Any]
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as err:
            raise InvalidInputError(field, f"cannot read {str(source)!r}: {err.strerror or err}") from None
        if size > 64 * 1024 * 1024:
            raise InvalidInputError(field, f"{str(source)!r} is larger than 64 MiB")
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
            try:
                data = json.loads(text)
            except ValueError as err:
                raise InvalidInputError(field, f"{path.name}: not valid JSON ({err})") from None
            rows = data.get("requests") if isinstance(data, dict) else data
            if not isinstance(rows, list):
                raise InvalidInputError(field, f"{path.name}: expected a list of requests or {{\"requests\": [...]}}")
        else:
            reader = csv.DictReader(io.StringIO(text))
            names = {(n or "").strip().lower() for n in (reader.fieldnames or [])}
            if not {"prompt_tokens", "output_tokens"} <= names:
                raise InvalidInputError(field, f"{path.name}: the CSV header must name prompt_tokens and "
                                               f"output_tokens (found: {', '.join(sorted(names)) or 'none'})")
            rows = []
            for i, row in enumerate(reader):
                if i >= MAX_ROWS:
                    raise InvalidInputError(field, f"{path.name}: more than {MAX_ROWS:,} rows")
                rows.append({(k or "").strip().lower(): v for k, v in row.items()})
    else:
        rows = list(source)
    out: list[tuple[int, int, int]] = []
    if len(rows) > MAX_ROWS:
        raise InvalidInputError(field, f"more than {MAX_ROWS:,} rows")
    for i, row in enumerate(rows):
        try:
            if isinstance(row, dict):
                p, o, c = row.get("prompt_tokens"), row.get("output_tokens"), row.get("count", 1)
            else:
                p, o, *rest = row
                c = rest[0] if rest else 1
            p_i = _int_cell(p, "prompt_tokens", minimum=1)
            o_i = _int_cell(o, "output_tokens", minimum=1)
            c_i = _int_cell(1 if c in (None, "") else c, "count", minimum=0)
        except InvalidInputError as err:
            raise InvalidInputError(field, f"row {i + 1}: {err}") from None
        except (TypeError, ValueError):
            raise InvalidInputError(field, f"row {i + 1}: expected prompt_tokens, output_tokens[, count]") from None
        if c_i:
            out.append((p_i, o_i, c_i))
    if not out:
        raise InvalidInputError(field, "no requests (every row is empty or has count 0)")
    return out


def _int_cell(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise InvalidInputError(name, f"expected a whole number, got {value!r}")
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        try:
            value = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            raise InvalidInputError(name, f"expected a whole number, got {value!r}") from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise InvalidInputError(name, f"expected a whole number, got {value!r}")
        value = int(value)
    return check_count(value, name, minimum=minimum)


def _quantile(values: list[tuple[int, float]], q: float) -> int:
    """The smallest value whose cumulative weight reaches q (values sorted, weights summing to 1)."""
    acc = 0.0
    for v, w in values:
        acc += w
        if acc >= q - 1e-12:
            return v
    return values[-1][0]


def _bucket(rows: list[tuple[int, int, float]], limit: int) -> tuple[list[tuple[int, int, float]], bool]:
    """Merge rows into at most `limit` classes by total length (equal-weight quantile buckets); each
    bucket takes its longest prompt and longest output, so memory is never underestimated."""
    merged: dict[tuple[int, int], float] = {}
    for p, o, w in rows:
        merged[(p, o)] = merged.get((p, o), 0.0) + w
    items = sorted(merged.items(), key=lambda kv: (kv[0][0] + kv[0][1], kv[0]))
    if len(items) <= limit:
        return [(p, o, w) for (p, o), w in items], False
    total = sum(w for _, w in items)
    buckets: dict[int, list] = {}
    acc = 0.0
    for (p, o), w in items:
        index = min(limit - 1, int(acc / total * limit))
        b = buckets.setdefault(index, [0, 0, 0.0])
        b[0], b[1], b[2] = max(b[0], p), max(b[1], o), b[2] + w
        acc += w
    out = [(p, o, w) for p, o, w in buckets.values()]
    return out, True


def make_workload(*, users: int | None = None, request_rate: float | None = None,
                  prompt_tokens: int | str | float | None = None, output_tokens: int | str | float | None = None,
                  prompt_p95: int | str | float | None = None, output_p95: int | str | float | None = None,
                  lengths: Any = None, prefix_tokens: int | str = 0, max_model_len: int | str | None = None,
                  model_max_len: int = 0) -> Workload:
    """Validate a workload once. Give `users` or `request_rate`; `prompt_tokens` and `output_tokens`
    (means; "8k" works) or `lengths` (see `read_lengths`); optionally a p95 for either mean (a
    lognormal with that mean and p95, discretised into 8 equally likely lengths).

    `model_max_len` (the model's max_position_embeddings; 0 = unknown) caps the default
    `max_model_len` and rejects requests longer than the model can take.

    Raises:
        InvalidInputError naming the field: negative or zero tokens, both or neither of users and
        request_rate, a prefix longer than the prompt, a request beyond the model's maximum context.
    """
    notes: list[str] = []
    if (users is None) == (request_rate is None):
        raise InvalidInputError("users", "give either users (concurrent sessions) or request_rate (requests/s)")
    if users is not None:
        if isinstance(users, bool) or not isinstance(users, int) or users < 1:
            raise InvalidInputError("users", f"must be a whole number ≥ 1, got {users!r}")
        if users > MAX_USERS:
            raise InvalidInputError("users", f"{users:,} concurrent users is absurdly many (limit {MAX_USERS:,})")
    rate = None if request_rate is None else _positive_number(request_rate, "request_rate", maximum=MAX_RATE)
    prefix = _tokens(prefix_tokens, "prefix_tokens", minimum=0)

    rows: list[tuple[int, int, float]]
    if lengths is not None:
        if prompt_p95 is not None or output_p95 is not None:
            raise InvalidInputError("lengths", "give either a lengths file or p95 values, not both")
        raw = read_lengths(lengths)
        n = sum(c for _, _, c in raw)
        rows = [(p, o, c / n) for p, o, c in raw]
        distribution = f"lengths ({n:,} requests)"
    else:
        if prompt_tokens is None:
            raise InvalidInputError("prompt_tokens", "give the mean prompt length (or a lengths file)")
        if output_tokens is None:
            raise InvalidInputError("output_tokens", "give the mean output length (or a lengths file)")
        p_mean = _mean(prompt_tokens, "prompt_tokens")
        o_mean = _mean(output_tokens, "output_tokens")
        k = 8
        ps = [math.ceil(p_mean)] if prompt_p95 is None else lognormal_quantiles(
            p_mean, _mean(prompt_p95, "prompt_p95"), k, "prompt_p95")
        os_ = [math.ceil(o_mean)] if output_p95 is None else lognormal_quantiles(
            o_mean, _mean(output_p95, "output_p95"), k, "output_p95")
        rows = [(p, o, 1.0 / (len(ps) * len(os_))) for p in ps for o in os_]
        distribution = "mean" if len(rows) == 1 else "lognormal (mean, p95)"

    p_mean = sum(p * w for p, _, w in rows)
    o_mean = sum(o * w for _, o, w in rows)
    p95 = _quantile(sorted((p, w) for p, _, w in rows), 0.95)
    o95 = _quantile(sorted((o, w) for _, o, w in rows), 0.95)
    longest = max(p + o for p, o, _ in rows)
    shortest_prompt = min(p for p, _, _ in rows)
    if prefix > shortest_prompt:
        raise InvalidInputError("prefix_tokens", f"the shared prefix ({prefix:,}) is longer than the shortest "
                                                 f"prompt ({shortest_prompt:,}); it is part of every prompt")
    if model_max_len:
        worst = max(rows, key=lambda r: r[0] + r[1])
        if worst[0] > model_max_len:
            field = "lengths" if lengths is not None else ("prompt_p95" if prompt_p95 is not None else "prompt_tokens")
            raise InvalidInputError(field, f"a {worst[0]:,}-token prompt is beyond the model's maximum context "
                                           f"({model_max_len:,} tokens)")
        if longest > model_max_len:
            field = "lengths" if lengths is not None else ("output_tokens" if prompt_p95 is None and
                                                           output_p95 is None else "output_p95")
            raise InvalidInputError(field, f"a request of {worst[0]:,} prompt + {worst[1]:,} output tokens is "
                                           f"beyond the model's maximum context ({model_max_len:,} tokens)")
    if max_model_len is None:
        length = longest
    else:
        length = _tokens(max_model_len, "max_model_len")
        if model_max_len and length > model_max_len:
            raise InvalidInputError("max_model_len", f"{length:,} is beyond the model's maximum context "
                                                     f"({model_max_len:,} tokens)")
        if length < longest:
            raise InvalidInputError("max_model_len", f"{length:,} is shorter than the longest request "
                                                     f"({longest:,} tokens); the engine would reject it")
    bucketed, merged = _bucket(rows, MAX_LENGTH_CLASSES)
    if merged:
        notes.append(f"{len(rows):,} distinct lengths merged into {len(bucketed)} classes, each sized at its "
                     "longest request (memory is never underestimated)")
    live_total = sum(w * o for _, o, w in bucketed)
    classes = tuple(LengthClass(p, o, w, w * o / live_total) for p, o, w in bucketed)
    return Workload(users=users, request_rate=rate, prompt_tokens=p_mean, output_tokens=o_mean, prompt_p95=p95,
                    output_p95=o95, prefix_tokens=prefix, max_model_len=length, classes=classes,
                    distribution=distribution, notes=tuple(notes))


def _mean(value: Any, field: str) -> float:
    if isinstance(value, bool):
        raise InvalidInputError(field, f"expected a token count, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value <= 0:
            raise InvalidInputError(field, f"must be a positive number of tokens, got {value!r}")
        if value > MAX_TOKENS:
            raise InvalidInputError(field, f"{value:,.0f} tokens is absurdly large")
        return value
    if isinstance(value, int) and value <= 0:
        raise InvalidInputError(field, f"must be a positive number of tokens, got {value}")
    return float(_tokens(value, field))


def make_sla(*, tpot_ms: float | None = None, min_tokens_per_s_per_user: float | None = None,
             ttft_ms: float | None = None) -> SLA:
    """Validate latency targets. `min_tokens_per_s_per_user` is the same target as `tpot_ms`
    (tpot = 1000 / rate); give one.

    >>> make_sla(min_tokens_per_s_per_user=20).tpot_ms
    50.0
    """
    if tpot_ms is not None and min_tokens_per_s_per_user is not None:
        raise InvalidInputError("tpot_ms", "give tpot_ms or min_tokens_per_s_per_user, not both")
    tpot = None if tpot_ms is None else _positive_number(tpot_ms, "tpot_ms", maximum=3.6e6)
    if min_tokens_per_s_per_user is not None:
        tpot = 1000.0 / _positive_number(min_tokens_per_s_per_user, "min_tokens_per_s_per_user", maximum=1e6)
    ttft = None if ttft_ms is None else _positive_number(ttft_ms, "ttft_ms", maximum=3.6e6)
    return SLA(tpot_ms=tpot, ttft_ms=ttft)
