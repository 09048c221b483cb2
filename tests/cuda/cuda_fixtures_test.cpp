// The transformers fixtures on the GPU (issue: CUDA backend): logits of every position within 3e-2
// relative L2 of transformers (BF16 tensor-core products and FP8 activations in prefill), greedy
// tokens identical while the reference's top-2 margin exceeds 0.1. Skipped where no GPU is visible.
#include <gtest/gtest.h>

#include "dsv3/backend/cuda/cuda_backend.h"
#include "fidelity/fixture_cases.h"

namespace dsv3 {
namespace {

constexpr double kLogitsTolerance = 3e-2;
constexpr float kGreedyMarginFloor = 0.1f;

class CudaFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!cuda::device_present()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(CudaFixture, LogitsOfEveryPositionMatch) {
  Fixture f = load_fixture(GetParam(), "cuda");
  const std::vector<int32_t> ids = f.expected.at("ids").get<std::vector<int32_t>>();
  const std::vector<float> reference = read_floats(f.dir / f.expected.at("logits_file").get<std::string>());
  CacheSequence sequence;
  const ForwardChunk chunk{&sequence, ids};
  const std::vector<float> logits = f.model->forward({&chunk, 1}, true);
  ASSERT_EQ(logits.size(), reference.size());
  const double error = relative_l2(logits, reference);
  RecordProperty("relative_l2", std::to_string(error));
  EXPECT_LE(error, kLogitsTolerance);
}

TEST_P(CudaFixture, GreedyTokensMatchWhileTheReferenceIsDecisive) {
  Fixture f = load_fixture(GetParam(), "cuda");
  const auto& greedy = f.expected.at("greedy");
  const std::vector<int32_t> expected = greedy.at("tokens").get<std::vector<int32_t>>();
  const std::vector<float> margins = greedy.at("top2_margins").get<std::vector<float>>();
  CacheSequence sequence;
  std::vector<int32_t> next = greedy.at("prompt").get<std::vector<int32_t>>();
  for (size_t step = 0; step < expected.size() && margins[step] > kGreedyMarginFloor; ++step) {
    const ForwardChunk chunk{&sequence, next};
    const int32_t token = f.model->forward_greedy({&chunk, 1})[0];  // picked on the GPU
    ASSERT_EQ(token, expected[step]) << "step " << step;
    next = {token};
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaFixture, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace dsv3
