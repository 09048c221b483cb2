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

// Steps launched before the one ahead is collected, on the tokens that one picked (fed_token), pick
// what steps on the host's copies of those tokens pick.
TEST_P(DecodeMatchesPrefill, StepsOnFedTokensPickWhatStepsOnHostTokensPick) {
  const auto [v3, dtype] = GetParam();
  auto model = make_random_model(v3 ? testing::tiny_v3_config() : testing::tiny_v2_config(), dtype);
  const std::span<const int32_t> ids(kPrompt);
  auto prefilled = [&] {
    std::vector<CacheSequence> sequences(2);
    const std::vector<ForwardChunk> prompts = {{&sequences[0], ids.subspan(0, 9)}, {&sequences[1], ids.subspan(3)}};
    model->forward(prompts, false);
    return sequences;
  };
  const std::vector<TokenDraw> draws = {TokenDraw::greedy(), TokenDraw::greedy()};
  constexpr int kSteps = 5;

  std::vector<CacheSequence> on_host = prefilled();
  std::vector<int32_t> next = {5, 6};
  std::vector<int32_t> expected;
  for (int i = 0; i < kSteps; ++i) {
    const std::vector<ForwardChunk> chunks = {{&on_host[0], {&next[0], 1}}, {&on_host[1], {&next[1], 1}}};
    next = model->forward_greedy(chunks);
    expected.insert(expected.end(), next.begin(), next.end());
  }

  std::vector<CacheSequence> fed = prefilled();
  // The second sequence's row comes first, so that each token is fed to the row that picked it.
  const std::vector<int32_t> first = {6, 5}, fed_ids = {fed_token(0), fed_token(1)};
  std::vector<int32_t> got;
  for (int i = 0; i < kSteps; ++i) {
    const std::vector<int32_t>& tokens = i == 0 ? first : fed_ids;
    const std::vector<ForwardChunk> chunks = {{&fed[1], {&tokens[0], 1}}, {&fed[0], {&tokens[1], 1}}};
    model->launch_picking(chunks, draws, false);
    EXPECT_EQ(model->steps_in_flight(), i == 0 ? 1u : 2u);
    if (i > 0) {
      const std::vector<int32_t> picked = model->collect_picked().tokens;
      got.insert(got.end(), {picked[1], picked[0]});
    }
  }
  const std::vector<int32_t> last = model->collect_picked().tokens;
  got.insert(got.end(), {last[1], last[0]});
  EXPECT_EQ(got, expected);

  // A fed token names a row the step before picked, and only a step without logits feeds.
  const int32_t beyond = fed_token(2);
  const ForwardChunk past{&fed[0], {&beyond, 1}};
  EXPECT_THROW(model->forward_greedy({&past, 1}), Error);
  const int32_t row0 = fed_token(0), host = 7;
  const ForwardChunk with_logits{&fed[0], {&host, 1}}, after_logits{&fed[0], {&row0, 1}};
  model->forward_picking({&with_logits, 1}, {&draws[0], 1}, true);
  EXPECT_THROW(model->forward_greedy({&after_logits, 1}), Error);
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
