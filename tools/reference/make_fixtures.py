#!/usr/bin/env python3
"""Writes tiny random DeepSeek checkpoints in the layout Hugging Face publishes, with the outputs
transformers computes for them: the reference the CPU engine is tested against in CI.

Run on the GPU machine (torch, transformers >= 5, safetensors):
    python3 tools/reference/make_fixtures.py OUT_DIR [CASE ...]
Each case becomes OUT_DIR/<case>/ with config.json, safetensors (sharded with an index, or single),
expected.json and logits.bin (float32 [n_ids, vocab], row-major, every position).

The checkpoint is written first, with the published tensor names (per-expert tensors, the MTP layer
stored as layer num_hidden_layers, FP8 weights with 128x128 block scales), then loaded back with
from_pretrained in float32: the expected outputs come from what transformers reads, so the files
are the truth. FP8 cases are loaded from their exact dequantisation (fp8 * scale of its block, in
float32), the function the stored checkpoint denotes.
"""
import json
import math
import os
import sys
import tempfile
import zlib

import torch
from safetensors.torch import save_file
import transformers

FP8_BLOCK = 128


def v3_config(**overrides):
    c = dict(
        architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", vocab_size=512, hidden_size=128,
        intermediate_size=256, moe_intermediate_size=64, num_hidden_layers=3, num_nextn_predict_layers=1,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=96, kv_lora_rank=64, qk_nope_head_dim=32,
        qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4,
        first_k_dense_replace=1, moe_layer_freq=1, n_group=4, topk_group=2, routed_scaling_factor=2.5,
        norm_topk_prob=True, scoring_func="sigmoid", topk_method="noaux_tc", hidden_act="silu",
        rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=64 * 40,
        rope_scaling={"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 64, "beta_fast": 32,
                      "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        attention_bias=False, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, torch_dtype="bfloat16",
        initializer_range=0.02)
    c.update(overrides)
    return c


def v2_config(**overrides):
    c = dict(
        architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2", vocab_size=400, hidden_size=128,
        intermediate_size=256, moe_intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
        v_head_dim=32, n_routed_experts=12, n_shared_experts=2, num_experts_per_tok=3, first_k_dense_replace=1,
        moe_layer_freq=1, n_group=1, topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=False,
        scoring_func="softmax", topk_method="greedy", hidden_act="silu", rms_norm_eps=1e-6, rope_theta=10000.0,
        max_position_embeddings=64 * 40,
        rope_scaling={"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 64, "beta_fast": 32,
                      "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
        attention_bias=False, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, torch_dtype="bfloat16",
        initializer_range=0.02)
    c.update(overrides)
    return c


# The quantization_config of DeepSeek's published FP8 checkpoints.
FP8_QUANTIZATION = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                    "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}

CASES = {
    # V3: q_lora, yarn, grouped sigmoid routing with a correction bias, dense + MoE layers, 3 shards, MTP.
    # Its correction biases sit below zero, so that some eligible experts have negative biased scores:
    # masking the other groups to 0.0 (DeepSeek's remote code) instead of -inf (transformers 5) then
    # chooses differently.
    "v3_bf16": dict(config=v3_config(), fp8=False, shards=3, prompt_len=24, bias_offset=-0.7),
    # V3 stored FP8 with partial edge blocks (192 = 1.5 blocks, kv_a 160 + 16 outputs, ...).
    "v3_fp8": dict(config=v3_config(hidden_size=192, intermediate_size=320, moe_intermediate_size=160,
                                     q_lora_rank=160, kv_lora_rank=160, n_routed_experts=8, n_group=2,
                                     topk_group=1, num_experts_per_tok=2, num_hidden_layers=2,
                                     quantization_config=FP8_QUANTIZATION),
                   fp8=True, shards=2, prompt_len=16),
    # V2-Lite: no q_lora, softmax greedy routing, yarn with mscale 0.707, one file; a long prompt.
    "v2_lite": dict(config=v2_config(), fp8=False, shards=1, prompt_len=40),
    # V2.5: q_lora, softmax group_limited_greedy, routed_scaling_factor 16; YaRN whose cos/sin factor
    # is not 1 (mscale != mscale_all_dim) and whose `factor` (softmax scale) differs from
    # max_position_embeddings / original_max_position_embeddings (frequencies).
    "v2_group": dict(config=v2_config(q_lora_rank=96, n_routed_experts=16, n_group=4, topk_group=2,
                                      num_experts_per_tok=4, routed_scaling_factor=16.0, n_shared_experts=1,
                                      max_position_embeddings=64 * 20,
                                      rope_scaling={"type": "yarn", "factor": 16.0,
                                                    "original_max_position_embeddings": 64, "beta_fast": 32,
                                                    "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.5}),
                     fp8=False, shards=1, prompt_len=20),
    # A plain-RoPE V3 (no rope_scaling), as Moonlight: one group, sigmoid routing, one file.
    "v3_plain_rope": dict(config=v3_config(rope_scaling=None, max_position_embeddings=8192, n_group=1,
                                           topk_group=1, num_nextn_predict_layers=0, rope_theta=50000.0,
                                           rms_norm_eps=1e-5, routed_scaling_factor=2.446),
                          fp8=False, shards=1, prompt_len=12),
    # Prompts long enough that every expert gets tens of rows, with hidden and expert widths in whole
    # 128-column blocks: the CUDA backend's prefill takes its warpgroup expert products (groups of more
    # than 32 rows on average), which the short prompts above never reach. FP8 (x as one FP16 part
    # against exact FP8 weights) and BF16 (x in two BF16 parts).
    "v3_fp8_long": dict(config=v3_config(hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                                         q_lora_rank=128, kv_lora_rank=128, n_routed_experts=8, n_group=2,
                                         topk_group=1, num_experts_per_tok=2, num_hidden_layers=2,
                                         quantization_config=FP8_QUANTIZATION),
                        fp8=True, shards=1, prompt_len=320),
    "v2_long": dict(config=v2_config(hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                                     n_routed_experts=8, num_experts_per_tok=2, num_hidden_layers=2),
                    fp8=False, shards=1, prompt_len=320),
    # DeepSeek's own head widths (qk_nope 128, rope 64, v 128), which the CUDA backend's prefill
    # attention takes on warpgroup tensor cores (the cases above have narrower heads), over a prompt of
    # three blocks of query rows.
    "v3_deepseek_heads": dict(config=v3_config(hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                                               q_lora_rank=128, kv_lora_rank=128, num_attention_heads=2,
                                               num_key_value_heads=2, qk_nope_head_dim=128, qk_rope_head_dim=64,
                                               v_head_dim=128, n_routed_experts=8, n_group=2, topk_group=1,
                                               num_experts_per_tok=2, num_hidden_layers=2),
                              fp8=False, shards=1, prompt_len=320),
}


def layer_tensors(c, prefix, moe):
    """The published tensors of one decoder layer: name -> (shape, kind)."""
    h, nh = c["hidden_size"], c["num_attention_heads"]
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    t = {f"{prefix}.input_layernorm.weight": ([h], "norm"), f"{prefix}.post_attention_layernorm.weight": ([h], "norm")}
    a = prefix + ".self_attn"
    if c["q_lora_rank"]:
        t[f"{a}.q_a_proj.weight"] = ([c["q_lora_rank"], h], "linear")
        t[f"{a}.q_a_layernorm.weight"] = ([c["q_lora_rank"]], "norm")
        t[f"{a}.q_b_proj.weight"] = ([nh * qk, c["q_lora_rank"]], "linear")
    else:
        t[f"{a}.q_proj.weight"] = ([nh * qk, h], "linear")
    t[f"{a}.kv_a_proj_with_mqa.weight"] = ([c["kv_lora_rank"] + c["qk_rope_head_dim"], h], "linear")
    t[f"{a}.kv_a_layernorm.weight"] = ([c["kv_lora_rank"]], "norm")
    t[f"{a}.kv_b_proj.weight"] = ([nh * (c["qk_nope_head_dim"] + c["v_head_dim"]), c["kv_lora_rank"]], "linear")
    t[f"{a}.o_proj.weight"] = ([h, nh * c["v_head_dim"]], "linear")

    def ffn(p, width):
        t[f"{p}.gate_proj.weight"] = ([width, h], "linear")
        t[f"{p}.up_proj.weight"] = ([width, h], "linear")
        t[f"{p}.down_proj.weight"] = ([h, width], "linear")

    m = prefix + ".mlp"
    if not moe:
        ffn(m, c["intermediate_size"])
        return t
    t[f"{m}.gate.weight"] = ([c["n_routed_experts"], h], "router")
    if c["topk_method"] == "noaux_tc":
        t[f"{m}.gate.e_score_correction_bias"] = ([c["n_routed_experts"]], "bias")
    for e in range(c["n_routed_experts"]):
        ffn(f"{m}.experts.{e}", c["moe_intermediate_size"])
    if c["n_shared_experts"]:
        ffn(f"{m}.shared_experts", c["moe_intermediate_size"] * c["n_shared_experts"])
    return t


def all_tensors(c):
    h, v = c["hidden_size"], c["vocab_size"]
    t = {"model.embed_tokens.weight": ([v, h], "embedding")}
    for i in range(c["num_hidden_layers"]):
        t.update(layer_tensors(c, f"model.layers.{i}", i >= c["first_k_dense_replace"]))
    t["model.norm.weight"] = ([h], "norm")
    t["lm_head.weight"] = ([v, h], "linear")
    for k in range(c.get("num_nextn_predict_layers", 0)):
        p = f"model.layers.{c['num_hidden_layers'] + k}"
        t[f"{p}.embed_tokens.weight"] = ([v, h], "embedding")
        t[f"{p}.enorm.weight"] = ([h], "norm")
        t[f"{p}.hnorm.weight"] = ([h], "norm")
        t[f"{p}.eh_proj.weight"] = ([h, 2 * h], "linear")
        t.update(layer_tensors(c, p, True))
        t[f"{p}.shared_head.norm.weight"] = ([h], "norm")
        t[f"{p}.shared_head.head.weight"] = ([v, h], "linear")
    return t


def random_tensor(shape, kind, gen):
    x = torch.randn(shape, generator=gen, dtype=torch.float32)
    if kind == "norm":
        return 1.0 + 0.1 * x
    if kind == "bias":
        return 0.1 * x
    if kind == "embedding":
        return x
    if kind == "router":
        return x * 2.0 / math.sqrt(shape[1])
    return x / math.sqrt(shape[1])  # linear: activations keep their scale


def quantize_fp8(w, gen):
    """fp8 e4m3 weight and float32 scale_inv [ceil(out/128), ceil(in/128)], scales that differ by block."""
    out_f, in_f = w.shape
    rows, cols = math.ceil(out_f / FP8_BLOCK), math.ceil(in_f / FP8_BLOCK)
    scale = torch.empty(rows, cols)
    q = torch.empty(out_f, in_f, dtype=torch.float8_e4m3fn)
    for r in range(rows):
        for b in range(cols):
            block = w[r * FP8_BLOCK:(r + 1) * FP8_BLOCK, b * FP8_BLOCK:(b + 1) * FP8_BLOCK]
            # amax-based scale, with a random extra factor so that blocks differ clearly
            s = block.abs().max().clamp(min=1e-8) / 448.0 * (1.0 + torch.rand(1, generator=gen).item())
            scale[r, b] = s
            q[r * FP8_BLOCK:(r + 1) * FP8_BLOCK, b * FP8_BLOCK:(b + 1) * FP8_BLOCK] = (block / s).to(torch.float8_e4m3fn)
    return q, scale


def dequantize_fp8(q, scale):
    out_f, in_f = q.shape
    s = scale.repeat_interleave(FP8_BLOCK, 0)[:out_f].repeat_interleave(FP8_BLOCK, 1)[:, :in_f]
    return q.to(torch.float32) * s


def is_quantized(name, kind):
    """Published FP8 checkpoints store every linear weight in fp8 except the router and lm_head."""
    return kind == "linear" and name != "lm_head.weight" and not name.endswith("shared_head.head.weight")


def save_sharded(tensors, out_dir, n_shards):
    names = sorted(tensors)
    if n_shards == 1:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map, per = {}, math.ceil(len(names) / n_shards)
    for s in range(n_shards):
        file = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s * per:(s + 1) * per]}
        save_file(part, os.path.join(out_dir, file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load_checked(model_dir, c):
    """from_pretrained in float32 with eager attention; nothing may be missing, and nothing unexpected
    but the MTP layer, which transformers drops."""
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    mtp = f"model.layers.{c['num_hidden_layers']}."
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(mtp)]
    assert not info["missing_keys"], f"missing keys: {sorted(info['missing_keys'])[:10]}"
    assert not unexpected, f"unexpected keys: {sorted(unexpected)[:10]}"
    assert not info.get("mismatched_keys"), f"mismatched keys: {info['mismatched_keys'][:10]}"
    dropped = len(info["unexpected_keys"]) - len(unexpected)
    print(f"  loaded {model_dir}: MTP tensors dropped by transformers: {dropped}")
    return model.eval()


def load_reference(c, out_dir, fp8, exact):
    """transformers' model over the written checkpoint itself, so that the files are the truth. An FP8
    checkpoint is read through a copy that holds its exact dequantisation (not transformers' FP8
    quantizer): the function the stored weights denote."""
    if not fp8:
        return load_checked(out_dir, c)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump({k: v for k, v in c.items() if k != "quantization_config"}, f)
        save_file({k: v.contiguous() for k, v in exact.items()}, os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        return load_checked(tmp, c)


def greedy(model, prompt, n):
    """n greedy tokens after `prompt` by full forward passes, and each step's top-2 logit margin."""
    seq, tokens, margins = list(prompt), [], []
    for _ in range(n):
        last = model(torch.tensor([seq])).logits[0, -1].float()
        top2 = torch.topk(last, 2)
        tokens.append(int(top2.indices[0]))
        margins.append(float(top2.values[0] - top2.values[1]))
        seq.append(tokens[-1])
    return prompt, tokens, margins


def make_case(name, spec, root):
    c = spec["config"]
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    out_dir = os.path.join(root, name)
    os.makedirs(out_dir, exist_ok=True)
    stored, exact = {}, {}
    for tname, (shape, kind) in all_tensors(c).items():
        w = random_tensor(shape, kind, gen)
        if kind == "bias":
            w = w + spec.get("bias_offset", 0.0)
            stored[tname] = w
            exact[tname] = w
        elif spec["fp8"] and is_quantized(tname, kind):
            q, s = quantize_fp8(w, gen)
            stored[tname], stored[tname + "_scale_inv"] = q, s
            exact[tname] = dequantize_fp8(q, s)
        else:
            stored[tname] = w.to(torch.bfloat16)
            exact[tname] = stored[tname].to(torch.float32)
    save_sharded(stored, out_dir, spec["shards"])
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)

    model = load_reference(c, out_dir, spec["fp8"], exact)
    with torch.no_grad():
        # The greedy check runs until the first step whose top-2 margin is under 0.02: of a few
        # random prompts, keep the one with the most decisive steps before that.
        best = None
        for _ in range(16):
            ids = torch.randint(2, c["vocab_size"], (spec["prompt_len"],), generator=gen)
            prompt, tokens, margins = greedy(model, ids[:8].tolist(), 20)
            decisive = next((i for i, m in enumerate(margins) if m < 0.05), len(margins))
            if best is None or decisive > best[0]:
                best = (decisive, ids, prompt, tokens, margins)
        _, ids, prompt, tokens, margins = best
        logits = model(ids[None]).logits[0].float()
        logits.numpy().astype("<f4").tofile(os.path.join(out_dir, "logits.bin"))
    expected = {"ids": ids.tolist(), "logits_file": "logits.bin", "vocab_size": c["vocab_size"],
                "transformers_version": transformers.__version__,
                "greedy": {"prompt": prompt, "tokens": tokens, "top2_margins": margins}}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"{name}: {len(stored)} tensors, logits {tuple(logits.shape)}, "
          f"min margin {min(margins):.4f}, logits std {logits.std():.3f}")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/models"
    names = sys.argv[2:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"unknown case(s): {', '.join(unknown)}; the cases: {', '.join(CASES)}")
    torch.manual_seed(0)
    for name in names:
        make_case(name, CASES[name], root)


if __name__ == "__main__":
    main()
