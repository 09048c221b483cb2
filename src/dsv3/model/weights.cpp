#include "dsv3/model/weights.h"

#include <string>

#include "dsv3/model/checkpoint.h"
#include "dsv3/util/error.h"
#include "dsv3/util/numeric.h"

namespace dsv3 {
namespace {

// Looks tensors up in a source and checks them; counts the bytes it binds.
class Binder {
 public:
  Binder(const ModelConfig& config, const TensorSource& source, Backend& backend, size_t& n_bytes)
      : config_(config), source_(source), backend_(backend), n_bytes_(n_bytes) {}

  TensorView tensor(const std::string& name, const std::vector<int64_t>& shape) {
    if (!source_.contains(name)) fail(source_.origin(), ": missing tensor ", name);
    TensorView t = source_.get(name);
    check_shape(t, shape, source_.location(name));
    n_bytes_ += t.n_bytes;
    return t;
  }

  LinearWeight linear(const std::string& prefix, int64_t out_features, int64_t in_features) {
    LinearWeight w;
    w.weight = backend_.place(tensor(prefix + ".weight", {out_features, in_features}));
    if (config_.quantization_config) {
      w.block_out = config_.quantization_config->block_out;
      w.block_in = config_.quantization_config->block_in;
    }
    if (w.is_fp8()) {
      const std::string scale_name = prefix + ".weight_scale_inv";
      if (!source_.contains(scale_name)) fail(source_.origin(), ": missing tensor ", scale_name, " (block scales of FP8 ", w.weight.name, ")");
      w.scale_inv = source_.get(scale_name);
      check_fp8_block_scales(w.weight, w.scale_inv, source_.location(scale_name), w.block_out, w.block_in);
      w.scale_inv = backend_.place(w.scale_inv);
      n_bytes_ += w.scale_inv.n_bytes;
    }
    return w;
  }

  // A vector (norm weight, router bias) widened to float32 in backend memory.
  ActBuffer vector(const std::string& name, int64_t size) {
    TensorView t = tensor(name, {size});
    if (t.dtype == DType::F8_E4M3) fail(source_.location(name), ": tensor ", name, " is F8_E4M3; norms and biases must not be");
    std::vector<float> values(static_cast<size_t>(size));
    for (int64_t i = 0; i < size; ++i) {
      switch (t.dtype) {
        case DType::F32: values[size_t(i)] = reinterpret_cast<const float*>(t.data)[i]; break;
        case DType::BF16: values[size_t(i)] = bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]); break;
        case DType::F16: values[size_t(i)] = f16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]); break;
        case DType::F8_E4M3: break;
      }
    }
    return backend_.upload(values, 1, size);
  }

  ExpertWeights ffn(const std::string& prefix, int64_t width) {
    const int64_t h = config_.hidden_size;
    return {linear(prefix + ".gate_proj", width, h), linear(prefix + ".up_proj", width, h),
            linear(prefix + ".down_proj", h, width)};
  }

  AttentionWeights attention(const std::string& prefix) {
    const ModelConfig& c = config_;
    AttentionWeights a;
    const int64_t q_width = c.num_attention_heads * c.qk_head_dim();
    if (c.has_q_lora()) {
      a.q_a_proj = linear(prefix + ".q_a_proj", c.q_lora_rank, c.hidden_size);
      a.q_a_layernorm = vector(prefix + ".q_a_layernorm.weight", c.q_lora_rank);
      a.q_b_proj = linear(prefix + ".q_b_proj", q_width, c.q_lora_rank);
    } else {
      a.q_proj = linear(prefix + ".q_proj", q_width, c.hidden_size);
    }
    a.kv_a_proj_with_mqa = linear(prefix + ".kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size);
    a.kv_a_layernorm = vector(prefix + ".kv_a_layernorm.weight", c.kv_lora_rank);
    a.kv_b_proj = linear(prefix + ".kv_b_proj", c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim),
                         c.kv_lora_rank);
    a.o_proj = linear(prefix + ".o_proj", c.hidden_size, c.num_attention_heads * c.v_head_dim);
    return a;
  }

  MoEWeights moe(const std::string& prefix) {
    const ModelConfig& c = config_;
    MoEWeights m;
    m.gate = linear(prefix + ".gate", c.n_routed_experts, c.hidden_size);
    if (c.topk_method == TopkMethod::NoauxTc)
      m.e_score_correction_bias = vector(prefix + ".gate.e_score_correction_bias", c.n_routed_experts);
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      m.experts.push_back(ffn(prefix + ".experts." + std::to_string(e), c.moe_intermediate_size));
    if (c.n_shared_experts > 0)
      m.shared_experts = ffn(prefix + ".shared_experts", c.moe_intermediate_size * c.n_shared_experts);
    return m;
  }

  LayerWeights layer(int64_t index, bool moe_layer) {
    const std::string prefix = "model.layers." + std::to_string(index);
    LayerWeights l;
    l.input_layernorm = vector(prefix + ".input_layernorm.weight", config_.hidden_size);
    l.self_attn = attention(prefix + ".self_attn");
    l.post_attention_layernorm = vector(prefix + ".post_attention_layernorm.weight", config_.hidden_size);
    if (moe_layer) {
      l.moe = moe(prefix + ".mlp");
    } else {
      l.mlp = ffn(prefix + ".mlp", config_.intermediate_size);
    }
    return l;
  }

  MtpWeights mtp(int64_t index) {
    const std::string prefix = "model.layers." + std::to_string(index);
    const int64_t h = config_.hidden_size;
    MtpWeights m{vector(prefix + ".enorm.weight", h),
                 vector(prefix + ".hnorm.weight", h),
                 linear(prefix + ".eh_proj", h, 2 * h),
                 layer(index, config_.n_routed_experts > 0),
                 vector(prefix + ".shared_head.norm.weight", h),
                 linear(prefix + ".shared_head.head", config_.vocab_size, h)};
    return m;
  }


 private:
  const ModelConfig& config_;
  const TensorSource& source_;
  Backend& backend_;
  size_t& n_bytes_;
};

}  // namespace

ModelWeights ModelWeights::bind(const ModelConfig& config, const TensorSource& source, Backend& backend) {
  ModelWeights w;
  Binder binder(config, source, backend, w.n_bytes);
  w.embed_tokens = binder.tensor("model.embed_tokens.weight", {config.vocab_size, config.hidden_size});
  if (w.embed_tokens.dtype == DType::F8_E4M3)
    fail(source.location("model.embed_tokens.weight"), ": model.embed_tokens.weight must not be F8_E4M3");
  w.embed_tokens = backend.place(w.embed_tokens);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) w.layers.push_back(binder.layer(i, config.is_moe_layer(i)));
  w.norm = binder.vector("model.norm.weight", config.hidden_size);
  w.lm_head = binder.linear("lm_head", config.vocab_size, config.hidden_size);
  // The MTP module is loaded when stored; a checkpoint without it (or with it stripped) is fine.
  const std::string mtp_probe = "model.layers." + std::to_string(config.num_hidden_layers) + ".eh_proj.weight";
  if (config.num_nextn_predict_layers > 0 && source.contains(mtp_probe)) w.mtp = binder.mtp(config.num_hidden_layers);
  return w;
}

}  // namespace dsv3
