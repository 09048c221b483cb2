// The absorbed decode path over the latent cache computes the same function as the expanded
// prefill path (REFERENCE.md, MLA): token-by-token decoding, chunked prefill and batching all give
// the logits of one full prefill.
#include <gtest/gtest.h>

#include "dsv3/util/error.h"
#include "model/model_test_util.h"

namespace dsv3 {
namespace {

using testing::make_random_model;
using testing::relative_l2;

const std::vector<int32_t> kPrompt = {5, 17, 42, 99, 3, 250, 77, 8, 120, 64, 33, 201, 7, 150};

std::vector<float> full_prefill(DeepseekModel& model, const std::vector<int32_t>& ids) {
  CacheSequence sequence;
  const ForwardChunk chunk{&sequence, ids};
  std::vector<float> logits = model.forward({&chunk, 1}, true);
  model.release(sequence);
  return logits;
}

std::vector<float> token_by_token(DeepseekModel& model, const std::vector<int32_t>& ids) {
  CacheSequence sequence;
  std::vector<float> logits;
  for (int32_t id : ids) {
    const ForwardChunk chunk{&sequence, {&id, 1}};
    const std::vector<float> step = model.forward({&chunk, 1}, false);
    logits.insert(logits.end(), step.begin(), step.end());
  }
  model.release(sequence);
  return logits;
}

class DecodeMatchesPrefill : public ::testing::TestWithParam<std::tuple<bool, PresetDtype>> {};

TEST_P(DecodeMatchesPrefill, TokenByTokenDecodeEqualsFullPrefill) {
  const auto [v3, dtype] = GetParam();
  auto model = make_random_model(v3 ? testing::tiny_v3_config() : testing::tiny_v2_config(), dtype);
  EXPECT_LT(relative_l2(token_by_token(*model, kPrompt), full_prefill(*model, kPrompt)), 1e-5);
}

TEST_P(DecodeMatchesPrefill, ChunkedPrefillEqualsFullPrefill) {
  const auto [v3, dtype] = GetParam();
  auto model = make_random_model(v3 ? testing::tiny_v3_config() : testing::tiny_v2_config(), dtype);
  CacheSequence sequence;
  const std::span<const int32_t> ids(kPrompt);
  const ForwardChunk first{&sequence, ids.subspan(0, 5)};
  std::vector<float> logits = model->forward({&first, 1}, true);
  const ForwardChunk second{&sequence, ids.subspan(5)};
  const std::vector<float> rest = model->forward({&second, 1}, true);
  logits.insert(logits.end(), rest.begin(), rest.end());
  EXPECT_LT(relative_l2(logits, full_prefill(*model, kPrompt)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Families, DecodeMatchesPrefill,
                         ::testing::Combine(::testing::Bool(), ::testing::Values(PresetDtype::Bf16, PresetDtype::Fp8)));

TEST(Batching, SequencesInOneBatchMatchSequencesAlone) {
  auto model = make_random_model(testing::tiny_v3_config(), PresetDtype::Bf16);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6}, b = {200, 100, 50};
  const std::vector<float> alone_a = full_prefill(*model, a), alone_b = full_prefill(*model, b);

  // Prefill a and b together, then decode one more token of each in one batch.
  CacheSequence sa, sb;
  const std::vector<ForwardChunk> prefill = {{&sa, a}, {&sb, b}};
  const std::vector<float> together = model->forward(prefill, true);
  const int64_t vocab = model->config().vocab_size;
  EXPECT_LT(relative_l2({together.begin(), together.begin() + 6 * vocab}, alone_a), 1e-5);
  EXPECT_LT(relative_l2({together.begin() + 6 * vocab, together.end()}, alone_b), 1e-5);

  const int32_t next_a = 9, next_b = 8;
  const std::vector<ForwardChunk> decode = {{&sa, {&next_a, 1}}, {&sb, {&next_b, 1}}};
  const std::vector<float> step = model->forward(decode, false);
  std::vector<int32_t> a_longer = a, b_longer = b;
  a_longer.push_back(next_a);
  b_longer.push_back(next_b);
  const std::vector<float> ref_a = full_prefill(*model, a_longer), ref_b = full_prefill(*model, b_longer);
  EXPECT_LT(relative_l2({step.begin(), step.begin() + vocab}, {ref_a.end() - vocab, ref_a.end()}), 1e-5);
  EXPECT_LT(relative_l2({step.begin() + vocab, step.end()}, {ref_b.end() - vocab, ref_b.end()}), 1e-5);
}

TEST(Cache, FullCacheIsAClearErrorAndFreedPagesAreReused) {
  auto model = make_random_model(testing::tiny_v3_config(), PresetDtype::Bf16, /*cache_tokens=*/64);
  std::vector<int32_t> long_prompt(65, 3);
  CacheSequence sequence;
  const ForwardChunk chunk{&sequence, long_prompt};
  EXPECT_THROW(model->forward({&chunk, 1}, false), Error);
  model->release(sequence);
  long_prompt.resize(64);
  const ForwardChunk fits{&sequence, long_prompt};
  EXPECT_NO_THROW(model->forward({&fits, 1}, false));
}

}  // namespace
}  // namespace dsv3
