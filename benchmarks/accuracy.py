"""Regenerate kvplan's accuracy table: kvplan/accuracy.json (the app's Accuracy page reads it),
docs/accuracy.md, and the table between the markers in README.md.

    PYTHONPATH=. python benchmarks/accuracy.py [--shared ../shared/engine_logs/llmd-v0.19] [--check]

Golden rows come from tests/golden (each with its public URL); the llm-d-planner v0.19 campaign logs are
read in place from --shared when that folder exists (never copied). --check only prints the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from kvplan.explain.accuracy import TABLE_PATH, accuracy_markdown, compute_accuracy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared") if p.exists()),
                      ROOT.parent / "shared") / "engine_logs" / "llmd-v0.19"
BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(DEFAULT_SHARED))
    ap.add_argument("--check", action="store_true", help="print only; write nothing")
    args = ap.parse_args()
    shared = Path(args.shared)
    if not (shared / "logs").exists():
        print(f"{shared} not found: the table covers the golden rows only")
        shared = None
    t0 = time.perf_counter()
    table = compute_accuracy(shared_dir=shared)
    md = accuracy_markdown(table)
    print(md)
    print(f"computed in {time.perf_counter() - t0:.1f} s")
    if args.check:
        return 0
    TABLE_PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    (ROOT / "docs" / "accuracy.md").write_text(
        "# kvplan accuracy against real engine logs\n\n"
        "Each engine log states numbers (weights, KV budget, blocks, tokens, max concurrency, cache sizes); "
        "`kvplan explain` reruns kvplan with the settings the log shows and compares. A quantity counts as "
        "reproduced when kvplan's value rounds to what the engine printed. Sources: the project's golden rows "
        "(tests/golden, each with its URL) and the llm-d-planner vLLM v0.19.0 campaign "
        "(llm-d-incubation/llm-d-planner@d3121e0, accuracy/results/v0.19.0/logs).\n\n" + md)
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = f"{BEGIN}\n{md}{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Accuracy against real engine logs\n\n" + block + "\n"
    readme.write_text(text)
    print(f"wrote {TABLE_PATH.relative_to(ROOT)}, docs/accuracy.md, README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
