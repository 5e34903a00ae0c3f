"""The recommender's latency model against published measurements.

Each row is a public measurement of decode speed (TPOT / inter-token latency) at a stated
concurrency, model, GPU, engine and version, with its source. The model's estimate comes from
`kvplan.recommend.estimate_latency` (the same code `recommend` ranks with): the roofline with the
achieved-efficiency factors, prefills time-sharing the GPU (Little's law), TP all-reduce latency.

    python benchmarks/latency.py            # default efficiencies
    python benchmarks/latency.py --fit      # also search the factors that minimise the median error

Offline measurements (a fixed batch started together, no arrivals) are modelled as one prefill
plus `output` decode steps; serving sweeps (closed loop at fixed concurrency) with the time-sharing
model. Where a source leaves the prompt length vague the row says which length was assumed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvplan.recommend import (DEFAULT_ALLREDUCE_US, DEFAULT_BANDWIDTH_EFFICIENCY,  # noqa: E402
                              DEFAULT_COMPUTE_EFFICIENCY, estimate_latency)

NIM = "https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance.md"
YOBI = "https://yobitelcomm.github.io/bench/recipes/concurrency-sweep/"
MUSGRAVE = "https://johnmusgrave.com/p/vllm-throughput-latency-sweep-on"
BUILDKITE = "https://buildkite.com/vllm/performance-benchmark/builds/9515"


@dataclass(frozen=True)
class Row:
    label: str
    model: str
    gpu: str
    tp: int
    users: int
    prompt: int
    output: int
    weights: str
    kv: str
    measured_ms: float  # TPOT / inter-token latency, ms
    engine: str
    source: str
    offline: bool = False  # a fixed batch started together (benchmark_latency), not a serving sweep
    note: str = ""


ROWS = [
    # NVIDIA NIM 1.8.0 (TensorRT-LLM), Llama-3.3-70B-Instruct fp8, TP2 on 2 x H100 80GB, 5,000 in / 500 out:
    # inter-token latency at concurrency 1, 5, 25, 50; and 500 in / 2,000 out at concurrency 1.
    Row("NIM 70B fp8 TP2 c=1", "meta-llama/Llama-3.3-70B-Instruct", "H100", 2, 1, 5000, 500, "fp8", "fp8", 18.58,
        "NIM 1.8.0", NIM),
    Row("NIM 70B fp8 TP2 c=5", "meta-llama/Llama-3.3-70B-Instruct", "H100", 2, 5, 5000, 500, "fp8", "fp8", 21.83,
        "NIM 1.8.0", NIM),
    Row("NIM 70B fp8 TP2 c=25", "meta-llama/Llama-3.3-70B-Instruct", "H100", 2, 25, 5000, 500, "fp8", "fp8", 38.75,
        "NIM 1.8.0", NIM),
    Row("NIM 70B fp8 TP2 c=50", "meta-llama/Llama-3.3-70B-Instruct", "H100", 2, 50, 5000, 500, "fp8", "fp8", 59.73,
        "NIM 1.8.0", NIM),
    Row("NIM 70B fp8 TP2 c=1 500/2000", "meta-llama/Llama-3.3-70B-Instruct", "H100", 2, 1, 500, 2000, "fp8", "fp8",
        18.91, "NIM 1.8.0", NIM),
    # vLLM 0.21.0, Llama-3.1-8B-Instruct fp16 on one H100 80GB HBM3, "chatbot-short" (TPOT p50).
    Row("vLLM 0.21 8B H100 c=1", "meta-llama/Llama-3.1-8B-Instruct", "H100", 1, 1, 256, 256, "auto", "auto", 6.48,
        "vLLM 0.21.0", YOBI, note="chatbot-short lengths not stated: 256 in / 256 out assumed"),
    Row("vLLM 0.21 8B H100 c=4", "meta-llama/Llama-3.1-8B-Instruct", "H100", 1, 4, 256, 256, "auto", "auto", 6.59,
        "vLLM 0.21.0", YOBI, note="256 in / 256 out assumed"),
    Row("vLLM 0.21 8B H100 c=16", "meta-llama/Llama-3.1-8B-Instruct", "H100", 1, 16, 256, 256, "auto", "auto", 10.94,
        "vLLM 0.21.0", YOBI, note="256 in / 256 out assumed"),
    # vLLM 0.23.0, Llama-3.1-8B-Instruct bf16 on one A100 40GB, 1,024 in / 128 out, concurrency 1:
    # "about 75 tokens/sec" per request -> 13.3 ms per token.
    Row("vLLM 0.23 8B A100-40GB c=1", "meta-llama/Llama-3.1-8B-Instruct", "A100-40GB", 1, 1, 1024, 128, "auto",
        "auto", 1000 / 75, "vLLM 0.23.0", MUSGRAVE),
    # vLLM performance benchmark (Buildkite build 9515, vLLM main at the time), offline latency test:
    # batch 8, 32 in / 128 out, mean end-to-end latency / 128 tokens, on H200.
    Row("vLLM CI 8B H200 batch 8", "meta-llama/Llama-3.1-8B", "H200", 1, 8, 32, 128, "auto", "auto", 833.421 / 128,
        "vLLM main (CI build 9515)", BUILDKITE, offline=True),
    Row("vLLM CI 70B TP4 H200 batch 8", "meta-llama/Llama-3.1-70B", "H200", 4, 8, 32, 128, "auto", "auto",
        2077.53 / 128, "vLLM main (CI build 9515)", BUILDKITE, offline=True, note="Llama-3-70B; 3.1 config used"),
    Row("vLLM CI Mixtral TP2 H200 batch 8", "mistralai/Mixtral-8x7B-v0.1", "H200", 2, 8, 32, 128, "auto", "auto",
        1917.44 / 128, "vLLM main (CI build 9515)", BUILDKITE, offline=True),
]


# Time to first token at concurrency 1 (prefill of one prompt + one decode step; no queueing).
TTFT_ROWS = [
    (ROWS[0], 406.77),  # NIM 1.8.0 Llama-3.3-70B fp8 TP2 2 x H100, 5,000-token prompt
    (ROWS[4], 47.77),  # the same, 500-token prompt
    (ROWS[8], None),  # (no TTFT published for this one)
]


def model_ms(row: Row, bw: float, fl: float, ar_us: float) -> float:
    lat = estimate_latency(row.model, gpu=row.gpu, tp=row.tp, users=row.users, prompt_tokens=row.prompt,
                           output_tokens=row.output, kv_dtype=row.kv, weights_dtype=row.weights,
                           bandwidth_efficiency=bw, compute_efficiency=fl, allreduce_us=ar_us)
    if row.offline:  # one prefill of the whole batch, then `output` steps, averaged per token
        return (lat.prefill_ms * row.users + lat.step_ms * row.output) / row.output
    return lat.tpot_ms


def errors(bw: float, fl: float, ar_us: float) -> list[float]:
    return [model_ms(r, bw, fl, ar_us) / r.measured_ms - 1 for r in ROWS]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="grid-search the factors (median |error|)")
    args = ap.parse_args()
    bw, fl, ar = DEFAULT_BANDWIDTH_EFFICIENCY, DEFAULT_COMPUTE_EFFICIENCY, DEFAULT_ALLREDUCE_US
    print(f"latency model vs {len(ROWS)} published measurements (bandwidth efficiency {bw}, compute {fl}, "
          f"all-reduce {ar} us per layer pass)")
    print(f"{'measurement':<34} {'engine':<26} {'measured':>9} {'model':>8} {'error':>7}  source")
    errs = []
    for r in ROWS:
        m = model_ms(r, bw, fl, ar)
        err = m / r.measured_ms - 1
        errs.append(err)
        print(f"{r.label:<34} {r.engine:<26} {r.measured_ms:8.2f}ms {m:7.2f}ms {err:+7.1%}  {r.source}"
              + (f"  ({r.note})" if r.note else ""))
    abs_errs = [abs(e) for e in errs]
    print(f"median |error| {statistics.median(abs_errs):.1%}, mean |error| {statistics.mean(abs_errs):.1%}, "
          f"worst {max(abs_errs):.1%}; mean signed error {statistics.mean(errs):+.1%}")
    print()
    print(f"{'TTFT at concurrency 1':<34} {'engine':<26} {'measured':>9} {'model':>8} {'error':>7}")
    for r, measured in TTFT_ROWS:
        if measured is None:
            continue
        lat = estimate_latency(r.model, gpu=r.gpu, tp=r.tp, users=1, prompt_tokens=r.prompt, output_tokens=r.output,
                               kv_dtype=r.kv, weights_dtype=r.weights, bandwidth_efficiency=bw, compute_efficiency=fl,
                               allreduce_us=ar)
        print(f"{r.label:<34} {r.engine:<26} {measured:8.2f}ms {lat.ttft_ms:7.2f}ms {lat.ttft_ms / measured - 1:+7.1%}")
    if args.fit:
        best = None
        for b in [x / 100 for x in range(50, 96, 5)]:
            for a in (0, 5, 10, 15, 20, 25, 30, 40):
                e = statistics.median(abs(x) for x in errors(b, fl, a))
                if best is None or e < best[0]:
                    best = (e, b, a)
        print(f"best fit: bandwidth efficiency {best[1]}, all-reduce {best[2]} us: median |error| {best[0]:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
