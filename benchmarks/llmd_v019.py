"""Score kvplan on the llm-d-planner vLLM v0.19.0 campaign (H100-80GB startup logs), read in place.

    PYTHONPATH=. python benchmarks/llmd_v019.py [--logs ../shared/engine_logs/llmd-v0.19] [--json]

Every run is planned with `--engine-version 0.19.0` and the run's own launch settings (model, TP/PP,
max_model_len, gpu_memory_utilization, dtype, quantization, kv dtype) and no other switch. Printed:
- the KV budget ("Available KV cache memory"; for PP the binding = last stage) predicted vs logged,
  and the weights / activation / non-torch components, as mean absolute % errors, beside
  llm-d-planner's own published errors (weights 0.89 %, KV 6.62 %, max concurrency 15.34 %);
- whether blocks, "GPU KV cache size" tokens and "Maximum concurrency" come out exactly given the
  logged budget;
- for each failed run: what kvplan predicts (does not fit / refused / warns), or why the failure is
  not a sizing one (a full GPU from another process, no network to the Hub, a launcher bug).
The logs are data from llm-d-incubation/llm-d-planner (commit d3121e05); they stay in ../shared and are
never copied into this repository. Exits 0 with a note when the folder is absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kvplan  # noqa: E402
from kvplan.errors import KvplanError  # noqa: E402
from kvplan.planner import plan  # noqa: E402
from kvplan.units import GiB  # noqa: E402

# ../shared from the main checkout; ../../shared from a worktree under wt/
DEFAULT_LOGS = next((d / "shared" / "engine_logs" / "llmd-v0.19" for d in (ROOT.parent, ROOT.parent.parent)
                     if (d / "shared" / "engine_logs" / "llmd-v0.19").exists()),
                    ROOT.parent / "shared" / "engine_logs" / "llmd-v0.19")
H100_TOTAL = "79.19GiB"  # total_memory in every log of the campaign

# Checkpoints whose KV geometry and parameter count are those of a bundled (or ../configs) model: the
# instruct/chat fine-tune of a base model, a quantized re-upload, Kimi-Dev-72B (a Qwen2.5-72B fine-tune).
SAME_GEOMETRY = {
    "Qwen/Qwen2.5-7B-Instruct": "Qwen/Qwen2.5-7B",
    "Qwen/Qwen2.5-72B-Instruct": "Qwen/Qwen2.5-72B",
    "moonshotai/Kimi-Dev-72B": "Qwen/Qwen2.5-72B",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mistralai/Mixtral-8x7B-v0.1",
    "RedHatAI/Llama-3.3-70B-Instruct-fp8-dynamic": "meta-llama/Llama-3.3-70B-Instruct",
    "redhatai/Llama-3.3-70B-Instruct-quantized.w8a8": "meta-llama/Llama-3.3-70B-Instruct",
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16": "meta-llama/Llama-3.1-8B-Instruct",
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8": "meta-llama/Llama-3.1-8B-Instruct",
    "RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8": "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    "RedHatAI/Qwen2.5-7B-Instruct-fp8-dynamic": "Qwen/Qwen2.5-7B",
    "RedHatAI/Qwen2.5-7B-Instruct-quantized.w8a8": "Qwen/Qwen2.5-7B",
    # the instruct fine-tune of the bundled base config: same file apart from the fine-tune (the log's
    # "Model loading took 15.25 GiB" is what the base config's parameter count gives)
    "ibm-granite/granite-3.1-8b-instruct": "ibm-granite/granite-3.1-8b-base",
}
# Configs the project keeps for its own tests (tests/golden/configs), by the campaign's model id.
PROJECT_CONFIGS = {"deepseek-ai/DeepSeek-V2-Lite-Chat": "deepseek-ai--DeepSeek-V2-Lite"}
# Weight formats of the quantized checkpoints (their names say it; the logs print the method).
WEIGHTS = {"fp8-dynamic": "fp8", "w8a8": "int8", "w4a16": "int4"}

# Failure messages that are not about memory sizing (the run never reached the KV budget, or the GPU
# was held by another process): listed, not scored.
NOT_SIZING = {
    "on startup is less than desired GPU memory utilization": "another process held GPU memory at start",
    "couldn't connect to 'https://huggingface.co'": "no network to the Hub (an earlier attempt; a rerun succeeded)",
    "DP adjusted local rank": "launcher bug with data parallel on one node",
    "Transformers does not recognize this architecture": "transformers too old for gemma4 in that image",
}


def _model(logs: Path, model_id: str):
    from kvplan.registry import list_models

    target = SAME_GEOMETRY.get(model_id, model_id)
    if target in list_models():
        return target, target
    for cfg in (logs / "configs" / model_id.replace("/", "--") / "config.json",
                ROOT / "tests" / "golden" / "configs" / PROJECT_CONFIGS.get(model_id, "-") / "config.json"):
        if cfg.exists():
            return str(cfg), model_id
    return None, model_id


def _weights_dtype(run: dict) -> str:
    name = run["model"].lower()
    for suffix, dtype in WEIGHTS.items():
        if suffix in name:
            return dtype
    if (run.get("quantization_arg") or run.get("quantization")) == "fp8":
        return "fp8"
    return {"float16": "fp16", "float32": "fp32", "bfloat16": "bf16"}.get(run.get("dtype_arg") or "", "auto")


def _kv_dtype(run: dict, weights: str) -> str:
    kv = run.get("kv_cache_dtype") or "auto"
    if kv != "auto":
        return kv
    return weights if weights in ("fp16", "fp32") else "auto"


def _pct(pred: float, logged: float) -> float:
    return 100.0 * (pred - logged) / logged


def score(logs: Path) -> dict:
    runs = [json.loads(line) for line in (logs / "runs.jsonl").read_text().splitlines() if line.strip()]
    ok_rows, fail_rows, skipped = [], [], []
    for run in runs:
        model, label = _model(logs, run["model"])
        weights = _weights_dtype(run)
        kw = dict(gpu_memory=H100_TOTAL, tp=run["tp"], pp=run["pp"], max_model_len=run["max_model_len"],
                  gpu_memory_utilization=run["gpu_memory_utilization"], weights_dtype=weights,
                  kv_dtype=_kv_dtype(run, weights), engine="vllm", engine_version="0.19.0")
        if run["status"] != "ok":
            err = " ".join(run.get("errors") or [])
            reason = next((why for key, why in NOT_SIZING.items() if key in err), None)
            row = {"log": run["log"], "model": run["model"], "error": err[:160], "not_sizing": reason}
            if reason is None:
                if model is None:
                    row["kvplan"] = "no config to size with"
                else:
                    try:
                        p = plan(model, **kw)
                        warned = [n for n in p.notes if "warm" in n or "sampler" in n]
                        row["kvplan"] = ("does not fit" if not p.fits else
                                         "fits, with a warning: " + warned[0] if warned else "fits (missed)")
                        row["predicted"] = not p.fits or bool(warned)
                    except KvplanError as e:
                        row["kvplan"] = f"refused: {e}"[:200]
                        row["predicted"] = True
            fail_rows.append(row)
            continue
        if model is None:
            skipped.append({"log": run["log"], "model": run["model"], "why": "no config.json for it in the repo "
                                                                             "or the campaign's configs/"})
            continue
        p = plan(model, **kw)
        # the printed "Available KV cache memory"; with PP, the binding (last) stage's budget
        logged_kv = run["binding_kv_budget_gib"] if run["pp"] > 1 else run["available_kv_gib"]
        row = {"log": run["log"], "model": label, "tp": run["tp"], "pp": run["pp"], "weights_dtype": weights,
               "kv_gib": (p.kv_budget_bytes / GiB, logged_kv),
               "weights_gib": (p.weights_bytes / GiB, run.get("binding_weights_gib") or run["weights_memory_gib"]),
               "activation_gib": (p.activation_bytes / GiB,
                                  run.get("binding_activation_peak_gib") or run["activation_peak_gib"]),
               "non_torch_gib": (p.non_torch_bytes / GiB, run.get("binding_non_torch_gib") or run["non_torch_gib"])}
        # Blocks, tokens and concurrency given the logged budget (printed to 0.01 GiB): the logged block
        # count must lie in the interval, and at exactly those blocks the two log lines must match.
        ckw = dict(max_model_len=run["max_model_len"], tp=run["tp"], pp=run["pp"], kv_dtype=kw["kv_dtype"],
                   engine="vllm", engine_version="0.19.0")
        lo = kvplan.capacity(model, kv_memory=int((logged_kv - 0.005) * GiB), **ckw)
        hi = kvplan.capacity(model, kv_memory=int((logged_kv + 0.005) * GiB), **ckw)
        blocks = run["num_gpu_blocks"]
        exact = kvplan.capacity(model, kv_memory=blocks * lo.bytes_per_block, **ckw)
        row["blocks_in_interval"] = lo.num_blocks <= blocks <= hi.num_blocks
        row["tokens"] = (exact.kv_tokens, run["kv_tokens"])
        row["concurrency"] = (round(exact.max_concurrency, 2), run["max_concurrency"])
        row["concurrency_from_prediction"] = (p.max_concurrency, run["max_concurrency"])
        row["false_warning"] = any(n.startswith("warning:") for n in p.notes)
        ok_rows.append(row)

    def mae(key):
        return statistics.fmean(abs(_pct(*r[key])) for r in ok_rows) if ok_rows else float("nan")

    planner = json.loads((logs / "llmd_planner.json").read_text())["summary"]
    exact_all = all(r["blocks_in_interval"] and r["tokens"][0] == r["tokens"][1]
                    and r["concurrency"][0] == r["concurrency"][1] for r in ok_rows)
    sizing_fails = [r for r in fail_rows if not r["not_sizing"]]
    return {
        "runs": len(runs), "successful_scored": len(ok_rows), "successful_skipped": skipped,
        "kv_budget_mae_pct": mae("kv_gib"), "weights_mae_pct": mae("weights_gib"),
        "activation_mae_pct": mae("activation_gib"), "non_torch_mae_pct": mae("non_torch_gib"),
        "concurrency_mae_pct_predicted_budget": mae("concurrency_from_prediction"),
        "tokens_and_concurrency_exact_given_logged_budget": exact_all,
        "successful_runs_warned": sum(1 for r in ok_rows if r["false_warning"]),
        "failed_sizing_runs": len(sizing_fails),
        "failed_sizing_runs_predicted": sum(1 for r in sizing_fails if r.get("predicted")),
        "llm_d_planner": {"weights_mae": planner["Weight memory"]["mean_abs_error"],
                          "kv_mae": planner["KV cache memory (all runs)"]["mean_abs_error"],
                          "concurrency_mae": planner["Max concurrency"]["mean_abs_error"]},
        "rows": ok_rows, "failed": fail_rows,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=DEFAULT_LOGS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (args.logs / "runs.jsonl").exists():
        print(f"note: {args.logs} is absent (the llm-d v0.19 logs live outside the repo); nothing to score")
        return 0
    res = score(args.logs)
    if args.json:
        print(json.dumps(res, indent=1, default=str))
        return 0
    print(f"llm-d-planner vLLM v0.19.0 campaign, kvplan --engine-version 0.19.0: {res['successful_scored']} of "
          f"{res['successful_scored'] + len(res['successful_skipped'])} successful runs scored "
          f"({res['runs']} logs in all)\n")
    print(f"{'log':<62} {'KV pred':>8} {'logged':>7} {'err%':>6}  {'wts%':>6} {'act%':>7} {'ntorch%':>7}  exact")
    for r in res["rows"]:
        ex = r["blocks_in_interval"] and r["tokens"][0] == r["tokens"][1] and r["concurrency"][0] == r["concurrency"][1]
        print(f"{r['log'][:62]:<62} {r['kv_gib'][0]:8.2f} {r['kv_gib'][1]:7.2f} {_pct(*r['kv_gib']):+6.2f}  "
              f"{_pct(*r['weights_gib']):+6.2f} {_pct(*r['activation_gib']):+7.1f} {_pct(*r['non_torch_gib']):+7.1f}  "
              f"{'yes' if ex else 'NO ' + str((r['tokens'], r['concurrency']))}")
    for s in res["successful_skipped"]:
        print(f"skipped {s['log']}: {s['why']}")
    lp = res["llm_d_planner"]
    print(f"\nmean absolute error     kvplan   llm-d-planner")
    print(f"  KV budget           {res['kv_budget_mae_pct']:7.2f} %   {lp['kv_mae']}")
    print(f"  weights             {res['weights_mae_pct']:7.2f} %   {lp['weights_mae']}")
    print(f"  max concurrency     {res['concurrency_mae_pct_predicted_budget']:7.2f} %   {lp['concurrency_mae']}"
          "   (from the predicted budget)")
    print(f"  activation peak     {res['activation_mae_pct']:7.2f} %")
    print(f"  non-torch           {res['non_torch_mae_pct']:7.2f} %")
    print(f"blocks, tokens and concurrency exact given the logged budget on every scored run: "
          f"{res['tokens_and_concurrency_exact_given_logged_budget']}")
    print(f"successful runs that kvplan warns about: {res['successful_runs_warned']}")
    print(f"\nfailed runs: {len(res['failed'])}; sizing failures predicted: "
          f"{res['failed_sizing_runs_predicted']} of {res['failed_sizing_runs']}")
    for f in res["failed"]:
        what = f"not a sizing failure: {f['not_sizing']}" if f["not_sizing"] else f"kvplan: {f.get('kvplan')}"
        print(f"  {f['log'][:64]:<64} {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
