// Built-in models with random weights, `-m preset:NAME`: the shapes of real DeepSeek models
// (v2-lite, moonlight, v3) and the tiny `demo`, so that tests and benchmarks need no files.
// Weights are a deterministic function of (seed, tensor name), made when a tensor is first asked for.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dsv3/backend/buffer.h"
#include "dsv3/model/config.h"
#include "dsv3/model/tensor.h"

namespace dsv3 {

enum class PresetDtype { Bf16, Fp8 };

// The config of preset `name` ("demo", "v2-lite", "moonlight", "v3"); throws naming the known ones.
ModelConfig preset_config(const std::string& name, PresetDtype dtype);

class PresetSource final : public TensorSource {
 public:
  // Declares every tensor of `config` (linear weights in `dtype`, with block scales for fp8;
  // embeddings, norms, router and lm_head in bf16 as published checkpoints have them).
  // Throws when the weights would not fit in this machine's available memory.
  PresetSource(const std::string& name, const ModelConfig& config, PresetDtype dtype, uint64_t seed = 0);

  bool contains(const std::string& name) const override;
  TensorView get(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string origin() const override { return "preset:" + name_; }
  size_t n_bytes() const { return n_bytes_; }

 private:
  enum class Init { Linear, Scale, Norm, Bias, Embedding };
  struct Spec {
    DType dtype;
    std::vector<int64_t> shape;
    Init init;
  };
  void declare_linear(const std::string& prefix, int64_t out, int64_t in, PresetDtype dtype);
  void declare_layer(const ModelConfig& config, int64_t layer, PresetDtype dtype);
  Buffer generate(const std::string& name, const Spec& spec) const;

  std::string name_;
  uint64_t seed_;
  std::map<std::string, Spec> specs_;
  size_t n_bytes_ = 0;
  mutable std::mutex mutex_;
  mutable std::map<std::string, Buffer> made_;
};

}  // namespace dsv3
