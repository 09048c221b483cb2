// The model directories that tools/reference/make_fixtures.py writes with transformers (sharded with an
// index or single-file, BF16 and FP8 with partial 128-blocks, the MTP layer stored) open as published.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "dsv3/model/checkpoint.h"
#include "dsv3/model/config.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> fixture_model_dirs() {
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(fs::path(DSV3_FIXTURES_DIR) / "models"))
    if (fs::exists(entry.path() / "config.json")) dirs.push_back(entry.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

TEST(FixtureModels, EveryDirectoryOpensWithItsConfig) {
  const std::vector<fs::path> dirs = fixture_model_dirs();
  ASSERT_FALSE(dirs.empty());
  for (const fs::path& dir : dirs) {
    const ModelConfig config = ModelConfig::load(dir / "config.json");
    const Checkpoint checkpoint(dir);
    EXPECT_TRUE(checkpoint.contains("model.embed_tokens.weight")) << dir;
    EXPECT_TRUE(checkpoint.contains("lm_head.weight")) << dir;
    check_shape(checkpoint.get("model.embed_tokens.weight"), {config.vocab_size, config.hidden_size},
                checkpoint.file_of("model.embed_tokens.weight").string());
    if (config.num_nextn_predict_layers > 0) {
      // The MTP module is stored as the layer after the last decoder layer.
      const std::string mtp = "model.layers." + std::to_string(config.num_hidden_layers) + ".eh_proj.weight";
      EXPECT_TRUE(checkpoint.contains(mtp)) << dir << " lacks " << mtp;
    }
  }
}

TEST(FixtureModels, EveryFp8WeightHasValidBlockScales) {
  size_t n_checked = 0;
  for (const fs::path& dir : fixture_model_dirs()) {
    const Checkpoint checkpoint(dir);
    for (const std::string& name : checkpoint.names()) {
      const TensorView weight = checkpoint.get(name);
      if (weight.dtype != DType::F8_E4M3) continue;
      const std::string scale_name = name + "_scale_inv";
      ASSERT_TRUE(checkpoint.contains(scale_name)) << dir << " lacks " << scale_name;
      check_fp8_block_scales(weight, checkpoint.get(scale_name), checkpoint.file_of(scale_name).string());
      ++n_checked;
    }
  }
  EXPECT_GT(n_checked, 0u) << "no fixture stores FP8 weights";
}

TEST(FixtureModels, TensorBytesMatchTheIndexTotalSize) {
  for (const fs::path& dir : fixture_model_dirs()) {
    if (!fs::exists(dir / "model.safetensors.index.json")) continue;
    std::ifstream in(dir / "model.safetensors.index.json");
    const nlohmann::json index = nlohmann::json::parse(in);
    EXPECT_EQ(Checkpoint(dir).tensor_bytes(), index.at("metadata").at("total_size").get<size_t>()) << dir;
  }
}

}  // namespace
}  // namespace dsv3
