"""`recommend` speed, printed (no assertions: performance claims live here, not in timed tests).

The target (issue 11): one recommendation over 4 GPU types × every valid layout (TP 1-8 × PP 1-4)
× 2 KV dtypes answers in under 300 ms cold on a 2-core machine. "Cold" = the first call in a fresh
Python process (bytecode cached, as an installed user has it), after `import kvplan`: it includes the
lazy imports of the planner, weights, roofline and engine profiles, and every first-time cache fill.
Each round starts new processes; the figure is the median over rounds. The same is printed for the
whole `kvplan recommend ... --json` process next to a bare `python -c "import pydantic"`, interleaved.

Usage: python benchmarks/recommend_speed.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
GPUS = ["H100", "H200", "A100-80GB", "L40S"]
MODEL = "meta-llama/Llama-3.1-70B"
CALL = (f"import time, json, kvplan\n"
        f"t = time.perf_counter()\n"
        f"r = kvplan.recommend({MODEL!r}, users=100, prompt_tokens=7000, output_tokens=1000, gpus={GPUS!r}, "
        f"kv_dtype='any', max_tp=8, max_pp=4)\n"
        f"print(json.dumps({{'ms': (time.perf_counter() - t) * 1e3, 'candidates': r.candidates, "
        f"'deployments': len(r.deployments)}}))\n")
CLI = [PY, "-m", "kvplan", "recommend", MODEL, "--users", "100", "--prompt-tokens", "7000", "--output-tokens",
       "1000", *sum((["--gpu", g] for g in GPUS), []), "--kv-dtype", "any", "--json"]
BASE = [PY, "-c", "import pydantic"]
# Bytecode is written and reused (an installed package has its .pyc files), whatever this shell says.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(ROOT) + (os.pathsep + ENV["PYTHONPATH"] if ENV.get("PYTHONPATH") else "")


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=ENV)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    subprocess.run(CLI, check=True, capture_output=True, cwd=ROOT, env=ENV)  # write the bytecode cache
    calls, cli, base = [], [], []
    info = {}
    for i in range(args.rounds):
        order = [("call", None), ("cli", CLI), ("base", BASE)]
        order = order[i % 3:] + order[:i % 3]  # rotate so drift hits every command alike
        for name, cmd in order:
            if name == "call":
                out = subprocess.run([PY, "-c", CALL], check=True, capture_output=True, text=True, cwd=ROOT, env=ENV)
                info = json.loads(out.stdout)
                calls.append(info["ms"])
            elif name == "cli":
                cli.append(wall(cmd) * 1e3)
            else:
                base.append(wall(cmd) * 1e3)
    print(f"{MODEL}, 100 users, 7,000 + 1,000 tokens, GPUs {', '.join(GPUS)}, KV auto+fp8, TP 1-8 × PP 1-4: "
          f"{info['candidates']} candidates, {info['deployments']} deployments")
    print(f"first recommend() call in a fresh process: median {statistics.median(calls):.0f} ms "
          f"(min {min(calls):.0f}, max {max(calls):.0f}) over {args.rounds} rounds; target < 300 ms; "
          f"{statistics.median(c / b for c, b in zip(calls, base)):.2f}x `import pydantic` in the same rounds")
    print(f"whole `kvplan recommend --json` process:    median {statistics.median(cli):.0f} ms; "
          f"`python -c 'import pydantic'`: {statistics.median(base):.0f} ms "
          f"(ratio {statistics.median(c / b for c, b in zip(cli, base)):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
