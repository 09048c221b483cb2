#!/usr/bin/env python3
"""The same model through transformers, on the same GPU: the baseline for `dsv3 bench --device cuda`.

Builds DeepseekV3ForCausalLM with the shapes of dsv3's preset:moonlight (presets.cpp) and random
weights in bf16 on the GPU, then times what `dsv3 bench` times: the prefill of a --prompt-tokens
prompt, and --decode-tokens greedy steps of batch 1 after it, each step one forward over the model's
own cache. Weights are random, so only the speed means anything. Times are taken with CUDA
synchronisation around each phase, after one warm-up run of both. Prints one line a figure and,
with --json, writes them to a file.

    python3 bench/transformers_baseline.py --prompt-tokens 1024 --decode-tokens 64
"""
import argparse
import json
import time

import torch
import transformers
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

# preset:moonlight (src/dsv3/model/presets.cpp): the V3 architecture at 16B parameters, 3B active.
MOONLIGHT = dict(
    vocab_size=163840,
    hidden_size=2048,
    intermediate_size=11264,
    moe_intermediate_size=1408,
    num_hidden_layers=27,
    num_attention_heads=16,
    num_key_value_heads=16,
    q_lora_rank=None,
    kv_lora_rank=512,
    qk_nope_head_dim=128,
    qk_rope_head_dim=64,
    v_head_dim=128,
    n_routed_experts=64,
    n_shared_experts=2,
    num_experts_per_tok=6,
    first_k_dense_replace=1,
    n_group=1,
    topk_group=1,
    norm_topk_prob=True,
    routed_scaling_factor=2.446,
    rope_theta=50000.0,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    bos_token_id=163584,
    eos_token_id=163585,
)


def synchronized_seconds(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def prefill(model, prompt):
    return model(input_ids=prompt, use_cache=True)


def decode(model, first, steps: int) -> None:
    past, token = first.past_key_values, first.logits[:, -1:].argmax(-1)
    for _ in range(steps):
        out = model(input_ids=token, past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = DeepseekV3Config(**MOONLIGHT)
    with torch.device("cuda"):
        model = DeepseekV3ForCausalLM(config).to(torch.bfloat16).eval()
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens), device="cuda")

    with torch.inference_mode():
        decode(model, prefill(model, prompt), 2)  # warm-up
        first = None

        def run_prefill():
            nonlocal first
            first = prefill(model, prompt)

        prefill_s = synchronized_seconds(run_prefill)
        decode_s = synchronized_seconds(lambda: decode(model, first, args.decode_tokens))

    results = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "prompt_tokens": args.prompt_tokens,
        "prefill_tokens_per_s": args.prompt_tokens / prefill_s,
        "decode_tokens": args.decode_tokens,
        "decode_tokens_per_s": args.decode_tokens / decode_s,
    }
    print(f"transformers {results['transformers']} (torch {results['torch']}) on {results['device']}, bf16")
    print(f"prefill {results['prefill_tokens_per_s']:.1f} tokens/s ({args.prompt_tokens} tokens)")
    print(f"decode (batch 1) {results['decode_tokens_per_s']:.2f} tokens/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
