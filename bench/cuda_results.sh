#!/usr/bin/env bash
# The figures of bench/RESULTS.md's CUDA section, in one run on one GPU: batch-1 decode and prefill
# (FP8 and BF16) with the device's read bandwidth and BF16 product rate measured alongside, decode
# at batch 32/128/256 over 1K-token contexts, long prompts (FP8 ones also with --fp8-activations,
# the 1K one with its products timed on their own), the server path under 32 concurrent
# clients (greedy, at OpenAI's default temperature 1, and at DeepSeek's suggested temperature 0.6
# with top_p 0.95), and the same model through transformers.
#
#   bench/cuda_results.sh DSV3_BINARY OUT_DIR
set -euo pipefail
dsv3=${1:?usage: bench/cuda_results.sh DSV3_BINARY OUT_DIR}
out=${2:?usage: bench/cuda_results.sh DSV3_BINARY OUT_DIR}
mkdir -p "$out"
model=(--device cuda -m preset:moonlight)

"$dsv3" bench "${model[@]}" --dtype fp8 --prompt-tokens 1024 --decode-tokens 64 --batch 32,128,256 --ops \
  --kv-cache-tokens 65536 --json "$out/decode_fp8.json"
"$dsv3" bench "${model[@]}" --dtype bf16 --prompt-tokens 1024 --decode-tokens 64 --json "$out/decode_bf16.json"
for prompt in 8192 32768; do
  "$dsv3" bench "${model[@]}" --dtype fp8 --prompt-tokens "$prompt" --decode-tokens 8 \
    --kv-cache-tokens $((prompt + 1024)) --json "$out/prefill_$prompt.json"
done
for prompt in 1024 8192 32768; do
  ops=(); [ "$prompt" = 1024 ] && ops=(--ops)
  "$dsv3" bench "${model[@]}" --dtype fp8 --fp8-activations --prompt-tokens "$prompt" --decode-tokens 8 "${ops[@]}" \
    --kv-cache-tokens $((prompt + 1024)) --json "$out/prefill_fp8_activations_$prompt.json"
done
"$dsv3" bench "${model[@]}" --dtype fp8 --clients 32 --requests 64 --prompt-tokens 1024 --output-tokens 64 \
  --kv-cache-tokens 65536 --json "$out/serving_32.json"
"$dsv3" bench "${model[@]}" --dtype fp8 --clients 32 --requests 64 --prompt-tokens 1024 --output-tokens 64 \
  --kv-cache-tokens 65536 --temperature 1 --json "$out/serving_32_t1.json"
"$dsv3" bench "${model[@]}" --dtype fp8 --clients 32 --requests 64 --prompt-tokens 1024 --output-tokens 64 \
  --kv-cache-tokens 65536 --temperature 0.6 --top-p 0.95 --json "$out/serving_32_t06_p095.json"
python3 "$(dirname "$0")/transformers_baseline.py" --prompt-tokens 1024 --decode-tokens 64 --json "$out/transformers.json"
