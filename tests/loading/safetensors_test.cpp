#include "dsv3/model/safetensors.h"

#include <gtest/gtest.h>

#include "loading/expect_error.h"
#include "loading/safetensors_writer.h"

namespace dsv3 {
namespace {

using testing::safetensors_bytes;
using testing::TempDir;
using testing::tensor_byte;
using testing::write_file;

std::vector<TensorView> parse(const std::string& bytes) {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "shard.safetensors");
}

TEST(Safetensors, ParsesEveryLoadedDtypeIntoViewsOfTheBytes) {
  const std::string bytes = safetensors_bytes({{"a.f32", "F32", {2, 3}},
                                               {"b.bf16", "BF16", {4}},
                                               {"c.f16", "F16", {1, 2}},
                                               {"d.fp8", "F8_E4M3", {3, 5}}});
  const std::vector<TensorView> views = parse(bytes);
  ASSERT_EQ(views.size(), 4u);
  const std::vector<DType> dtypes = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3};
  const std::vector<std::vector<int64_t>> shapes = {{2, 3}, {4}, {1, 2}, {3, 5}};
  const std::vector<size_t> n_bytes = {24, 8, 4, 15};
  for (size_t i = 0; i < views.size(); ++i) {
    EXPECT_EQ(views[i].dtype, dtypes[i]);
    EXPECT_EQ(views[i].shape, shapes[i]);
    EXPECT_EQ(views[i].n_bytes, n_bytes[i]);
    EXPECT_GE(views[i].data, reinterpret_cast<const uint8_t*>(bytes.data()));
    EXPECT_LE(views[i].data + views[i].n_bytes, reinterpret_cast<const uint8_t*>(bytes.data() + bytes.size()));
    EXPECT_EQ(views[i].data[0], tensor_byte(i, 0));
    EXPECT_EQ(views[i].data[views[i].n_bytes - 1], tensor_byte(i, views[i].n_bytes - 1));
  }
}

TEST(Safetensors, AcceptsScalarsEmptyTensorsAndIgnoresMetadata) {
  const std::string bytes = safetensors_bytes(
      R"({"__metadata__": {"format": "pt"}, "scalar": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},)"
      R"( "empty": {"dtype": "BF16", "shape": [0, 7], "data_offsets": [4, 4]}})",
      4);
  const std::vector<TensorView> views = parse(bytes);
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].name, "empty");
  EXPECT_EQ(views[0].n_bytes, 0u);
  EXPECT_EQ(views[1].name, "scalar");
  EXPECT_EQ(views[1].numel(), 1);
}

TEST(Safetensors, RefusesAFileShorterThanTheHeaderLength) {
  EXPECT_ERROR(parse("abc"), "shard.safetensors", "too short");
}

TEST(Safetensors, RefusesAHeaderLengthBeyondTheFile) {
  std::string bytes = safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 4);
  bytes[0] = char(0xff);
  bytes[1] = char(0xff);
  EXPECT_ERROR(parse(bytes), "shard.safetensors", "header length 65535 runs past the end of the file");
}

TEST(Safetensors, RefusesAHeaderThatIsNotJson) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "F32",)", 0)), "shard.safetensors", "not valid JSON");
}

TEST(Safetensors, RefusesAHeaderThatIsNotAnObject) {
  EXPECT_ERROR(parse(safetensors_bytes("[1, 2]", 0)), "shard.safetensors", "not an object");
}

TEST(Safetensors, RefusesAnEntryThatIsNotAnObject) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": 3})", 0)), "shard.safetensors", "tensor w", "not an object");
}

TEST(Safetensors, RefusesAnEntryWithoutDataOffsets) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [1]}})", 4)), "tensor w",
               "no data_offsets");
}

TEST(Safetensors, RefusesADtypeItDoesNotLoad) {
  EXPECT_ERROR(parse(safetensors_bytes({{"model.embed_tokens.weight", "F64", {2}}})), "shard.safetensors",
               "tensor model.embed_tokens.weight", "dtype F64");
}

TEST(Safetensors, RefusesANegativeDimension) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4)),
               "tensor w", "shape [-1]");
}

TEST(Safetensors, RefusesAShapeWhoseSizeOverflows) {
  EXPECT_ERROR(parse(safetensors_bytes(
                   R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0)),
               "tensor w", "overflows");
}

TEST(Safetensors, RefusesNegativeOffsets) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4)),
               "tensor w", "data_offsets [-4,0]");
}

TEST(Safetensors, RefusesOffsetsThatBeginAfterTheyEnd) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}})", 4)),
               "tensor w", "begin after they end");
}

TEST(Safetensors, RefusesOffsetsBeyondTheData) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4)),
               "shard.safetensors", "tensor w", "run past the end of the data");
}

TEST(Safetensors, RefusesASizeThatDisagreesWithShapeAndDtype) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 8]}})", 8)),
               "tensor w", "span 8 bytes", "needs 6");
}

TEST(Safetensors, RefusesOverlappingTensors) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                       R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                       12)),
               "tensor b", "overlap", "tensor a");
}

TEST(Safetensors, RefusesATensorNamedTwice) {
  EXPECT_ERROR(parse(safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                                       R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                       8)),
               "tensor w", "twice");
}

TEST(SafetensorsFile, MapsAFileAndNamesItInErrors) {
  TempDir dir;
  write_file(dir / "ok.safetensors", safetensors_bytes({{"w", "BF16", {2, 2}}}));
  const SafetensorsFile file(dir / "ok.safetensors");
  ASSERT_EQ(file.tensors().size(), 1u);
  EXPECT_EQ(file.tensors()[0].data[0], tensor_byte(0, 0));

  write_file(dir / "empty.safetensors", "");
  EXPECT_ERROR(SafetensorsFile(dir / "empty.safetensors"), (dir / "empty.safetensors").string(), "too short");
  EXPECT_ERROR(SafetensorsFile(dir / "absent.safetensors"), (dir / "absent.safetensors").string(), "cannot open");
}

}  // namespace
}  // namespace dsv3
