// The CPU engine against transformers (tests/fixtures/models/*, made by
// tools/reference/make_fixtures.py): logits of every position within 1e-3 relative L2 of
// transformers' float32 logits; greedy tokens identical up to the first step whose reference top-2
// margin is under 0.02; and decoding token by token through the latent cache equals one prefill.
#include <gtest/gtest.h>

#include "dsv3/util/argmax.h"
#include "fidelity/fixture_cases.h"

namespace dsv3 {
namespace {

constexpr double kLogitsTolerance = 1e-3;
constexpr float kGreedyMarginFloor = 0.02f;

class TransformersFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TransformersFixture, LogitsOfEveryPositionMatch) {
  Fixture f = load_fixture(GetParam(), "cpu");
  const std::vector<int32_t> ids = f.expected.at("ids").get<std::vector<int32_t>>();
  const std::vector<float> reference = read_floats(f.dir / f.expected.at("logits_file").get<std::string>());
  CacheSequence sequence;
  const ForwardChunk chunk{&sequence, ids};
  const std::vector<float> logits = f.model->forward({&chunk, 1}, true);
  ASSERT_EQ(logits.size(), reference.size());
  EXPECT_LE(relative_l2(logits, reference), kLogitsTolerance);
}

TEST_P(TransformersFixture, GreedyTokensMatchWhileTheReferenceIsDecisive) {
  Fixture f = load_fixture(GetParam(), "cpu");
  const auto& greedy = f.expected.at("greedy");
  const std::vector<int32_t> expected = greedy.at("tokens").get<std::vector<int32_t>>();
  const std::vector<float> margins = greedy.at("top2_margins").get<std::vector<float>>();
  CacheSequence sequence;
  std::vector<int32_t> next = greedy.at("prompt").get<std::vector<int32_t>>();
  for (size_t step = 0; step < expected.size() && margins[step] >= kGreedyMarginFloor; ++step) {
    const ForwardChunk chunk{&sequence, next};
    const std::vector<float> logits = f.model->forward({&chunk, 1}, false);
    const int32_t token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ASSERT_EQ(token, expected[step]) << "step " << step;
    next = {token};
  }
}

TEST_P(TransformersFixture, GreedyStepsPickTheArgmaxOfTheLogits) {
  Fixture f = load_fixture(GetParam(), "cpu");
  CacheSequence by_logits, by_backend;
  std::vector<int32_t> next = f.expected.at("greedy").at("prompt").get<std::vector<int32_t>>();
  for (int step = 0; step < 6; ++step) {
    const ForwardChunk a{&by_logits, next}, b{&by_backend, next};
    const std::vector<float> logits = f.model->forward({&a, 1}, false);
    const std::vector<int32_t> picked = f.model->forward_greedy({&b, 1});
    ASSERT_EQ(picked.size(), 1u);
    ASSERT_EQ(picked[0], int32_t(argmax(logits))) << "step " << step;
    next = {picked[0]};
  }
}

TEST_P(TransformersFixture, TokenByTokenDecodeEqualsPrefill) {
  Fixture f = load_fixture(GetParam(), "cpu");
  const std::vector<int32_t> ids = f.expected.at("ids").get<std::vector<int32_t>>();
  CacheSequence prefill_sequence, decode_sequence;
  const ForwardChunk chunk{&prefill_sequence, ids};
  const std::vector<float> prefill = f.model->forward({&chunk, 1}, true);
  std::vector<float> decoded;
  for (const int32_t& id : ids) {
    const ForwardChunk step{&decode_sequence, {&id, 1}};
    const std::vector<float> logits = f.model->forward({&step, 1}, false);
    decoded.insert(decoded.end(), logits.begin(), logits.end());
  }
  EXPECT_LE(relative_l2(decoded, prefill), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TransformersFixture, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });

TEST(TransformersFixtures, EveryFamilyCaseIsPresent) {
  // Each architecture variant the fixtures script writes.
  EXPECT_EQ(fixture_names(), (std::vector<std::string>{"v2_group", "v2_lite", "v2_long", "v3_bf16",
                                                     "v3_deepseek_heads", "v3_fp8", "v3_fp8_long",
                                                     "v3_plain_rope"}));
}

}  // namespace
}  // namespace dsv3
