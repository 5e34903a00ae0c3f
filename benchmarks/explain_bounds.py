"""How long `explain`'s parsers take on the largest inputs they accept (hostile shapes included).

    PYTHONPATH=. python benchmarks/explain_bounds.py

Every input is cut at MAX_LOG_CHARS (8 MiB) and MAX_LINE_CHARS per line, labels are looked for in a
line's first HEAD_CHARS, so the work is linear in the accepted size. Prints seconds per shape beside a
reference (10 M-step Python loop) measured in the same run, since a loaded machine scales both.
"""

from __future__ import annotations

import time
from pathlib import Path

from kvplan.errors import KvplanError
from kvplan.explain import MAX_LOG_CHARS, parse_log

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    t0 = time.perf_counter()
    try:
        fn()
    except KvplanError:
        pass
    return time.perf_counter() - t0


def main() -> None:
    def loop():
        s = 0
        for i in range(10**7):
            s += i
    shapes = {
        "8 MiB of short KV lines": ("Available KV cache memory: 1.00 GiB\n" * (MAX_LOG_CHARS // 36))[:MAX_LOG_CHARS],
        "8 MiB of 20 kB digit lines": (("Available KV cache memory: " + "9" * 20000 + "\n") * 420)[:MAX_LOG_CHARS],
        "8 MiB of 16 kB exception lines": (("ValueError: " + "a." * 8000 + "\n") * 520)[:MAX_LOG_CHARS],
        "8 MiB, one line": "x" * MAX_LOG_CHARS,
    }
    real = ROOT.parent / "shared/engine_logs/llmd-v0.19/logs/fp8dyn-llama-3-3-70b--h100-80gb--tp4pp1dp1--8192.log"
    if not real.exists():
        real = ROOT.parents[1] / "shared/engine_logs/llmd-v0.19/logs/fp8dyn-llama-3-3-70b--h100-80gb--tp4pp1dp1--8192.log"
    if real.exists():
        text = real.read_text(errors="replace")
        shapes["real 0.64 MB vLLM TP=4 DEBUG log"] = text
        shapes["that log repeated to 8 MiB"] = (text * 14)[:MAX_LOG_CHARS]
    for round_ in range(2):
        ref = timed(loop)
        print(f"round {round_ + 1}: reference 10M-step loop {ref:.2f} s")
        for name, text in shapes.items():
            print(f"  {name:<36} {timed(lambda: parse_log(text)):6.2f} s")


if __name__ == "__main__":
    main()
