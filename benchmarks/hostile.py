"""Time and peak memory of kvplan on its worst hostile inputs (issue 10): GGUF bombs, a hostile Hub
on 127.0.0.1, and the largest / refused sweeps.

Every case runs in a fresh child process limited to 1 GiB of address space (RLIMIT_AS) and 120 s;
its peak memory is ru_maxrss from wait4() on that child (this parent stays small, so the figure that
Linux carries over from the fork is negligible) and VmHWM read by the child itself at exit. The cases
are run ROUNDS times, interleaved (round 1 of every case, then round 2, ...), and the median time and
the largest peak are printed; "wall" includes the child's Python start and `import kvplan`, "work" is
the call alone.

    PYTHONPATH=. python benchmarks/hostile.py [--rounds 3] [--only gguf|hub|sweep]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import hostile_files  # noqa: E402
from fake_hub import FakeHub, FakeRepo, safetensors_bytes  # noqa: E402

CHILD = """
import json, sys, time
import kvplan
case, arg = sys.argv[1], sys.argv[2]
t = time.perf_counter()
try:
    if case == "load":
        kvplan.load_model(arg)
    elif case == "hub-plan":
        kvplan.plan(arg, gpu="H100", max_model_len=4096)
    elif case == "sweep":
        kvplan.sweep("meta-llama/Llama-3.1-8B", context_lens=range(1, int(arg) + 1))
    out = "ok"
except kvplan.KvplanError as err:
    out = "typed error: " + str(err)
print(json.dumps({"outcome": out, "work_s": time.perf_counter() - t}))
"""

SMALL = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "hidden_size": 256, "intermediate_size": 512, "vocab_size": 1000, "torch_dtype": "bfloat16"}
HUB_REPOS = {
    "acme/ok": FakeRepo({"config.json": json.dumps(SMALL).encode(),
                         "model.safetensors": safetensors_bytes({"w": ("BF16", [1000, 256])})}),
    "acme/gzip-bomb-config": FakeRepo({"config.json": b""}, hostile={"config.json": "gzip-bomb"}),
    "acme/endless-config": FakeRepo({"config.json": b""}, hostile={"config.json": "endless"}),
    "acme/endless-length-config": FakeRepo({"config.json": b""}, hostile={"config.json": "endless-length"}),
    "acme/drip-config": FakeRepo({"config.json": b""}, hostile={"config.json": "drip"}),
    "acme/gzip-model-info": FakeRepo({"config.json": json.dumps(SMALL).encode()}, hostile={"api": "gzip-bomb"}),
    "acme/gzip-bomb-index": FakeRepo({"config.json": json.dumps(SMALL).encode(), "model.safetensors.index.json": b""},
                                     hostile={"model.safetensors.index.json": "gzip-bomb"}),
    "acme/endless-safetensors": FakeRepo({"config.json": json.dumps(SMALL).encode(), "model.safetensors": b""},
                                         hostile={"model.safetensors": "endless"}),
}


def cases(folder: Path, only: str | None) -> list[tuple[str, str, str, str]]:
    """(group, label, child case, argument)."""
    out = []
    if only in (None, "gguf"):
        for label, make in hostile_files.BOMBS.items():
            out.append(("gguf", label, "load", str(make(folder))))
    if only in (None, "hub"):
        for repo in HUB_REPOS:
            out.append(("hub", repo + " (plan: config + safetensors)", "hub-plan", repo))
    if only in (None, "sweep"):
        for n in ("1000", "10000", "1000000"):
            out.append(("sweep", f"sweep over {int(n):,} contexts", "sweep", n))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("gguf", "hub", "sweep"))
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kvplan-hostile-bench-"))
    hub = FakeHub(dict(HUB_REPOS)).start()
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(folder / "hf-cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    todo = cases(folder, args.only)
    results: dict[str, list[dict]] = {label: [] for _, label, _, _ in todo}
    try:
        for _ in range(args.rounds):
            for group, label, case, arg in todo:
                run = hostile_files.run_limited(CHILD, args=(case, arg), mem_bytes=1 << 30, timeout=120, env=env)
                line = run["stdout"].strip().splitlines()[-1:] or ["{}"]
                try:
                    child = json.loads(line[0])
                except ValueError:
                    child = {}
                results[label].append({**run, **child})
    finally:
        hub.stop()
    print(f"{'case':<50} {'outcome':<13} {'work s':>7} {'wall s':>7} {'maxrss MiB':>10} {'VmHWM MiB':>9}")
    group_now = None
    worst = {}
    for group, label, _, _ in todo:
        if group != group_now:
            print(f"-- {group}")
            group_now = group
        rows = results[label]
        outcome = rows[-1].get("outcome") or ("TIMEOUT" if rows[-1]["timed_out"] else f"rc {rows[-1]['rc']}")
        kind = "ok" if outcome == "ok" else "typed error" if outcome.startswith("typed error") else outcome[:13]
        work = statistics.median(r.get("work_s", float("nan")) for r in rows)
        wall = statistics.median(r["wall_s"] for r in rows)
        rss = max(r["maxrss_bytes"] for r in rows) / 2**20
        hwm = max((r["hwm_bytes"] or 0) for r in rows) / 2**20
        print(f"{label[:50]:<50} {kind:<13} {work:>7.2f} {wall:>7.2f} {rss:>10.0f} {hwm:>9.0f}")
        if kind != "ok":
            print(f"{'':<4}{outcome[:150]}")
        w = worst.setdefault(group, [0.0, 0.0, 0.0])
        worst[group] = [max(w[0], work), max(w[1], wall), max(w[2], rss)]
    print("-- worst per group (median work s, median wall s, peak maxrss MiB):")
    for group, (work, wall, rss) in worst.items():
        print(f"   {group:<6} {work:6.2f} s work, {wall:6.2f} s wall, {rss:5.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
