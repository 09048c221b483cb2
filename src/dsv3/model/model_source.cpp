#include "dsv3/model/model_source.h"

#include <filesystem>

#include "dsv3/model/checkpoint.h"
#include "dsv3/model/presets.h"
#include "dsv3/util/error.h"

namespace dsv3 {

ModelSource open_model_source(const std::string& spec, const std::string& dtype) {
  const std::string preset_prefix = "preset:";
  if (spec.rfind(preset_prefix, 0) == 0) {
    if (!dtype.empty() && dtype != "bf16" && dtype != "fp8") fail("flag --dtype expects bf16 or fp8, got '", dtype, "'");
    const PresetDtype preset_dtype = dtype == "fp8" ? PresetDtype::Fp8 : PresetDtype::Bf16;
    const std::string name = spec.substr(preset_prefix.size());
    ModelConfig config = preset_config(name, preset_dtype);
    auto tensors = std::make_shared<PresetSource>(name, config, preset_dtype);
    return {std::move(config), std::move(tensors), true};
  }
  const std::filesystem::path dir(spec);
  if (!std::filesystem::is_directory(dir)) fail("-m ", spec, ": no such model directory (or preset:NAME)");
  if (!dtype.empty()) fail("flag --dtype applies to presets only: ", spec, " is used as stored");
  ModelConfig config = ModelConfig::load(dir / "config.json");
  auto tensors = std::make_shared<Checkpoint>(dir);
  return {std::move(config), std::move(tensors), false};
}

}  // namespace dsv3
