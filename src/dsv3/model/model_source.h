// What `-m` names: a Hugging Face model directory (config.json + safetensors) or a built-in
// preset "preset:NAME". Resolves it to a config and the tensors to bind.
#pragma once

#include <memory>
#include <string>

#include "dsv3/model/config.h"
#include "dsv3/model/tensor.h"

namespace dsv3 {

struct ModelSource {
  ModelConfig config;
  std::shared_ptr<const TensorSource> tensors;
  bool random_weights = false;  // a preset: say so wherever the model is shown to a person
};

// `spec` is a directory or "preset:NAME"; `dtype` ("fp8", "bf16" or empty for bf16) applies to
// presets only. Throws dsv3::Error naming the file or preset.
ModelSource open_model_source(const std::string& spec, const std::string& dtype);

}  // namespace dsv3
