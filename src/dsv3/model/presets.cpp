#include "dsv3/model/presets.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>

#include "dsv3/util/error.h"
#include "dsv3/util/numeric.h"
#include "dsv3/util/thread_pool.h"

namespace dsv3 {
namespace {

// SplitMix64: a tiny, fast generator whose streams are independent enough for random weights.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1).
float uniform_pm1(uint64_t& state) { return float(int64_t(splitmix64(state) >> 11) - (int64_t(1) << 52)) / float(int64_t(1) << 52); }

uint64_t name_hash(const std::string& name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

int64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return INT64_MAX;
}

ModelConfig v3_family_base() {
  ModelConfig c;
  c.family = ModelFamily::DeepseekV3;
  c.scoring_func = ScoringFunc::Sigmoid;
  c.topk_method = TopkMethod::NoauxTc;
  c.norm_topk_prob = true;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.kv_lora_rank = 512;
  c.num_nextn_predict_layers = 0;
  return c;
}

YarnScaling deepseek_yarn(double mscale, double mscale_all_dim) {
  YarnScaling y;
  y.factor = 40;
  y.original_max_position_embeddings = 4096;
  y.beta_fast = 32;
  y.beta_slow = 1;
  y.mscale = mscale;
  y.mscale_all_dim = mscale_all_dim;
  return y;
}

}  // namespace

ModelConfig preset_config(const std::string& name, PresetDtype dtype) {
  ModelConfig c = v3_family_base();
  if (name == "demo") {
    // Tiny, with every feature of the V3 architecture, and the real 129280-token vocabulary.
    c.vocab_size = 129280;
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.moe_intermediate_size = 128;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.q_lora_rank = 128;
    c.kv_lora_rank = 128;
    c.qk_nope_head_dim = 32;
    c.qk_rope_head_dim = 16;
    c.v_head_dim = 32;
    c.n_routed_experts = 16;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 4;
    c.first_k_dense_replace = 1;
    c.n_group = 4;
    c.topk_group = 2;
    c.routed_scaling_factor = 2.5;
    c.max_position_embeddings = 163840;
    c.rope_scaling = deepseek_yarn(1.0, 1.0);
  } else if (name == "v2-lite") {
    c.family = ModelFamily::DeepseekV2;
    c.scoring_func = ScoringFunc::Softmax;
    c.topk_method = TopkMethod::Greedy;
    c.norm_topk_prob = false;
    c.vocab_size = 102400;
    c.hidden_size = 2048;
    c.intermediate_size = 10944;
    c.moe_intermediate_size = 1408;
    c.num_hidden_layers = 27;
    c.num_attention_heads = 16;
    c.q_lora_rank = 0;
    c.n_routed_experts = 64;
    c.n_shared_experts = 2;
    c.num_experts_per_tok = 6;
    c.first_k_dense_replace = 1;
    c.routed_scaling_factor = 1.0;
    c.max_position_embeddings = 163840;
    c.rope_scaling = deepseek_yarn(0.707, 0.707);
    c.bos_token_id = 100000;
    c.eos_token_id = 100001;
  } else if (name == "moonlight") {
    c.vocab_size = 163840;
    c.hidden_size = 2048;
    c.intermediate_size = 11264;
    c.moe_intermediate_size = 1408;
    c.num_hidden_layers = 27;
    c.num_attention_heads = 16;
    c.q_lora_rank = 0;
    c.n_routed_experts = 64;
    c.n_shared_experts = 2;
    c.num_experts_per_tok = 6;
    c.first_k_dense_replace = 1;
    c.routed_scaling_factor = 2.446;
    c.rope_theta = 50000;
    c.max_position_embeddings = 8192;
    c.rms_norm_eps = 1e-5;
    c.bos_token_id = 163584;
    c.eos_token_id = 163585;
  } else if (name == "v3") {
    c.vocab_size = 129280;
    c.hidden_size = 7168;
    c.intermediate_size = 18432;
    c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 61;
    c.num_attention_heads = 128;
    c.q_lora_rank = 1536;
    c.n_routed_experts = 256;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 8;
    c.first_k_dense_replace = 3;
    c.n_group = 8;
    c.topk_group = 4;
    c.routed_scaling_factor = 2.5;
    c.max_position_embeddings = 163840;
    c.rope_scaling = deepseek_yarn(1.0, 1.0);
  } else {
    fail("unknown preset '", name, "' (known: demo, v2-lite, moonlight, v3)");
  }
  if (dtype == PresetDtype::Fp8) c.quantization_config = QuantizationConfig{"fp8", "e4m3", "dynamic", 128, 128};
  return c;
}

PresetSource::PresetSource(const std::string& name, const ModelConfig& config, PresetDtype dtype, uint64_t seed)
    : name_(name), seed_(seed) {
  const int64_t h = config.hidden_size;
  specs_["model.embed_tokens.weight"] = {DType::BF16, {config.vocab_size, h}, Init::Embedding};
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) declare_layer(config, layer, dtype);
  specs_["model.norm.weight"] = {DType::BF16, {h}, Init::Norm};
  specs_["lm_head.weight"] = {DType::BF16, {config.vocab_size, h}, Init::Linear};
  for (const auto& [n, spec] : specs_) {
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    n_bytes_ += size_t(numel) * dtype_bytes(spec.dtype);
  }
  const int64_t available = available_memory_bytes();
  if (int64_t(n_bytes_) > available)
    fail("preset:", name, " needs ", n_bytes_ >> 20, " MiB for its weights and this machine has ", available >> 20,
         " MiB available", dtype == PresetDtype::Bf16 ? " (try --dtype fp8)" : "");
}

void PresetSource::declare_linear(const std::string& prefix, int64_t out, int64_t in, PresetDtype dtype) {
  if (dtype == PresetDtype::Fp8) {
    specs_[prefix + ".weight"] = {DType::F8_E4M3, {out, in}, Init::Linear};
    specs_[prefix + ".weight_scale_inv"] = {DType::F32, {(out + 127) / 128, (in + 127) / 128}, Init::Scale};
  } else {
    specs_[prefix + ".weight"] = {DType::BF16, {out, in}, Init::Linear};
  }
}

void PresetSource::declare_layer(const ModelConfig& c, int64_t layer, PresetDtype dtype) {
  const std::string p = "model.layers." + std::to_string(layer);
  const int64_t h = c.hidden_size, q_width = c.num_attention_heads * c.qk_head_dim();
  specs_[p + ".input_layernorm.weight"] = {DType::BF16, {h}, Init::Norm};
  specs_[p + ".post_attention_layernorm.weight"] = {DType::BF16, {h}, Init::Norm};
  if (c.has_q_lora()) {
    declare_linear(p + ".self_attn.q_a_proj", c.q_lora_rank, h, dtype);
    specs_[p + ".self_attn.q_a_layernorm.weight"] = {DType::BF16, {c.q_lora_rank}, Init::Norm};
    declare_linear(p + ".self_attn.q_b_proj", q_width, c.q_lora_rank, dtype);
  } else {
    declare_linear(p + ".self_attn.q_proj", q_width, h, dtype);
  }
  declare_linear(p + ".self_attn.kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, h, dtype);
  specs_[p + ".self_attn.kv_a_layernorm.weight"] = {DType::BF16, {c.kv_lora_rank}, Init::Norm};
  declare_linear(p + ".self_attn.kv_b_proj", c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim),
                 c.kv_lora_rank, dtype);
  declare_linear(p + ".self_attn.o_proj", h, c.num_attention_heads * c.v_head_dim, dtype);
  auto declare_ffn = [&](const std::string& prefix, int64_t width) {
    declare_linear(prefix + ".gate_proj", width, h, dtype);
    declare_linear(prefix + ".up_proj", width, h, dtype);
    declare_linear(prefix + ".down_proj", h, width, dtype);
  };
  if (!c.is_moe_layer(layer)) {
    declare_ffn(p + ".mlp", c.intermediate_size);
    return;
  }
  specs_[p + ".mlp.gate.weight"] = {DType::BF16, {c.n_routed_experts, h}, Init::Linear};
  if (c.topk_method == TopkMethod::NoauxTc)
    specs_[p + ".mlp.gate.e_score_correction_bias"] = {DType::F32, {c.n_routed_experts}, Init::Bias};
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    declare_ffn(p + ".mlp.experts." + std::to_string(e), c.moe_intermediate_size);
  if (c.n_shared_experts > 0) declare_ffn(p + ".mlp.shared_experts", c.moe_intermediate_size * c.n_shared_experts);
}

Buffer PresetSource::generate(const std::string& name, const Spec& spec) const {
  int64_t numel = 1;
  for (int64_t d : spec.shape) numel *= d;
  const int64_t fan_in = spec.shape.back();
  // Left uninitialised: every byte is written once below.
  const size_t n_bytes = size_t(numel) * dtype_bytes(spec.dtype);
  uint8_t* bytes = static_cast<uint8_t*>(std::malloc(std::max<size_t>(n_bytes, 1)));
  if (!bytes) fail(origin(), ": out of memory generating ", name);
  Buffer buffer(bytes, n_bytes, [](void* p) { std::free(p); });
  const uint64_t base = name_hash(name, seed_);
  // Chunks with their own streams: the values do not depend on the number of threads.
  constexpr int64_t kChunk = 1 << 16;
  ThreadPool::global().parallel_for((numel + kChunk - 1) / kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      uint64_t state = base ^ (uint64_t(chunk) * 0xd1b54a32d192ed03ull);
      for (int64_t i = chunk * kChunk; i < std::min(numel, (chunk + 1) * kChunk); ++i) {
        switch (spec.init) {
          case Init::Norm:
            reinterpret_cast<uint16_t*>(bytes)[i] = f32_to_bf16(1.0f + 0.1f * uniform_pm1(state));
            break;
          case Init::Bias:
            reinterpret_cast<float*>(bytes)[i] = 0.01f * uniform_pm1(state);
            break;
          case Init::Scale:  // the fp8 codes below have an RMS of about 0.8: scale to 1/sqrt(fan_in)
            reinterpret_cast<float*>(bytes)[i] =
                (1.0f + 0.1f * uniform_pm1(state)) / (0.8f * std::sqrt(float(128 * fan_in)));
            break;
          case Init::Embedding:
            reinterpret_cast<uint16_t*>(bytes)[i] = f32_to_bf16(uniform_pm1(state));
            break;
          case Init::Linear:
            if (spec.dtype == DType::F8_E4M3) {
              // A random sign and a magnitude code up to 0x40 (2.0).
              const uint64_t r = splitmix64(state);
              bytes[i] = uint8_t((r & 0x80) | ((r >> 8) % 0x41));
            } else {
              // Uniform with std 1/sqrt(fan_in): activations keep their scale through the layers.
              const float limit = std::sqrt(3.0f / float(fan_in));
              reinterpret_cast<uint16_t*>(bytes)[i] = f32_to_bf16(limit * uniform_pm1(state));
            }
            break;
        }
      }
    }
  });
  return buffer;
}

bool PresetSource::contains(const std::string& name) const { return specs_.count(name) > 0; }

TensorView PresetSource::get(const std::string& name) const {
  auto spec = specs_.find(name);
  if (spec == specs_.end()) fail(origin(), ": no tensor ", name);
  std::lock_guard lock(mutex_);
  auto made = made_.find(name);
  if (made == made_.end()) made = made_.emplace(name, generate(name, spec->second)).first;
  return {name, spec->second.dtype, spec->second.shape, static_cast<const uint8_t*>(made->second.data()),
          made->second.n_bytes()};
}

std::vector<std::string> PresetSource::names() const {
  std::vector<std::string> out;
  for (const auto& [name, spec] : specs_) out.push_back(name);
  return out;
}

}  // namespace dsv3
