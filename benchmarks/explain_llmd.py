"""`kvplan explain` on the llm-d-planner vLLM v0.19.0 campaign (74 startup logs), read in place.

    PYTHONPATH=. python benchmarks/explain_llmd.py [--json OUT] [--logs DIR]

The logs (59 successful, 15 `*.FAILED.log`) live in ../shared/engine_logs/llmd-v0.19/logs/ and are never
copied into the project. Models kvplan bundles resolve from the log; the others are passed as MODEL (a
bundled model with the same KV geometry, named below with the reason) or `--config` (the campaign's
config copies in ../shared/engine_logs/llmd-v0.19/configs/, read in place). Prints one row per log:
parsed, failure cause, and whether kvplan reproduces the logged block count (from the logged budget,
within its 0.01 GiB printing precision) and tokens / max concurrency exactly (from the logged blocks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kvplan.errors import KvplanError
from kvplan.explain import explain, parse_log

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "engine_logs" / "llmd-v0.19"
if not SHARED.exists():  # a worktree sits one level deeper than the main checkout
    SHARED = ROOT.parents[1] / "shared" / "engine_logs" / "llmd-v0.19"

from kvplan.explain.accuracy import LLMD_CONFIGS as CONFIGS  # noqa: E402 - the campaign's own config copies
from kvplan.explain.accuracy import LLMD_PROJECT_CONFIGS, LLMD_SAME_GEOMETRY as SAME_GEOMETRY  # noqa: E402

PROJECT_CONFIGS = {k: str(ROOT / "tests" / "golden" / v) for k, v in LLMD_PROJECT_CONFIGS.items()}


def run(log_dir: Path, extra_configs: dict[str, str]) -> list[dict]:
    rows = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(encoding="utf-8", errors="replace")
        row: dict = {"log": path.name, "failed_log": path.name.endswith(".FAILED.log")}
        t0 = time.perf_counter()
        try:
            ex = explain(text, offline=True)
        except KvplanError as err:
            ex = None
            row["first_error"] = str(err)
            # retry with the model's config / a same-geometry bundled model
            name = parse_log(text).model or ""
            cfg = extra_configs.get(name) or PROJECT_CONFIGS.get(name) or (
                str(SHARED / CONFIGS[name]) if name in CONFIGS else None)
            try:
                if cfg:
                    ex = explain(text, config=cfg, offline=True)
                    row["passed"] = f"--config {Path(cfg).name}"
                elif name in SAME_GEOMETRY:
                    ex = explain(text, SAME_GEOMETRY[name], offline=True)
                    row["passed"] = f"MODEL {SAME_GEOMETRY[name]}"
            except KvplanError as err2:
                row["error"] = str(err2)
        row["ms"] = round((time.perf_counter() - t0) * 1000, 1)
        if ex is None:
            row.setdefault("error", row.get("first_error"))
            parsed = parse_log(text)
            row.update(parsed=True, model=parsed.model, fits=None, failure=parsed.failure)
            rows.append(row)
            continue
        row.update(parsed=True, model=ex.model, model_source=ex.model_source, fits=ex.fits, failure=ex.failure)
        for name in ("num_blocks", "kv_tokens", "max_concurrency", "weights_bytes", "activation_bytes",
                     "non_torch_bytes", "kv_budget_bytes"):
            q = ex.quantity(name)
            if q is not None:
                row[name] = {"logged": q.logged, "predicted": q.predicted, "within": q.within_precision,
                             "exact_given_blocks": q.exact_given_blocks}
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", default=str(SHARED / "logs"))
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    log_dir = Path(args.logs)
    if not log_dir.exists():
        print(f"{log_dir} not found: the llm-d v0.19 logs are not on this machine; nothing to benchmark")
        return 0
    rows = run(log_dir, {})
    ok = [r for r in rows if not r["failed_log"]]
    failed = [r for r in rows if r["failed_log"]]
    print(f"{'log':<64} {'fits':<5} {'blocks':>16} {'tokens':>9} {'conc':>6}  note")
    for r in rows:
        def mark(name, key="within"):
            q = r.get(name)
            return "-" if q is None or q.get(key) is None else ("yes" if q.get(key) else "NO")
        note = (r.get("failure") or "")[:90] if r["failed_log"] else (r.get("error") or r.get("passed") or "")[:90]
        blocks = r.get("num_blocks", {})
        btxt = f"{blocks.get('logged', '-')}/{blocks.get('predicted', '-')}" if blocks else "-"
        print(f"{r['log'][:64]:<64} {str(r.get('fits'))[:5]:<5} {btxt:>16} {mark('kv_tokens', 'exact_given_blocks'):>9} "
              f"{mark('max_concurrency', 'exact_given_blocks'):>6}  {note}")
    parsed = sum(1 for r in rows if r.get("parsed"))
    named = sum(1 for r in failed if r.get("failure"))
    predicted = [r for r in ok if "num_blocks" in r and r["num_blocks"]["predicted"] is not None]
    blocks_in = sum(1 for r in predicted if r["num_blocks"]["within"])
    tok_exact = sum(1 for r in predicted if r.get("kv_tokens", {}).get("exact_given_blocks"))
    conc_exact = sum(1 for r in predicted if r.get("max_concurrency", {}).get("exact_given_blocks"))
    print()
    kinds: dict[str, int] = {}
    for r in failed:
        kind = (r.get("failure") or "none").split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"parsed: {parsed}/{len(rows)} logs; failure cause named: {named}/{len(failed)} failed logs")
    for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {n} × {kind}")
    print(f"successful logs with a model geometry: {len(predicted)}/{len(ok)} "
          f"(the rest need a config kvplan does not have: {', '.join(sorted({r.get('model') or '?' for r in ok if r not in predicted}))})")
    print(f"blocks from the logged budget within its printing precision: {blocks_in}/{len(predicted)}")
    print(f"tokens exact from the logged blocks: {tok_exact}/{len(predicted)}; "
          f"max concurrency exact: {conc_exact}/{len(predicted)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
