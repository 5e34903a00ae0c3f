"""What the Plan page shows, computed without streamlit or plotly: the users-vs-context curve of a
deployment, the longest context at which the target users still fit, and the display rows.

Every number comes from `kvplan.plan` (and, for the answer, `kvplan.recommend`); this module only
sweeps and arranges. The curve is computed for one engine instance (tp × pp GPUs) and multiplied by
the data-parallel replicas, so it can be cached per instance while the replica count changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kvplan.engines.common import largest_true
from kvplan.errors import KvplanError

MIN_CONTEXT = 1024
CURVE_POINTS = 14


@dataclass(frozen=True)
class Instance:
    """One engine instance: what a users-vs-context curve depends on (not the replica count)."""

    gpu: str
    tp: int = 1
    pp: int = 1
    engine: str = "vllm"
    kv_dtype: str = "auto"
    weights_dtype: str = "auto"
    prefix_tokens: int = 0
    options: tuple[tuple[str, Any], ...] = ()

    def plan_kwargs(self) -> dict[str, Any]:
        return dict(gpu=self.gpu, tp=self.tp, pp=self.pp, num_gpus=self.tp * self.pp, engine=self.engine,
                    kv_dtype=self.kv_dtype, weights_dtype=self.weights_dtype, **dict(self.options))


@dataclass
class Curve:
    """Whole requests one instance holds at each context (`points`: (context, sequences)), and the
    longest context at which one request fits at all (0: the weights leave no room)."""

    points: list[tuple[int, int]] = field(default_factory=list)
    longest_fitting: int = 0
    errors: list[str] = field(default_factory=list)


def context_points(max_context: int, *marks: int, start: int = MIN_CONTEXT, points: int = CURVE_POINTS) -> list[int]:
    """Log-spaced contexts from `start` (1k; a shared prefix moves it up) to `max_context`, both kept,
    plus every mark within that range."""
    hi = max(int(max_context), MIN_CONTEXT, start)
    lo = min(max(start, MIN_CONTEXT), hi)
    grid = {lo, hi}
    if hi > lo:
        step = (math.log(hi) - math.log(lo)) / max(1, points - 1)
        grid.update(int(round(math.exp(math.log(lo) + i * step))) for i in range(points))
    grid.update(int(m) for m in marks if m and lo <= m <= hi)
    return sorted(grid)


def _sequences(arch, inst: Instance, context: int, plan_fn) -> int:
    """Whole `context`-token requests one instance holds, a shared prefix cached once (0: none fit)."""
    prefix = min(inst.prefix_tokens, context)
    p = plan_fn(arch, max_model_len=context, prefix_tokens=prefix, **inst.plan_kwargs())
    if p.max_sequences < 1:
        return 0
    return int(p.users_with_prefix // max(1, p.dp))


def instance_curve(arch, inst: Instance, contexts: list[int], *, plan_fn=None) -> Curve:
    """The users-vs-context curve of one instance; an engine error ends the curve with a message."""
    if plan_fn is None:
        from kvplan.planner import plan as plan_fn
    out = Curve()
    for ctx in contexts:
        try:
            out.points.append((ctx, _sequences(arch, inst, ctx, plan_fn)))
        except KvplanError as err:
            out.errors.append(str(err))
            break
    fitting = [c for c, n in out.points if n >= 1]
    out.longest_fitting = max(fitting, default=0)
    return out


def longest_context_for(arch, inst: Instance, users_per_instance: int, max_context: int, *,
                        curve: Curve | None = None, plan_fn=None) -> int:
    """The longest context (tokens) at which `users_per_instance` requests fit on one instance, to
    the token; 0 when not even 1 token each fits.

    Without a shared prefix this is the planner's own `max_context_for_users` (one call). With one,
    a bisection over `kvplan.plan`, bracketed by the curve's points when given.
    """
    if plan_fn is None:
        from kvplan.planner import plan as plan_fn
    need = max(1, users_per_instance)
    if not inst.prefix_tokens:
        p = plan_fn(arch, max_model_len=max_context, users=need, **inst.plan_kwargs())
        return int(p.max_context_for_users or 0)
    lo, hi = 1, max_context
    if curve is not None and curve.points:
        ok = [c for c, n in curve.points if n >= need]
        bad = [c for c, n in curve.points if n < need and (not ok or c > max(ok))]
        lo = max(ok, default=1)
        hi = min(bad, default=max_context + 1) - 1 if bad else max_context
    found = largest_true(lo, hi, lambda n: _sequences(arch, inst, n, plan_fn) >= need)
    return max(0, found)


def deployment_rows(curve: Curve, replicas: int, label: str) -> list[dict[str, Any]]:
    """Chart rows: users the whole deployment (all replicas) holds at each context."""
    return [{"deployment": label, "context_len": c, "users": n * replicas} for c, n in curve.points]


# --- Display text -----------------------------------------------------------------------------

def fmt_int(n: int | float) -> str:
    return f"{int(round(n)):,}"


def fmt_tokens(n: int) -> str:
    """Tokens for people: 8,000 / 32,768 (exact, with separators)."""
    return f"{int(n):,}"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{fmt_int(n)} {word if int(round(n)) == 1 else (words or word + 's')}"


def layout_text(tp: int, pp: int, replicas: int) -> str:
    """"TP 4 × 2 replicas", "TP 8 × PP 2", "1 GPU" ... the layout in words."""
    parts = []
    if tp > 1:
        parts.append(f"TP {tp}")
    if pp > 1:
        parts.append(f"PP {pp}")
    if replicas > 1:
        parts.append(plural(replicas, "replica"))
    return " × ".join(parts) if parts else "single GPU"
