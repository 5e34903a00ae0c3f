"""Sizing-core speed, printed (no assertions: performance claims live here, not in timed tests).

1. Median cold wall time of `python -m kvplan size MODEL --context 8k --json` next to a bare
   `python -c "import pydantic"` (target: within 3× of it — no heavy imports on this path).
2. A sweep of every bundled model × every engine × 200 context lengths (target: well under 1 s).

Usage: python benchmarks/sizing.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cold(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sweep() -> tuple[int, float, int]:
    import kvplan
    from kvplan.engines import ENGINE_NAMES

    contexts = [int(1024 * 1.04 ** i) for i in range(200)]  # 1k .. ~2.6M tokens
    archs = [kvplan.load_model(m) for m in kvplan.list_models()]  # parsing is not part of the sweep
    calls = errors = 0
    t0 = time.perf_counter()
    for arch in archs:
        for engine in ENGINE_NAMES:
            try:
                calls += len(kvplan.sweep(arch, context_lens=contexts, engine=engine))
            except kvplan.KvplanError:
                errors += 1  # e.g. llama.cpp with a row size a quant type cannot hold
    return calls, time.perf_counter() - t0, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    base = cold([py, "-c", "import pydantic"], args.runs)
    size = cold([py, "-m", "kvplan", "size", "meta-llama/Llama-3.1-8B", "--context", "8k", "--json"], args.runs)
    print(f"cold `python -c 'import pydantic'`:            {base * 1000:7.1f} ms (median of {args.runs})")
    print(f"cold `python -m kvplan size ... --context 8k`:  {size * 1000:7.1f} ms (median of {args.runs})")
    print(f"ratio:                                          {size / base:7.2f}x  (target <= 3x)")
    calls, secs, errors = sweep()
    print(f"sweep: {calls:,} estimates (models × engines × 200 contexts) in {secs * 1000:.0f} ms "
          f"({secs / calls * 1e6:.1f} µs/call, {errors} typed errors)")


if __name__ == "__main__":
    main()
