// A checkpoint whose tensors disagree with its config.json fails to load with one message naming the
// shard file and the tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "dsv3/backend/backend.h"
#include "dsv3/model/deepseek_model.h"
#include "dsv3/model/model_source.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

TEST(ConfigWeightMismatch, ErrorNamesTheShardAndTheTensor) {
  const fs::path fixture = fs::path(DSV3_FIXTURES_DIR) / "models" / "v3_bf16";
  const fs::path dir = fs::temp_directory_path() / "dsv3_mismatch_test";
  fs::remove_all(dir);
  fs::copy(fixture, dir);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  config["kv_lora_rank"] = config["kv_lora_rank"].get<int>() / 2;  // the stored kv_a_proj_with_mqa is wider
  std::ofstream(dir / "config.json") << config.dump();

  try {
    ModelSource source = open_model_source(dir.string(), "");
    DeepseekModel model(source.config, source.tensors, make_backend("cpu"), 256);
    FAIL() << "a mismatched checkpoint loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("model-0000"), std::string::npos) << message;  // the shard, not just the directory
    EXPECT_NE(message.find("model.layers.0.self_attn.kv_a_proj_with_mqa.weight"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv3
