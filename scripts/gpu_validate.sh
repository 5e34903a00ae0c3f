#!/usr/bin/env bash
# Run `kvplan validate` on a CUDA box for >= 8 bundled models spanning MHA, GQA, MQA, sliding window,
# MLA (reduced depth) and hybrids, plus the use_cache on/off generation speed test, writing JSON + PNG
# reports to docs/validation/. Needs: pip install -r requirements-validate.txt (torch built for your CUDA).
# Usage: bash scripts/gpu_validate.sh [extra kvplan validate args]
set -u
cd "$(dirname "$0")/.."
OUT=docs/validation
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')" || exit 2
CTX=1024,4096,16384
fail=0
run() {  # run NAME MODEL [args...]
  local name=$1 model=$2; shift 2
  echo "== $model"
  python -m kvplan validate "$model" --device cuda --out "$OUT/$name.json" "$@" "${EXTRA[@]}" || fail=1
}
EXTRA=("$@")
run gpt2                 openai-community/gpt2               --context $CTX --speed                  # MHA, 124M
run llama-3.2-1b         meta-llama/Llama-3.2-1B             --context $CTX --speed                  # GQA, 1.2B
run qwen3-0.6b           Qwen/Qwen3-0.6B                     --context $CTX                          # GQA
run santacoder           bigcode/gpt_bigcode-santacoder      --context $CTX                          # MQA
run gemma-3-1b           google/gemma-3-1b-it                --context $CTX --batch 2                # sliding + global
run mistral-7b           mistralai/Mistral-7B-v0.1           --context 1024,4096,8192 --speed        # sliding (4096), 7B
run gpt-oss-20b          openai/gpt-oss-20b                  --context $CTX --dtype bf16             # sliding 128 + full, MoE
run deepseek-v3          deepseek-ai/DeepSeek-V3             --context 1024,4096 --depth auto        # MLA, reduced depth
run qwen3-next-80b       Qwen/Qwen3-Next-80B-A3B-Thinking    --context $CTX                          # GDN hybrid (reduced)
run nemotron-h-56b       nvidia/Nemotron-H-56B-Base-8K       --context 1024,4096,8192                # Mamba2 hybrid (reduced)
run falcon-mamba-7b      tiiuae/falcon-mamba-7b              --context $CTX                          # Mamba1
exit $fail
