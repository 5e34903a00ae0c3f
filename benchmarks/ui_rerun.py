"""Time of a page rerun after a widget change, for a bundled model (target: under 300 ms).

    python benchmarks/ui_rerun.py [--repeats 15] [--page plan|size|capacity|compare|why]

Uses Streamlit's AppTest (the whole script reruns in-process, as on a real widget change, minus the
browser's own drawing): the app is run once to warm caches, then a sidebar widget is flipped between
two values and each rerun is timed. Prints the median per page and change, and exits 1 if any
median is over the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TARGET_MS = 300.0
CHANGES = {  # (widget kind, key, two values to alternate): the sidebar of the sidebar pages
    "engine": ("selectbox", "engine", ("sglang", "vllm")),
    "context": ("text_input", "ctx", ("64k", "32k")),
    "model": ("selectbox", "model", ("google/gemma-2-9b", "meta-llama/Llama-3.1-8B")),
}
PLAN_CHANGES = {  # the Plan page keeps its inputs in the page
    "users": ("number_input", "users", (300, 100)),
    "kv dtype": ("selectbox", "kv", ("fp8", "auto")),
    "model": ("selectbox", "plan_model", ("google/gemma-2-9b", "meta-llama/Llama-3.1-8B")),
}


def time_reruns(page: str, change: str, repeats: int) -> list[float]:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != "plan":
        at.switch_page(f"kvplan/ui/pages/{page}.py").run()
    kind, key, values = (PLAN_CHANGES if page == "plan" else CHANGES)[change]
    where = at if page == "plan" else at.sidebar
    times = []
    for i in range(repeats + 1):
        widget = getattr(where, kind)(key=key)
        (widget.input if kind == "text_input" else widget.set_value)(values[i % 2])
        t0 = time.perf_counter()
        at.run()
        elapsed = (time.perf_counter() - t0) * 1000
        if at.exception:
            raise SystemExit(f"{page}: exception after changing {key}: {at.exception}")
        if i:  # the first rerun after the switch still fills caches
            times.append(elapsed)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--page", action="append", choices=["plan", "size", "capacity", "compare", "why"])
    args = ap.parse_args()
    worst = 0.0
    for page in args.page or ["plan", "size", "capacity", "compare", "why"]:
        for change in (PLAN_CHANGES if page == "plan" else CHANGES):
            times = time_reruns(page, change, args.repeats)
            med = statistics.median(times)
            worst = max(worst, med)
            print(f"{page:9s} change {change:8s} median {med:6.1f} ms  (min {min(times):6.1f}, "
                  f"max {max(times):6.1f}, n={len(times)})")
    print(f"worst median {worst:.1f} ms; target < {TARGET_MS:.0f} ms")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
