"""Sizing-core speed, printed (no assertions: performance claims live here, not in timed tests).

1. Cold start, as whole processes with bytecode cached (as an installed user has it):
   `python -m kvplan size meta-llama/Llama-3.1-8B --context 8192 --json` and
   `python -m kvplan plan meta-llama/Llama-3.1-8B --gpu H100 --tp 2 --max-model-len 8000 --json`
   next to a bare `python -c "import pydantic"`. The commands are INTERLEAVED: every round runs each
   command once (in a rotating order), so machine drift hits all of them alike; the figure is the
   median of the per-round ratios. Targets: size <= 2.0x, plan <= 2.5x `import pydantic`.
   When hf-mem (https://pypi.org/project/hf-mem/) is installed, its cold start (`python -m hf_mem
   --help`: import and CLI set-up; a real estimate needs the network) joins the rounds too.
2. A sweep of every bundled model x every engine x 200 context lengths (target: <= 1.5 us/estimate),
   next to the former way (the engine's kv_cache at each context), interleaved model by model.
3. The capacity chart's core (kvplan.ui.sweeps.users_vs_context: one plan per context).

Usage: python benchmarks/sizing.py [--rounds 15] [--skip-cold] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PY = sys.executable
COMMANDS = {
    "import pydantic": [PY, "-c", "import pydantic"],
    "kvplan size": [PY, "-m", "kvplan", "size", "meta-llama/Llama-3.1-8B", "--context", "8192", "--json"],
    "kvplan plan": [PY, "-m", "kvplan", "plan", "meta-llama/Llama-3.1-8B", "--gpu", "H100", "--tp", "2",
                    "--max-model-len", "8000", "--json"],
}
TARGETS = {"kvplan size": 2.0, "kvplan plan": 2.5}
BASE = "import pydantic"


def run_once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def cold(rounds: int) -> None:
    commands = dict(COMMANDS)
    if importlib.util.find_spec("hf_mem") is not None:
        commands["hf-mem (start-up)"] = [PY, "-m", "hf_mem", "--help"]
    for cmd in commands.values():  # warm-up: write bytecode and fill the OS file cache, not timed
        run_once(cmd)
    names = list(commands)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for name in order:
            times[name].append(run_once(commands[name]))
    print(f"cold start, {rounds} interleaved rounds (bytecode cached):")
    for name in names:
        print(f"  {name:<20} median {statistics.median(times[name]) * 1000:7.1f} ms  "
              f"(min {min(times[name]) * 1000:.1f})")
    for name in names:
        if name == BASE:
            continue
        ratios = [t / b for t, b in zip(times[name], times[BASE])]
        target = f"  (target <= {TARGETS[name]}x)" if name in TARGETS else ""
        print(f"  {name} / {BASE}: per round " + " ".join(f"{x:.2f}" for x in ratios))
        print(f"    median of per-round ratios: {statistics.median(ratios):.2f}x{target}")
    if "hf-mem (start-up)" in times:
        ratios = [s / h for s, h in zip(times["kvplan size"], times["hf-mem (start-up)"])]
        print(f"  kvplan size / hf-mem start-up: per round " + " ".join(f"{x:.2f}" for x in ratios))
        print(f"    median of per-round ratios: {statistics.median(ratios):.2f}x")
    else:
        print("  (hf-mem not installed: `pip install hf-mem` to compare against it; optional)")


def sweep(rounds: int = 5) -> None:
    import kvplan
    from kvplan.api import _prepare
    from kvplan.engines import ENGINE_NAMES
    from kvplan.engines.common import make_request

    contexts = [int(1024 * 1.04 ** i) for i in range(200)]  # 1k .. ~2.6M tokens
    archs = [kvplan.load_model(m) for m in kvplan.list_models()]  # parsing is not part of the sweep
    pairs = [(arch, engine) for arch in archs for engine in ENGINE_NAMES]

    def fast(arch, engine) -> int:
        return len(kvplan.sweep(arch, context_lens=contexts, engine=engine))

    def per_context(arch, engine, step: int = 5) -> int:
        """The former sweep: validate once, then the engine's kv_cache at every `step`-th context."""
        _, mod, first, opts, _ = _prepare(arch, engine, "auto", contexts[0], 1, 1, 1, {})
        for ctx in contexts[::step]:
            mod.kv_cache(arch, make_request(ctx, 1, first.kv_dtype, 1, 1), opts)
        return len(contexts[::step])

    # Interleaved finely: each (model, engine) is swept both ways in turn, so a change in the machine's
    # speed (other processes on a shared machine) hits both alike; each round covers the whole grid.
    fast_us, slow_us = [], []
    for _ in range(rounds):
        fast_s = slow_s = 0.0
        calls = slow_calls = errors = 0
        for arch, engine in pairs:
            t0 = time.perf_counter()
            try:
                calls += fast(arch, engine)
            except kvplan.KvplanError:
                errors += 1  # e.g. llama.cpp with a row size a quant type cannot hold
                continue
            t1 = time.perf_counter()
            slow_calls += per_context(arch, engine)
            slow_s += time.perf_counter() - t1
            fast_s += t1 - t0
        fast_us.append(fast_s / calls * 1e6)
        slow_us.append(slow_s / slow_calls * 1e6)
    print(f"sweep: {len(archs)} models x {len(ENGINE_NAMES)} engines x {len(contexts)} contexts = {calls:,} "
          f"estimates ({errors} typed errors), {rounds} interleaved rounds")
    print(f"  kvplan.sweep:            {min(fast_us):6.2f} us/estimate = {min(fast_us) * calls / 1e3:.0f} ms "
          f"for the grid, best round (rounds: {' '.join(f'{x:.2f}' for x in fast_us)}; target <= 1.5 us)")
    print(f"  kv_cache per context:    {min(slow_us):6.2f} us/estimate (the former sweep; rounds: "
          f"{' '.join(f'{x:.2f}' for x in slow_us)})")
    ratios = [s / f for s, f in zip(slow_us, fast_us)]
    print(f"  speed-up per round: {' '.join(f'{x:.1f}x' for x in ratios)}; median "
          f"{statistics.median(ratios):.1f}x (target >= 10x)")


def capacity_chart() -> None:
    """The core of the Plan/Capacity chart: users per GPU at every context of the app's grid, with the
    weights' tensor listing cached per model (now) and rebuilt per plan (before), interleaved."""
    import kvplan
    from kvplan import weights
    from kvplan.ui import sweeps

    cached = weights._tensors
    try:
        for model_id in ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-405B", "deepseek-ai/DeepSeek-V3"):
            arch = kvplan.load_model(model_id)
            contexts = sweeps.context_grid(131072)
            best = {"before": float("inf"), "now": float("inf")}
            for _ in range(3):
                for label, listing in (("before", weights._list_tensors), ("now", cached)):
                    weights._tensors = listing
                    best[label] = min(best[label], _timed(lambda: sweeps.users_vs_context(
                        arch, contexts, gpus={"H100": {"gpu": "H100"}}, plan_fn=kvplan.plan)))
            print(f"capacity chart ({model_id}, {len(contexts)} contexts on H100, best of 3 interleaved): "
                  f"{best['now'] * 1000:.0f} ms (tensor listing rebuilt per plan: {best['before'] * 1000:.0f} ms, "
                  f"{best['before'] / best['now']:.1f}x)")
    finally:
        weights._tensors = cached


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    if not args.skip_cold:
        cold(args.rounds)
    if not args.skip_sweep:
        sweep()
        capacity_chart()


if __name__ == "__main__":
    main()
