"""`kvplan` command line: models, gpus, size, plan, recommend (and validate, when its extra is installed).

Every command takes `--json` and then prints exactly one JSON object on stdout. Errors are one line
on stderr and a non-zero exit (2 for bad input, 3 for an internal error), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from kvplan import __version__
from kvplan.dtypes import KV_DTYPE_NAMES
from kvplan.engines import DEFAULT_ENGINE, ENGINE_NAMES
from kvplan.errors import InvalidInputError, KvplanError
from kvplan.units import fmt_auto, fmt_bytes, number_or_text, parse_tokens

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit 2), like every other kvplan error."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise InvalidInputError("arguments", f"{message} (see `{self.prog} --help`)")


def _int(field: str):
    def parse(text: str) -> int:
        try:
            return int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}: expected a whole number, got {text!r}") from None
    return parse


def _tokens(field: str):
    def parse(text: str) -> int:
        try:
            return parse_tokens(text, field)
        except InvalidInputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def _option_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    return number_or_text(text)


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for name in ("block_size", "ubatch", "parallel"):
        if getattr(args, name, None) is not None:
            opts[name] = getattr(args, name)
    if getattr(args, "swa_full", False):
        opts["swa_full"] = True
    for name in ("speculative", "num_speculative_tokens", "draft_model", "max_loras", "max_lora_rank",
                 "limit_mm_per_prompt"):
        if getattr(args, name, None) is not None:
            opts[name] = getattr(args, name)
    for item in getattr(args, "set", None) or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError("--set", f"expected KEY=VALUE, got {item!r}")
        key = key.strip().replace("-", "_")
        if key == "engine_version":
            raise InvalidInputError("--set", "give the engine version with --engine-version (or --engine vllm@0.19)")
        opts[key] = _option_value(value.strip())
    return opts


def _add_layout(p: argparse.ArgumentParser, *, llama: bool) -> None:
    p.add_argument("--engine", default=DEFAULT_ENGINE,
                   help=f"inference engine profile: {', '.join(ENGINE_NAMES)} (default: {DEFAULT_ENGINE}); "
                        "ENGINE@VERSION pins a release, e.g. vllm@0.19, llama.cpp@b4905, ik_llama.cpp")
    p.add_argument("--engine-version", metavar="X.Y[.Z]",
                   help="engine release whose rules apply (vLLM 0.19, 0.20.2; llama.cpp b4905 or ik); "
                        "default: the newest kvplan models (`kvplan versions`)")
    p.add_argument("--kv-dtype", default="auto",
                   help="KV cache dtype: auto (the model's; f16 for llama.cpp), " + ", ".join(KV_DTYPE_NAMES[1:]))
    p.add_argument("--tp", type=_int("tp"), default=1, help="tensor-parallel size (default 1)")
    p.add_argument("--pp", type=_int("pp"), default=1, help="pipeline-parallel size (default 1)")
    p.add_argument("--block-size", type=_int("block_size"),
                   help="tokens per block/page (vLLM block_size, SGLang page_size, TRT-LLM tokens_per_block)")
    if llama:
        p.add_argument("--ubatch", type=_int("ubatch"), help="llama.cpp -ub (default 512)")
        p.add_argument("--parallel", type=_int("parallel"),
                       help="llama.cpp -np slots (default: --batch); -c is context × batch")
        p.add_argument("--swa-full", action="store_true", help="llama.cpp --swa-full")
    p.add_argument("--speculative", metavar="METHOD",
                   help="speculative decoding: eagle, eagle3, mtp, draft_model or ngram; the draft's layers "
                        "join the KV pool (EAGLE: one layer shaped like the target's; MTP: num_nextn_predict_layers)")
    p.add_argument("--num-speculative-tokens", type=_int("num_speculative_tokens"), metavar="K",
                   help="tokens proposed per step (vLLM hybrid models keep K more conv rows and state blocks)")
    p.add_argument("--draft-model", metavar="ID",
                   help="draft model (bundled id, config.json, folder or Hub id) for --speculative draft_model "
                        "or eagle/eagle3 with a draft of another shape")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other engine option, e.g. async_scheduling=false, kv_unified=true, "
                        "mamba_cache_mode=none (repeatable)")
    p.add_argument("--revision", help="Hub model revision (branch, tag or commit); HF_TOKEN is used for "
                                      "gated models")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _model(args: argparse.Namespace) -> Any:
    """MODEL as given, or the Hub model at --revision (a ModelArch)."""
    if getattr(args, "revision", None):
        from kvplan.errors import HubError
        from kvplan.hub import load_hub_model
        from kvplan.registry import list_models

        try:
            return load_hub_model(args.model, revision=args.revision)
        except HubError as err:
            if args.model in list_models():  # say so rather than "did you mean" the very same id
                raise InvalidInputError("--revision", f"revision {args.revision!r} needs the Hugging Face Hub, "
                                        f"which failed ({type(err).__name__}); {args.model!r} is bundled: "
                                        "drop --revision to use the bundled copy") from None
            raise
    return args.model


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kvplan", description="KV-cache capacity planner for LLM inference. "
                     "MODEL is a bundled id (see `kvplan models`), a config.json, a folder holding one, a .gguf file, "
                     "or a Hugging Face id (org/name[@revision]).")
    parser.add_argument("--version", action="version", version=f"kvplan {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("models", help="list the bundled models and their attention kinds")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("gpus", help="list the GPU catalog")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("versions", help="the engine versions kvplan models and the rules that change between them")
    p.add_argument("--engine", help=f"one engine ({', '.join(ENGINE_NAMES)}); default: all")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("size", help="KV cache bytes for a model, context and engine")
    p.add_argument("model", help="bundled id, config.json path, folder, .gguf file, or Hub id")
    p.add_argument("--context", required=True, type=_tokens("context"), help="tokens per sequence: 8192, 32k, 1M")
    p.add_argument("--batch", type=_int("batch"), default=1, help="concurrent sequences (default 1)")
    _add_layout(p, llama=True)

    p = sub.add_parser("plan", help="users per GPU for a model on GPUs (or blocks/concurrency for a KV budget)")
    p.add_argument("model", help="bundled id, config.json path, folder, .gguf file, or Hub id")
    p.add_argument("--kv-memory",
                   help="per-GPU KV budget (vLLM's 'Available KV cache memory'): 20GiB, 51.38GiB, 80GB; "
                        "without --gpu/--gpu-memory only the KV side is computed")
    p.add_argument("--max-model-len", required=True, type=_tokens("max_model_len"),
                   help="tokens per request: 8192, 128k")
    p.add_argument("--gpu", help="catalog GPU (`kvplan gpus`): H100, H200, A100-80GB, L40S, ...")
    p.add_argument("--gpu-memory", help="a custom GPU's total memory instead of --gpu: 48GiB, 80GB")
    p.add_argument("--bandwidth", help="memory bandwidth for a custom GPU (or to override): 3.35TB/s")
    p.add_argument("--num-gpus", type=_int("num_gpus"), default=1,
                   help="GPUs in all (default tp·pp); more than tp·pp adds data-parallel replicas")
    p.add_argument("--users", type=_int("users"), help="concurrent users to check (and max context for them)")
    p.add_argument("--gpu-memory-utilization", type=float,
                   help="vLLM gpu_memory_utilization (default 0.9; recent vLLM uses 0.92), SGLang "
                        "mem_fraction_static, TRT-LLM free_gpu_memory_fraction")
    p.add_argument("--weights-dtype", default="auto",
                   help="auto (the checkpoint's, incl. its quantization_config), bf16, fp16, fp8, int8, "
                        "int4/awq/gptq, mxfp4, nvfp4")
    p.add_argument("--prefix-tokens", type=_int("prefix_tokens"), default=0,
                   help="shared system-prompt tokens, cached once across users")
    p.add_argument("--max-loras", type=_int("max_loras"),
                   help="LoRA adapter slots (vLLM --max-loras, default 1; SGLang --max-loras-per-batch, default 8)")
    p.add_argument("--max-lora-rank", type=_int("max_lora_rank"), help="largest LoRA rank (default 16)")
    p.add_argument("--limit-mm-per-prompt", metavar="MODALITY=N[,...]",
                   help="vLLM multimodal items per prompt, e.g. image=0,video=0 (text only: no encoder cache "
                        "or encoder profiling)")
    p.add_argument("--min-gpus", action="store_true",
                   help="search the smallest TP / number of GPUs that fits --users")
    _add_layout(p, llama=False)

    p = sub.add_parser("recommend", help="GPUs, layout, users, latency, cost and launch command for a workload")
    p.add_argument("model", help="bundled id, config.json path, folder, .gguf file, or Hub id")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--users", type=_int("users"), help="concurrent users (sessions)")
    who.add_argument("--request-rate", type=float, help="requests per second (concurrency from Little's law)")
    p.add_argument("--prompt-tokens", type=_tokens("prompt_tokens"), help="mean prompt length: 1000, 8k")
    p.add_argument("--output-tokens", type=_tokens("output_tokens"), help="mean output length")
    p.add_argument("--prompt-p95", type=_tokens("prompt_p95"), help="95th-percentile prompt length")
    p.add_argument("--output-p95", type=_tokens("output_p95"), help="95th-percentile output length")
    p.add_argument("--lengths", help="CSV/JSON of per-request lengths (prompt_tokens, output_tokens[, count])")
    p.add_argument("--prefix-tokens", type=_tokens("prefix_tokens"), default=0,
                   help="shared system-prompt tokens (stored once with prefix caching)")
    p.add_argument("--max-model-len", type=_tokens("max_model_len"),
                   help="engine max_model_len (default: the longest request)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--tpot-ms", type=float, help="SLA: time per output token per user, ms")
    speed.add_argument("--min-tokens-per-s-per-user", type=float, help="SLA: decode tokens/s per user")
    p.add_argument("--ttft-ms", type=float, help="SLA: time to first token for a p95 prompt, ms")
    p.add_argument("--gpu", action="append", help="catalog GPU, repeatable (default: H100, H200, B200, "
                                                  "A100-80GB, L40S)")
    p.add_argument("--price", action="append", metavar="GPU=USD", help="$/GPU-hour, repeatable: H100=2.49")
    p.add_argument("--engine", action="append", help=f"engine, repeatable: {', '.join(ENGINE_NAMES)} "
                                                     "(default vllm); ENGINE@VERSION pins a release, e.g. vllm@0.19")
    p.add_argument("--engine-version", metavar="X.Y[.Z]",
                   help="engine release whose rules apply to every --engine (default: the newest modelled)")
    p.add_argument("--kv-dtype", default="auto", help="auto, any (auto and fp8; f16 and q8_0 for llama.cpp), "
                                                      "or a dtype")
    p.add_argument("--weights-dtype", action="append", help="auto (default), fp8, int4, ... repeatable")
    p.add_argument("--max-tp", type=_int("max_tp"), default=8, help="largest tensor-parallel size (default 8)")
    p.add_argument("--max-pp", type=_int("max_pp"), default=4, help="largest pipeline-parallel size (default 4)")
    p.add_argument("--max-gpus", type=_int("max_gpus"), default=1024, help="most GPUs in all (default 1024)")
    p.add_argument("--bandwidth-efficiency", type=float, help="achieved share of peak HBM bandwidth (default 0.75)")
    p.add_argument("--compute-efficiency", type=float, help="achieved share of peak FLOP/s (default 0.55)")
    p.add_argument("--gpu-memory-utilization", type=float,
                   help="vLLM gpu_memory_utilization / SGLang mem_fraction_static / TRT-LLM fraction")
    p.add_argument("--top", type=_int("top"), default=10, help="deployments to print (default 10)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="an engine option (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("validate", help="measure the real KV cache with torch (CUDA, or CPU), or start the installed "
                                        "engine (--engine) with dummy weights and explain its startup log")
    p.add_argument("model", help="bundled id, config.json path, folder, or Hub id")
    p.add_argument("--context", help="tokens per sequence, comma-separated: 1024,8k,32k (torch mode)")
    p.add_argument("--engine", help="vllm, sglang or llama.cpp: start that engine and explain its startup log")
    p.add_argument("--engine-exe", help="the engine's command (default: vllm / python -m sglang.launch_server / "
                                        "llama-server)")
    p.add_argument("--engine-arg", action="append", default=[], help="one more argument for the engine (repeat)")
    p.add_argument("--gguf", help="the GGUF file llama.cpp loads")
    p.add_argument("--config", help="config.json of MODEL for the comparison (default: MODEL itself)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the engine's startup (900)")
    p.add_argument("--batch", type=_int("batch"), default=1, help="sequences in the prefill (default 1)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="model and cache dtype (default: the config's)")
    p.add_argument("--depth", default="auto", help="auto (full when it fits), full, min (fewest layers holding every "
                                                     "layer kind), or a layer count")
    p.add_argument("--tolerance", type=float, default=0.01, help="largest |bytes error| that passes (0.01 = 1%%)")
    p.add_argument("--no-paged", action="store_true", help="skip the vllm-layout allocation and decode timing")
    p.add_argument("--speed", action="store_true", help="also time generation with and without the cache")
    p.add_argument("--speed-prompt", type=_int("speed-prompt"), default=128,
                   help="prompt tokens for --speed (default 128)")
    p.add_argument("--speed-tokens", type=_int("speed-tokens"), default=64,
                   help="tokens generated for --speed (default 64)")
    p.add_argument("--out", help="write the JSON report here (and a PNG plot beside it)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("explain", help="read an engine startup log; compare every number it prints with kvplan's")
    p.add_argument("logfile", help="vLLM, SGLang, llama.cpp, TensorRT-LLM or TGI startup log; - reads stdin")
    p.add_argument("model", nargs="?", help="the model, when the log does not name one kvplan can resolve")
    p.add_argument("--config", help="config.json (or its folder) of the log's model")
    p.add_argument("--engine", help="skip detection: vllm, sglang, llama.cpp, trtllm, tgi")
    p.add_argument("--engine-version", help="the engine version when the log does not print it: 0.19.0")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a setting the log excerpt leaves out, in the engine's name: tensor_parallel_size=4")
    p.add_argument("--offline", action="store_true", help="never ask the Hugging Face Hub for the model")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    # Listed for --help; main() hands everything after `app` to `streamlit run` untouched.
    sub.add_parser("app", help="start the web app; options go to `streamlit run` (e.g. --server.port 8502)")
    return parser


def _print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def cmd_models(args) -> int:
    from kvplan.registry import list_models, load_model, sources

    src = sources()
    rows = []
    for model_id in list_models():
        try:
            arch = load_model(model_id)
        except KvplanError as err:  # a bundled config we cannot parse is reported, not hidden
            rows.append({"id": model_id, "attention": [], "error": str(err), "source": src.get(model_id)})
            continue
        rows.append({"id": model_id, "attention": list(arch.attention_kinds), "layers": arch.kind_counts(),
                     "model_type": arch.model_type, "num_layers": arch.num_layers, "dtype": arch.dtype,
                     "max_position_embeddings": arch.max_position_embeddings, "source": src.get(model_id)})
    if args.json:
        _print_json({"models": rows})
        return 0
    width = max((len(r["id"]) for r in rows), default=10)
    for r in rows:
        kinds = ", ".join(f"{n} {k}" for k, n in r.get("layers", {}).items()) or r.get("error", "")
        print(f"{r['id']:<{width}}  {kinds}")
    print(f"{len(rows)} models")
    return 0


def cmd_gpus(args) -> int:
    from kvplan.gpus import list_gpus

    gpus = list_gpus()
    if args.json:
        _print_json({"gpus": [g.to_dict() for g in gpus]})
        return 0
    for g in gpus:
        print(f"{g.name:<14} {g.marketing_memory:>7}  usable {fmt_bytes(g.memory_bytes):>11}  "
              f"{g.bandwidth_bytes_per_s / 1e12:5.2f} TB/s  {g.bf16_dense_flops / 1e12:7.1f} TFLOP/s bf16  "
              f"source: {g.source}")
    return 0


def _engine_label(engine: str, version: str) -> str:
    if not version or version == "n/a":
        return engine
    return "ik_llama.cpp" if version == "ik" else f"{engine} {version}"


def cmd_versions(args) -> int:
    from kvplan.engines import engine_versions

    table = {args.engine: engine_versions(args.engine)} if args.engine else engine_versions()
    if args.json:
        _print_json({"engines": table})
        return 0
    for name, t in table.items():
        if not t["latest"]:
            print(f"{name}: no versions (a formula / no version rule modelled)")
            continue
        print(f"{t['engine']}: {t['oldest']} .. {t['latest']} (default {t['default']})"
              + (f"; forks: {', '.join(f['fork'] for f in t['forks'])}" if t["forks"] else ""))
        for r in t["rules"]:
            print(f"  from {r['since']:<8} {r['key']}: {r['before']!r} -> {r['after']!r}")
            print(f"           {r['what']}")
            print(f"           source: {r['source']}")
        for f in t["forks"]:
            print(f"  fork {f['fork']}: {f['values']}  source: {f['source']}")
    return 0


def cmd_size(args) -> int:
    from kvplan.api import kv_cache

    est = kv_cache(_model(args), context_len=args.context, batch=args.batch, engine=args.engine,
                   kv_dtype=args.kv_dtype, tp=args.tp, pp=args.pp, engine_version=args.engine_version,
                   **_engine_options(args))
    if args.json:
        _print_json(est.to_dict())
        return 0
    print(f"{est.model} on {_engine_label(est.engine, est.engine_version)}: {est.batch} × {est.context_len:,} "
          f"tokens, KV {est.kv_dtype}, tp={est.tp} pp={est.pp}")
    print(f"  KV cache per GPU: {fmt_bytes(est.kv_bytes)} ({est.kv_bytes:,} bytes)")
    if est.tp * est.pp > 1:
        print(f"  all {est.tp * est.pp} GPUs:     {fmt_bytes(est.total_bytes)}")
    print(f"  per token:        {est.bytes_per_token:,} bytes (context-proportional layers, one sequence)")
    print(f"  {'kind':<8} {'layers':>6} {'tokens/seq':>11} {'bytes':>18}")
    for row in est.breakdown:
        print(f"  {row.kind:<8} {row.num_layers:>6} {row.tokens_per_seq:>11,} {row.bytes:>18,}  {fmt_auto(row.bytes)}")
    for note in est.notes:
        print(f"  note: {note}")
    return 0


def cmd_plan(args) -> int:
    if args.gpu is not None or args.gpu_memory is not None:
        return _cmd_gpu_plan(args)
    if args.kv_memory is None:
        raise InvalidInputError("arguments", "give --gpu NAME or --gpu-memory SIZE (or --kv-memory for the "
                                             "KV side only)")
    from kvplan.api import capacity

    cap = capacity(_model(args), kv_memory=args.kv_memory, max_model_len=args.max_model_len,
                   engine=args.engine, kv_dtype=args.kv_dtype, tp=args.tp, pp=args.pp,
                   engine_version=args.engine_version, **_engine_options(args))
    if args.json:
        _print_json(cap.to_dict())
        return 0
    print(f"{cap.model} on {_engine_label(cap.engine, cap.engine_version)}, KV {cap.kv_dtype}, tp={cap.tp} pp={cap.pp}")
    print(f"  KV budget per GPU: {fmt_bytes(cap.kv_memory_bytes)}")
    if cap.num_blocks is not None:
        print(f"  blocks:            {cap.num_blocks:,} of {cap.block_size} tokens")
    print(f"  KV cache size:     {cap.kv_tokens:,} tokens")
    print(f"  max concurrency:   {cap.max_concurrency:.2f}x for {cap.max_model_len:,} tokens per request")
    for note in cap.notes:
        print(f"  note: {note}")
    return 0


def _cmd_gpu_plan(args) -> int:
    from kvplan.gpus import custom_gpu
    from kvplan.planner import min_gpus, plan

    kwargs = dict(max_model_len=args.max_model_len, engine=args.engine, kv_dtype=args.kv_dtype,
                  weights_dtype=args.weights_dtype, gpu_memory_utilization=args.gpu_memory_utilization,
                  kv_memory=args.kv_memory, prefix_tokens=args.prefix_tokens, pp=args.pp,
                  engine_version=args.engine_version, **_engine_options(args))
    if args.min_gpus:
        if args.users is None:
            raise InvalidInputError("--users", "--min-gpus needs --users")
        gpu = args.gpu if args.gpu is not None else custom_gpu(args.gpu_memory, bandwidth=args.bandwidth)
        p = min_gpus(_model(args), gpu=gpu, users=args.users, **kwargs)
    else:
        p = plan(_model(args), gpu=args.gpu, gpu_memory=args.gpu_memory, bandwidth=args.bandwidth,
                 num_gpus=args.num_gpus, tp=args.tp, users=args.users, **kwargs)
    if args.json:
        _print_json(p.to_dict())
        return 0
    print(f"{p.model} on {_engine_label(p.engine, p.engine_version)}: {p.num_gpus} × {p.gpu} (tp={p.tp} pp={p.pp} dp={p.dp}), "
          f"{p.max_model_len:,} tokens/request, weights {p.weights_dtype}, KV {p.kv_dtype}")
    util = f" × {p.gpu_memory_utilization}" if p.engine in ("vllm", "sglang") else ""
    print(f"  per GPU: {fmt_bytes(p.gpu_memory_bytes)}{util}; the engine holds {fmt_bytes(p.requested_bytes)}")
    for label, value in (("weights", p.weights_bytes), ("activation peak", p.activation_bytes),
                         ("non-torch", p.non_torch_bytes), ("CUDA graphs", p.cuda_graph_bytes),
                         *((k.replace("_", " "), v) for k, v in p.pool_bytes.items()),
                         ("KV budget", p.kv_budget_bytes)):
        print(f"    {label:<16} {fmt_bytes(value):>12}")
    if p.num_blocks is not None:
        print(f"  blocks:            {p.num_blocks:,} of {p.block_size} tokens ({p.kv_tokens:,} tokens)")
    print(f"  max concurrency:   {p.max_concurrency:.2f}x per instance; {p.total_sequences} full-length "
          f"sequences in all; {p.users_per_gpu:.2f} users per GPU")
    if p.prefix_tokens:
        print(f"  with a shared {p.prefix_tokens:,}-token prefix: {p.users_with_prefix} users")
    if p.users is not None:
        print(f"  {p.users} users: {'fit' if p.fits else 'do NOT fit'}; longest context for them: "
              f"{p.max_context_for_users:,}")
    print(f"  decode roofline:   {p.decode_ms_per_step:.2f} ms/step at batch {p.decode_batch} × "
          f"{p.decode_context:,} tokens = {p.decode_tokens_per_s_per_user:.1f} tok/s/user, "
          f"{p.decode_tokens_per_s_per_gpu:,.0f} tok/s/GPU ({p.decode_bound}-bound)")
    print(f"  prefill (TTFT):    {p.prefill_ms:,.1f} ms for {p.max_model_len:,} tokens")
    print(f"  fits: {'yes' if p.fits else 'NO'}")
    for note in p.notes:
        print(f"  note: {note}")
    return 0


def _quiet_heavy_imports() -> None:
    """torch / transformers print FutureWarnings and log lines on import and while building a model;
    the CLI's promise is one line on stderr (or none on success), so they are silenced here."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers)(\.|$)")
    for name in ("transformers", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)

def _prices(items) -> dict[str, float] | None:
    if not items:
        return None
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InvalidInputError("--price", f"expected GPU=USD per GPU-hour, got {item!r}") from None
        if not sep or not name.strip():
            raise InvalidInputError("--price", f"expected GPU=USD per GPU-hour, got {item!r}")
    return out


def cmd_recommend(args) -> int:
    from kvplan.recommend import recommend

    r = recommend(_model(args), users=args.users, request_rate=args.request_rate, prompt_tokens=args.prompt_tokens,
                  output_tokens=args.output_tokens, prompt_p95=args.prompt_p95, output_p95=args.output_p95,
                  lengths=args.lengths, prefix_tokens=args.prefix_tokens, max_model_len=args.max_model_len,
                  tpot_ms=args.tpot_ms, min_tokens_per_s_per_user=args.min_tokens_per_s_per_user,
                  ttft_ms=args.ttft_ms, gpus=args.gpu, prices=_prices(args.price), engines=args.engine or "vllm",
                  kv_dtype=args.kv_dtype, weights_dtype=args.weights_dtype or "auto", max_tp=args.max_tp,
                  max_pp=args.max_pp, max_gpus=args.max_gpus, bandwidth_efficiency=args.bandwidth_efficiency,
                  compute_efficiency=args.compute_efficiency, gpu_memory_utilization=args.gpu_memory_utilization,
                  engine_version=args.engine_version, **_engine_options(args))
    if args.json:
        _print_json(r.to_dict())
        return 0
    wl = r.workload
    who = f"{wl.users:,} concurrent users" if wl.users is not None else f"{wl.request_rate:g} requests/s"
    print(f"{r.model}: {who}, prompts {wl.prompt_tokens:,.0f} (p95 {wl.prompt_p95:,}) + outputs "
          f"{wl.output_tokens:,.0f} (p95 {wl.output_p95:,}) tokens, max_model_len {wl.max_model_len:,}"
          + (f", shared prefix {wl.prefix_tokens:,}" if wl.prefix_tokens else ""))
    sla = [f"TPOT <= {r.sla.tpot_ms:g} ms" if r.sla.tpot_ms else "", f"TTFT <= {r.sla.ttft_ms:g} ms" if r.sla.ttft_ms else ""]
    print(f"  SLA: {', '.join(x for x in sla if x) or 'none'}; searched {r.candidates} candidates "
          f"({', '.join(r.engines)} on {', '.join(r.gpus)})")
    if not r.fits:
        print(f"  nothing fits: {r.why_not}")
        for change in r.changes:
            print(f"  try: {change}")
    for i, d in enumerate(r.deployments[:args.top], 1):
        cost = f", ${d.usd_per_hour:,.2f}/h, ${d.usd_per_million_output_tokens:,.3f}/M output tokens" \
            if d.usd_per_hour is not None else ""
        replicas = f"{d.replicas} replica{'s' if d.replicas > 1 else ''}"
        print(f"{i}. {d.num_gpus} × {d.gpu} ({_engine_label(d.engine, d.engine_version)}: tp={d.tp} pp={d.pp} × "
              f"{replicas}), KV {d.kv_dtype}, "
              f"weights {d.weights_dtype}{cost}")
        print(f"   {d.users:,} users ({d.max_users:,} max, {d.max_users_per_instance} per instance; binding: "
              f"{d.binding}); TPOT {d.tpot_ms:.1f} ms = {d.decode_tokens_per_s_per_user:.1f} tok/s/user, "
              f"{d.decode_tokens_per_s_per_gpu:,.0f} tok/s/GPU; TTFT {d.ttft_ms:,.0f} ms; {d.requests_per_s:.2f} req/s")
        m = d.memory
        print(f"   per GPU: weights {fmt_bytes(m.weights_bytes)}, activation {fmt_bytes(m.activation_bytes)}, "
              f"non-torch {fmt_bytes(m.non_torch_bytes)}, CUDA graphs {fmt_bytes(m.cuda_graph_bytes)}, KV "
              f"{fmt_bytes(m.kv_used_bytes)} used of {fmt_bytes(m.kv_budget_bytes)}, unreserved "
              f"{fmt_bytes(m.unreserved_bytes)} (of {fmt_bytes(m.gpu_memory_bytes)})")
        if d.launch:
            print(f"   $ {d.launch}")
        for note in d.notes:
            print(f"   note: {note}")
    for note in r.notes:
        print(f"  note: {note}")
    return 0


def cmd_validate(args) -> int:
    if args.engine:
        from kvplan.explain.live import validate_engine
        from kvplan.explain.report import text_report

        if not 1 <= args.timeout <= 86400:
            raise InvalidInputError("--timeout", "give 1 to 86400 seconds")
        data, ex = validate_engine(args.model, args.engine, gguf=args.gguf, executable=args.engine_exe,
                               extra_args=tuple(args.engine_arg), timeout_s=args.timeout, config=args.config)
        if args.json:
            _print_json(data)
        else:
            print(f"{' '.join(data['command'])}: {'started' if data['ready'] else 'did not start'} in "
                  f"{data['seconds']} s; {data['within_precision']}/{data['compared']} quantities within precision")
            print(text_report(ex))
        return 0 if data["ready"] and data["within_precision"] == data["compared"] else 1
    if not args.context:
        raise InvalidInputError("--context", "validate needs --context (torch mode) or --engine (engine mode)")
    _quiet_heavy_imports()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print("validate needs torch and transformers: pip install -r requirements-validate.txt", file=sys.stderr)
        return EXIT_BAD_INPUT
    from kvplan.validate import report as vreport
    from kvplan.validate import validate

    rep = validate(args.model, context_len=args.context, batch=args.batch, device=args.device, dtype=args.dtype,
                   depth=args.depth, tolerance=args.tolerance, paged=not args.no_paged, speed=args.speed,
                   speed_prompt_len=args.speed_prompt, speed_new_tokens=args.speed_tokens,
                   progress=lambda line: print(f"kvplan validate: {line}", file=sys.stderr, flush=True))
    data = rep.to_dict()
    if args.out:
        path = vreport.write_json(data, args.out)
        png = vreport.write_png(data, path.with_suffix(".png"))
        data["files"] = [str(path)] + ([str(png)] if png else [])
    if args.json:
        _print_json(data)
    else:
        print(vreport.summary(data))
    return 0 if rep.passed else 1


def cmd_app(streamlit_args: Sequence[str]) -> int:
    """`streamlit run` on the router inside the package, so an installed kvplan starts from any folder."""
    import importlib.util
    import os
    import subprocess
    from pathlib import Path

    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        raise InvalidInputError("app", "the web app needs streamlit and plotly: pip install 'kvplan[app]'")
    router = Path(__file__).resolve().parent / "ui" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(router), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal",
           *streamlit_args]
    if os.name == "posix":  # become streamlit: signals (Ctrl-C, a supervisor's SIGTERM) reach the server itself
        sys.stdout.flush()
        os.execv(sys.executable, cmd)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130


def cmd_explain(args) -> int:
    from kvplan.explain import explain, read_log_file
    from kvplan.explain.report import text_report

    if args.model and args.config:
        raise InvalidInputError("--config", "give MODEL or --config, not both")
    settings = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError("--set", f"expected KEY=VALUE, got {item!r}")
        settings[key.strip().replace("-", "_")] = _option_value(value.strip())
    ex = explain(read_log_file(args.logfile), args.model, config=args.config, engine=args.engine,
                 engine_version=args.engine_version, settings=settings, offline=args.offline)
    if args.json:
        _print_json(ex.to_dict())
    else:
        print(text_report(ex))
    return 0


COMMANDS = {"models": cmd_models, "gpus": cmd_gpus, "versions": cmd_versions, "size": cmd_size, "plan": cmd_plan,
            "recommend": cmd_recommend, "validate": cmd_validate, "explain": cmd_explain}


_ASCII = {"×": "x", "·": "*", "—": "-", "–": "-", "≈": "~", "≤": "<=", "≥": ">=", "→": "->", "…": "..."}


def _ascii_fallback(err: UnicodeError):
    bad = err.object[err.start:err.end]
    return "".join(_ASCII.get(c, "?") for c in bad), err.end


def _safe_streams() -> None:
    """Output must not fail on the terminal's encoding: with PYTHONIOENCODING=ascii (or a C locale),
    "×" prints as "x" (other symbols as ASCII look-alikes or "?") instead of a UnicodeEncodeError."""
    import codecs

    codecs.register_error("kvplan-ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="kvplan-ascii")
        except (AttributeError, ValueError, OSError):  # replaced streams (pytest capture, StringIO)
            pass


def _closed_pipe() -> int:
    """`kvplan models | head -1`: the reader left. End quietly, as other command-line tools do:
    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    _safe_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["app"]:
            return cmd_app(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:  # bare `kvplan`: the overview, not an error
            parser.print_help()
            sys.stdout.flush()
            return 0
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except KvplanError as err:
        print(f"kvplan: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, ValueError, KeyError, TypeError) as err:
        # Not raised on purpose anywhere; still one line, never a traceback.
        print(f"kvplan: error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI promises no traceback
        print(f"kvplan: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
