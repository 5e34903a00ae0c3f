"""What the Plan page shows, computed without streamlit or plotly: the users-vs-context curve of a
deployment, the longest context at which the target users still fit, and the display rows.

Every number comes from `kvplan.plan` (and, for the answer, `kvplan.recommend`); this module only
sweeps and arranges. The curve is computed for one engine instance (tp × pp GPUs) and multiplied by
the data-parallel replicas, so it can be cached per instance while the replica count changes.
"""

from __future__ import annotations

import math
import re
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


ENGINE_LABELS = {"vllm": "vLLM", "sglang": "SGLang", "llama.cpp": "llama.cpp", "trtllm": "TensorRT-LLM",
                 "transformers": "transformers", "naive": "textbook formula"}
BINDING_LABELS = {"kv_memory": "KV cache memory", "bandwidth": "memory bandwidth (ms/token target)",
                  "compute": "compute (ms/token target)", "ttft": "first-token target", "prefill": "prefill load",
                  "max_num_seqs": "engine's sequence cap", "weights": "weights"}


def engine_label(engine: str) -> str:
    return ENGINE_LABELS.get(engine, engine)


def engine_with_version(d: Any) -> str:
    """"vLLM 0.28.0": the engine and the release whose rules were applied."""
    version = getattr(d, "engine_version", "") or ""
    return f"{engine_label(d.engine)} {version}".strip()


def gib(n: int | float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def deployment_label(d: Any) -> str:
    """"8 × H100-SXM (TP 4 × 2 replicas)"."""
    return f"{d.num_gpus:,} × {d.gpu} ({layout_text(d.tp, d.pp, d.replicas)})"


def request_tokens(workload: Any) -> int:
    """Tokens one request holds at its end (mean prompt + mean output)."""
    return int(round(workload.prompt_tokens + workload.output_tokens))


def answer_sentence(rec: Any) -> str:
    """The answer in one sentence with its numbers (plain text: GPU names come from the catalog,
    engines from kvplan's list; no user text)."""
    d = rec.best
    wl = rec.workload
    what = (plural(wl.users, "user") if wl.users is not None else
            f"{wl.request_rate:,.4g} requests/s ({plural(d.users, 'concurrent user')})")
    return (f"{deployment_label(d)} on {engine_label(d.engine)} serve {what} of {fmt_tokens(request_tokens(wl))} "
            f"tokens; about {d.decode_tokens_per_s_per_user:,.0f} tokens/s per user.")


def answer_details(rec: Any) -> str:
    """The second line: room left, what limits it, dtypes, first-token time."""
    d = rec.best
    room = (f"Room for {plural(d.max_users, 'user')} on these GPUs" if d.max_users > d.users
            else "No room for more users")
    return (f"{room} (limit: {BINDING_LABELS.get(d.binding, d.binding)}); KV cache {d.kv_dtype}, weights "
            f"{d.weights_dtype}; first token in about {d.ttft_ms:,.0f} ms.")


def alternatives_rows(rec: Any) -> list[dict[str, Any]]:
    """The ranked deployments as a table for people: human column names, units, separators."""
    rows = []
    for i, d in enumerate(rec.deployments, 1):
        row = {"Rank": i, "Deployment": f"{d.num_gpus:,} × {d.gpu}, {layout_text(d.tp, d.pp, d.replicas)}",
               "Engine": engine_with_version(d), "KV / weights": f"{d.kv_dtype} / {d.weights_dtype}",
               "Users (room for)": f"{fmt_int(d.users)} ({fmt_int(d.max_users)})",
               "Limit": BINDING_LABELS.get(d.binding, d.binding),
               "Tokens/s per user": f"{d.decode_tokens_per_s_per_user:,.0f}",
               "First token": f"{d.ttft_ms:,.0f} ms"}
        if d.usd_per_hour is not None:
            row["$ per hour"] = f"{d.usd_per_hour:,.2f}"
        rows.append(row)
    return rows


LEDGER_PARTS = ("weights", "activations", "overhead", "KV in use", "KV free", "not reserved")


def ledger_rows(d: Any) -> list[dict[str, Any]]:
    """Per-GPU memory of a deployment, in the order it is drawn (bytes; the parts sum to the GPU)."""
    m = d.memory
    parts = [("weights", m.weights_bytes), ("activations", m.activation_bytes),
             ("overhead", m.non_torch_bytes + m.cuda_graph_bytes), ("KV in use", m.kv_used_bytes),
             ("KV free", m.kv_free_bytes), ("not reserved", m.unreserved_bytes)]
    return [{"part": name, "bytes": int(value)} for name, value in parts]


LEDGER_WHAT = {"weights": "the model's share on each GPU", "activations": "peak activations (profiling run)",
               "overhead": "CUDA context, comms buffers, CUDA graphs", "KV in use": "the users' requests at full length",
               "KV free": "the rest of the engine's KV budget", "not reserved": "left out of the engine's memory fraction"}


def ledger_table(rows: list[dict[str, Any]], gpu_memory_bytes: int, *,
                 kv_measured: bool = False) -> list[dict[str, str]]:
    """The ledger as a short table: part, GiB per GPU, what it is (`kv_measured`: the KV budget is the
    measured one the user gave, so what is left is not the engine's headroom)."""
    what = {**LEDGER_WHAT, **({"KV free": "the rest of the measured KV memory",
                               "not reserved": "outside the measured KV memory"} if kv_measured else {})}
    out = [{"Part": r["part"], "Per GPU": gib(r["bytes"]), "What it is": what[r["part"]]} for r in rows]
    out.append({"Part": "total", "Per GPU": gib(gpu_memory_bytes), "What it is": "the GPU's memory"})
    return out


def latency_notes(rec: Any) -> list[str]:
    """What the latency figures assume, in words (from the recommendation's own assumptions)."""
    d, a = rec.best, rec.assumptions
    out = [f"Decode: about {d.tpot_ms:,.1f} ms per token per user ({d.decode_tokens_per_s_per_user:,.0f} tokens/s), "
           f"{d.decode_bound}-bound at {plural(d.users_per_instance, 'user')} per instance; "
           f"first token about {d.ttft_ms:,.0f} ms for a {fmt_tokens(rec.workload.prompt_p95)}-token prompt."]
    bw, fl = a.get("bandwidth_efficiency"), a.get("compute_efficiency")
    if bw is not None and fl is not None:
        out.append(f"These are roofline estimates, not measurements: the GPU is assumed to reach {bw:.0%} of its "
                   f"peak memory bandwidth while decoding and {fl:.0%} of its peak bf16 compute during prefill.")
    if a.get("prefill_sharing"):
        out.append("Prefills share the GPU with decoding: the time per token is stretched by the share of "
                   "time spent on prefills (from the request rate, Little's law). Queueing is not included.")
    return out


# --- A given deployment ("how many users on my 2 × H100?") --------------------------------------

TP_CHOICES = (1, 2, 4, 8, 16)
PP_CHOICES = (1, 2, 4, 8)


def fixed_plan(arch, *, gpu: str, num_gpus: int, tp: int, engine: str, kv_dtype: str, weights_dtype: str,
               prefix_tokens: int, request_tokens: int, pp: int = 1, engine_version: str | None = None,
               plan_fn=None, **options: Any):
    """`kvplan.plan` for a deployment the user already has: `num_gpus` GPUs in tp × pp instances,
    each request `request_tokens` long (the engine's max_model_len); `options` are plan's own
    (gpu_memory_utilization, kv_memory, the engine's options)."""
    if plan_fn is None:
        from kvplan.planner import plan as plan_fn
    extra = {"engine_version": engine_version} if engine_version else {}
    return plan_fn(arch, gpu=gpu, num_gpus=num_gpus, tp=tp, pp=pp, engine=engine, kv_dtype=kv_dtype,
                   weights_dtype=weights_dtype, max_model_len=request_tokens,
                   prefix_tokens=min(prefix_tokens, request_tokens), **extra, **options)


def fixed_users(p) -> int:
    """Whole requests of `max_model_len` tokens the deployment holds at once (0: not even one)."""
    return int(p.users_with_prefix) if p.max_sequences >= 1 else 0


def fixed_sentence(p) -> str:
    users = fixed_users(p)
    where = f"{p.num_gpus:,} × {p.gpu} ({layout_text(p.tp, p.pp, p.dp)}) on {engine_label(p.engine)}"
    if not users:
        return (f"{where}: not one {fmt_tokens(p.max_model_len)}-token request fits; the longest that fits is "
                f"{fmt_tokens(p.max_model_len_that_fits)} tokens.")
    return f"{where} hold {plural(users, 'user')} of {fmt_tokens(p.max_model_len)} tokens at once."


def fixed_ledger_rows(p) -> list[dict[str, Any]]:
    """A plan's per-GPU memory in the ledger's parts, the deployment full (every request at full length)."""
    budget = max(0, p.kv_budget_bytes)
    used = min(budget, p.max_sequences * p.kv_bytes_per_sequence)
    parts = [("weights", p.weights_bytes), ("activations", p.activation_bytes),
             ("overhead", p.non_torch_bytes + p.cuda_graph_bytes), ("KV in use", used), ("KV free", budget - used),
             ("not reserved", max(0, p.free_bytes))]
    return [{"part": name, "bytes": int(value)} for name, value in parts]


def alternative_cards(rec: Any) -> list[tuple[str, str]]:
    """The ranked deployments for a narrow screen, one card each: a title (rank, deployment, engine)
    and one line of figures in words (plain text). The same numbers as `alternatives_rows`."""
    out = []
    for i, d in enumerate(rec.deployments, 1):
        title = f"{i}. {d.num_gpus:,} × {d.gpu}, {layout_text(d.tp, d.pp, d.replicas)} · {engine_with_version(d)}"
        figures = [f"{plural(d.users, 'user')} (room for {fmt_int(d.max_users)})",
                   f"{d.decode_tokens_per_s_per_user:,.0f} tokens/s per user", f"first token {d.ttft_ms:,.0f} ms",
                   f"limit: {BINDING_LABELS.get(d.binding, d.binding)}", f"KV {d.kv_dtype}, weights {d.weights_dtype}"]
        if d.usd_per_hour is not None:
            figures.append(f"${d.usd_per_hour:,.2f} per hour")
        out.append((title, " · ".join(figures)))
    return out


_OPTION = re.compile(r" (?=--[A-Za-z]|-(?!m )[A-Za-z])")  # before each flag, not python's "-m"


def shell_lines(command: str) -> str:
    """The launch command with one option per line (backslash continuations): a narrow code box
    otherwise wraps inside a flag ("... 0.92 -" / "-max-num-seqs 4"). Pasted into a shell it is the
    same command."""
    return _OPTION.sub(" \\\n  ", command)
