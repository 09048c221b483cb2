#include "dsv3/model/checkpoint.h"

#include <gtest/gtest.h>

#include <fstream>

#include "loading/expect_error.h"
#include "loading/safetensors_writer.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using testing::safetensors_bytes;
using testing::TempDir;
using testing::tensor_byte;
using testing::write_file;
using testing::write_index;

constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

// A sharded checkpoint as Hugging Face publishes one: two shards and the index that maps into them.
void write_sharded(const TempDir& dir) {
  write_file(dir / kShard1, safetensors_bytes({{"model.embed_tokens.weight", "BF16", {8, 4}},
                                               {"model.norm.weight", "F32", {4}}}));
  write_file(dir / kShard2, safetensors_bytes({{"lm_head.weight", "BF16", {8, 4}}}));
  write_index(dir.path(), {{"model.embed_tokens.weight", kShard1}, {"model.norm.weight", kShard1}, {"lm_head.weight", kShard2}});
}

TEST(Checkpoint, OpensShardsThroughTheIndex) {
  TempDir dir;
  write_sharded(dir);
  const Checkpoint checkpoint(dir.path());
  EXPECT_EQ(checkpoint.n_shards(), 2u);
  EXPECT_EQ(checkpoint.names(),
            (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}));
  const TensorView head = checkpoint.get("lm_head.weight");
  EXPECT_EQ(head.dtype, DType::BF16);
  EXPECT_EQ(head.shape, (std::vector<int64_t>{8, 4}));
  EXPECT_EQ(head.data[5], tensor_byte(0, 5));
  EXPECT_EQ(checkpoint.file_of("lm_head.weight"), dir / kShard2);
  EXPECT_EQ(checkpoint.tensor_bytes(), 64u + 16u + 64u);
  EXPECT_EQ(checkpoint.origin(), dir.path().string());
}

TEST(Checkpoint, OpensASingleModelSafetensors) {
  TempDir dir;
  write_file(dir / "model.safetensors", safetensors_bytes({{"a", "F32", {2}}, {"b", "F8_E4M3", {3}}}));
  const Checkpoint checkpoint(dir.path());
  EXPECT_TRUE(checkpoint.contains("a"));
  EXPECT_TRUE(checkpoint.contains("b"));
  EXPECT_EQ(checkpoint.tensor_bytes(), 11u);
}

TEST(Checkpoint, OpensEverySafetensorsFileWhenThereIsNoIndex) {
  TempDir dir;
  write_file(dir / "first.safetensors", safetensors_bytes({{"a", "F32", {2}}}));
  write_file(dir / "second.safetensors", safetensors_bytes({{"b", "F16", {2}}}));
  write_file(dir / "notes.txt", "not a shard");
  const Checkpoint checkpoint(dir.path());
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(checkpoint.file_of("b"), dir / "second.safetensors");
}

TEST(Checkpoint, RefusesATensorInTwoFilesWithoutAnIndex) {
  TempDir dir;
  write_file(dir / "first.safetensors", safetensors_bytes({{"a", "F32", {2}}}));
  write_file(dir / "second.safetensors", safetensors_bytes({{"a", "F32", {2}}}));
  EXPECT_ERROR(Checkpoint{dir.path()}, "tensor a", "first.safetensors", "second.safetensors");
}

TEST(Checkpoint, RefusesADirectoryWithoutTensors) {
  TempDir dir;
  EXPECT_ERROR(Checkpoint{dir.path()}, dir.path().string(), "no model.safetensors.index.json");
  EXPECT_ERROR(Checkpoint{dir / "absent"}, (dir / "absent").string(), "not a model directory");
}

TEST(Checkpoint, MissingTensorNamesTheTensorAndTheDirectory) {
  TempDir dir;
  write_sharded(dir);
  const Checkpoint checkpoint(dir.path());
  EXPECT_FALSE(checkpoint.contains("model.layers.0.input_layernorm.weight"));
  EXPECT_ERROR(checkpoint.get("model.layers.0.input_layernorm.weight"), dir.path().string(),
               "model.layers.0.input_layernorm.weight");
}

TEST(Checkpoint, MisshapenTensorNamesItsShardAndBothShapes) {
  TempDir dir;
  write_sharded(dir);
  const Checkpoint checkpoint(dir.path());
  const TensorView norm = checkpoint.get("model.norm.weight");
  check_shape(norm, {4}, checkpoint.file_of("model.norm.weight").string());
  EXPECT_ERROR(check_shape(norm, {7168}, checkpoint.file_of("model.norm.weight").string()), kShard1,
               "tensor model.norm.weight", "shape [4], expected [7168]");
}

TEST(Checkpoint, IndexPointingToAMissingShardNamesIndexShardAndTensor) {
  TempDir dir;
  write_sharded(dir);
  fs::remove(dir / kShard2);
  EXPECT_ERROR(Checkpoint{dir.path()}, "model.safetensors.index.json", kShard2, "lm_head.weight", "does not exist");
}

TEST(Checkpoint, IndexMappingATensorToAShardThatLacksItNamesBoth) {
  TempDir dir;
  write_sharded(dir);
  write_index(dir.path(), {{"model.embed_tokens.weight", kShard1}, {"lm_head.weight", kShard1}});
  EXPECT_ERROR(Checkpoint{dir.path()}, "lm_head.weight", kShard1, "does not contain it");
}

TEST(Checkpoint, RefusesAnIndexThatPointsOutsideTheDirectory) {
  TempDir dir;
  write_sharded(dir);
  write_index(dir.path(), {{"lm_head.weight", "../elsewhere.safetensors"}});
  EXPECT_ERROR(Checkpoint{dir.path()}, "model.safetensors.index.json", "lm_head.weight", "not a file name");
}

TEST(Checkpoint, RefusesAnIndexThatIsNotJson) {
  TempDir dir;
  write_sharded(dir);
  write_file(dir / "model.safetensors.index.json", "{\"weight_map\": ");
  EXPECT_ERROR(Checkpoint{dir.path()}, "model.safetensors.index.json", "not valid JSON");
}

TEST(Checkpoint, TruncatedShardFailsAtOpenNamingTheShardAndTensor) {
  TempDir dir;
  write_sharded(dir);
  fs::resize_file(dir / kShard1, fs::file_size(dir / kShard1) - 3);
  EXPECT_ERROR(Checkpoint{dir.path()}, kShard1, "model.norm.weight", "truncated");
}

TEST(Checkpoint, HeaderLengthBeyondTheFileNamesTheShard) {
  TempDir dir;
  write_sharded(dir);
  write_file(dir / kShard2, safetensors_bytes({{"lm_head.weight", "BF16", {8, 4}}}).substr(0, 20));
  EXPECT_ERROR(Checkpoint{dir.path()}, kShard2, "header length", "runs past the end of the file");
}

TEST(Checkpoint, BadJsonInAShardNamesTheShard) {
  TempDir dir;
  write_sharded(dir);
  write_file(dir / kShard2, safetensors_bytes(R"({"lm_head.weight": {"dtype": "BF16", "sha)", 64));
  EXPECT_ERROR(Checkpoint{dir.path()}, kShard2, "not valid JSON");
}

TEST(Checkpoint, UnknownDtypeNamesTheShardTheTensorAndTheDtype) {
  TempDir dir;
  write_sharded(dir);
  write_file(dir / kShard2, safetensors_bytes({{"lm_head.weight", "I32", {8, 4}}}));
  EXPECT_ERROR(Checkpoint{dir.path()}, kShard2, "tensor lm_head.weight", "dtype I32");
}

// Resident anonymous memory of this process: what a copy of the tensors would add to.
int64_t rss_anon_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    int64_t kib = 0;
    if (key == "RssAnon:" && status >> kib) return kib * 1024;
  }
  return -1;
}

TEST(Checkpoint, MapsTensorsWithoutCopyingThem) {
  TempDir dir;
  const int64_t rows = 8192, cols = 4096;  // 64 MiB of BF16
  write_file(dir / "model.safetensors", safetensors_bytes({{"w", "BF16", {rows, cols}}}));
  const int64_t before = rss_anon_bytes();
  const Checkpoint checkpoint(dir.path());
  const TensorView w = checkpoint.get("w");
  uint64_t sum = 0;
  for (size_t i = 0; i < w.n_bytes; i += 4096) sum += w.data[i];  // touch every page
  EXPECT_GT(sum, 0u);
  const int64_t grown = rss_anon_bytes() - before;
  EXPECT_LT(grown, int64_t(w.n_bytes) / 10) << "opening and reading the checkpoint grew anonymous memory by "
                                             << grown << " bytes for " << w.n_bytes << " bytes of tensors";
}

TEST(Fp8BlockScales, AcceptsPartialEdgeBlocks) {
  // kv_a_proj_with_mqa of DeepSeek-V3: 576 = 4.5 blocks of 128 rows.
  const TensorView weight{"kv_a_proj_with_mqa.weight", DType::F8_E4M3, {576, 7168}, nullptr, 0};
  const TensorView scale{"kv_a_proj_with_mqa.weight_scale_inv", DType::F32, {5, 56}, nullptr, 0};
  check_fp8_block_scales(weight, scale, "shard.safetensors");
}

TEST(Fp8BlockScales, RefusesScalesOfTheWrongShape) {
  const TensorView weight{"o_proj.weight", DType::F8_E4M3, {300, 200}, nullptr, 0};
  const TensorView scale{"o_proj.weight_scale_inv", DType::F32, {2, 2}, nullptr, 0};
  EXPECT_ERROR(check_fp8_block_scales(weight, scale, "shard.safetensors"), "shard.safetensors",
               "tensor o_proj.weight_scale_inv", "shape [2, 2], expected [3, 2]");
}

TEST(Fp8BlockScales, RefusesScalesThatAreNotF32) {
  const TensorView weight{"o_proj.weight", DType::F8_E4M3, {128, 128}, nullptr, 0};
  const TensorView scale{"o_proj.weight_scale_inv", DType::BF16, {1, 1}, nullptr, 0};
  EXPECT_ERROR(check_fp8_block_scales(weight, scale, "shard.safetensors"), "tensor o_proj.weight_scale_inv",
               "dtype BF16, expected F32");
}

TEST(Fp8BlockScales, RefusesAWeightThatIsNotFp8) {
  const TensorView weight{"o_proj.weight", DType::BF16, {128, 128}, nullptr, 0};
  const TensorView scale{"o_proj.weight_scale_inv", DType::F32, {1, 1}, nullptr, 0};
  EXPECT_ERROR(check_fp8_block_scales(weight, scale, "shard.safetensors"), "tensor o_proj.weight", "F8_E4M3");
}

}  // namespace
}  // namespace dsv3
