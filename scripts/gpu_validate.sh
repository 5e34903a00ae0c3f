#!/usr/bin/env bash
# Run `kvplan validate` on a CUDA GPU for 11 bundled models spanning MHA, GQA, MQA, sliding window, MLA
# (reduced depth), hybrid linear attention (Gated DeltaNet, Mamba2) and a pure state model (Mamba1): the
# cache bytes at 3-4 contexts up to 32k, the vllm paged allocation, decode reads vs the bandwidth roofline
# at batches 1/8/32, and generation with vs without the cache on three model sizes (124M, 1.2B, 7B).
# Writes docs/validation/cuda-<name>.json + .png, docs/validation/cuda-environment.txt and a log.
#
# Needs torch (a CUDA build) and transformers >= 5.23 (requirements-validate.txt). Nothing is downloaded:
# models are built from the bundled configs with random weights.
#
# Usage: bash scripts/gpu_validate.sh              # on a CUDA box
#        bash scripts/gpu_validate.sh --cpu-dry-run # same models, tiny contexts, fewest layers, on the CPU:
#                                                  # checks every model builds before GPU time is spent
# Env: KVPLAN_GPU_BUDGET_S (default 480): models not started by then are skipped (listed in the log).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=docs/validation
DRY=0
[ "${1:-}" = "--cpu-dry-run" ] && DRY=1
BUDGET=${KVPLAN_GPU_BUDGET_S:-480}
START=$(date +%s)
mkdir -p "$OUTDIR"
LOG=$OUTDIR/cuda-run.log
[ $DRY = 1 ] && LOG=/tmp/kvplan-gpu-dry-run.log
: >"$LOG"

if [ $DRY = 0 ]; then
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')" || exit 2
  {
    echo "# kvplan validate on CUDA: the environment ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo "command: bash scripts/gpu_validate.sh  (kvplan $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
    $PY -c "import sys, torch, transformers; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'CUDA', torch.version.cuda); print('transformers', transformers.__version__); p = torch.cuda.get_device_properties(0); print('device', p.name, p.total_memory, 'bytes, SMs', p.multi_processor_count, 'cc', f'{p.major}.{p.minor}')"
  } >"$OUTDIR/cuda-environment.txt" 2>&1
  cat "$OUTDIR/cuda-environment.txt"
fi

fail=0
run() {  # run NAME SECONDS MODEL CONTEXTS [args...]
  local name=$1 secs=$2 model=$3 ctx=$4 rc
  shift 4
  local args=(--context "$ctx" --device cuda --out "$OUTDIR/cuda-$name.json" "$@")
  if [ $DRY = 1 ]; then  # the same code path, small: the fewest layers, tiny contexts, on the CPU
    args=(--context 16,32 --device cpu --depth min --out "/tmp/kvplan-dry/$name.json")
    case " $* " in *" --speed "*) args+=(--speed --speed-prompt 8 --speed-tokens 4) ;; esac
    case " $* " in *" --dtype "*) args+=(--dtype bf16) ;; esac
  elif [ $(( $(date +%s) - START )) -gt "$BUDGET" ]; then
    echo "== $name: skipped (the ${BUDGET} s budget is spent)" | tee -a "$LOG"
    return
  fi
  echo "== $name: $model ${args[*]}" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout -k 10 "$secs" $PY -m kvplan validate "$model" "${args[@]}" >>"$LOG" 2>&1
  rc=$?
  echo "== $name: exit $rc in $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
  [ $rc = 0 ] || fail=1
}
SPEED=(--speed --speed-prompt 512 --speed-tokens 256)
# name                 seconds  model                             contexts                  options
run gpt2                   90   openai-community/gpt2             256,512,1023              "${SPEED[@]}"  # MHA, 124M, 1,024 positions
run llama-3.2-1b          120   meta-llama/Llama-3.2-1B           1024,4096,16384,32768     "${SPEED[@]}"  # GQA, 1.2B
run qwen3-0.6b             90   Qwen/Qwen3-0.6B                   1024,4096,16384,32768                    # GQA + q/k norm
run santacoder             90   bigcode/gpt_bigcode-santacoder    512,1024,2047                            # MQA, 2,048 positions
run gemma-3-1b             90   google/gemma-3-1b-it              1024,4096,16384,32768     --batch 2      # sliding 512 + global
run mistral-7b            150   mistralai/Mistral-7B-v0.1         1024,4096,8192,16384      "${SPEED[@]}"  # sliding 4,096, 7B
run deepseek-v3           120   deepseek-ai/DeepSeek-V3           1024,4096,16384           --depth min    # MLA, 4 of 61 layers
run qwen3-next-80b        120   Qwen/Qwen3-Next-80B-A3B-Thinking  1024,4096,16384           --depth min    # Gated DeltaNet hybrid
run gpt-oss-20b           150   openai/gpt-oss-20b                1024,2048,8192            --dtype bf16   # sliding 128 + full, MoE (eager attention: 8k)
run nemotron-h-56b        120   nvidia/Nemotron-H-56B-Base-8K     1024,4096,8192            --depth min    # Mamba2 hybrid
run falcon-mamba-7b        90   tiiuae/falcon-mamba-7b            1024,4096,8192            --depth min    # Mamba1 (state only)
echo "total $(( $(date +%s) - START )) s; failures: $fail" | tee -a "$LOG"
exit $fail
