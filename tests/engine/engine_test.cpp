// The engine serves many requests at once and each gets what it would get alone: continuous
// batching, chunked prefill, prefix reuse, queueing on a full cache and cancellation.
#include "dsv3/engine/engine.h"

#include <gtest/gtest.h>

#include <future>
#include <numeric>

#include "dsv3/util/error.h"
#include "model/model_test_util.h"

namespace dsv3 {
namespace {

std::shared_ptr<const Tokenizer> real_tokenizer() {
  static auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::load(DSV3_TOKENIZER_DIR));
  return tokenizer;
}

std::unique_ptr<Engine> make_engine(int64_t cache_tokens = 2048, EngineOptions options = {}) {
  return std::make_unique<Engine>(testing::make_random_model(testing::tiny_v3_config(), PresetDtype::Bf16, cache_tokens),
                                  real_tokenizer(), options);
}

// A submitted request's updates, collected until it finishes.
struct Outcome {
  std::vector<int32_t> tokens;
  size_t logprobs = 0;  // tokens that came with their logprob
  std::string text;
  GenerationUpdate last;
};

std::future<Outcome> submit(Engine& engine, GenerationRequest request, uint64_t* id = nullptr) {
  auto promise = std::make_shared<std::promise<Outcome>>();
  auto outcome = std::make_shared<Outcome>();
  const uint64_t submitted = engine.submit(std::move(request), [promise, outcome](const GenerationUpdate& u) {
    outcome->tokens.insert(outcome->tokens.end(), u.tokens.begin(), u.tokens.end());
    outcome->logprobs += u.logprobs.size();
    outcome->text += u.text;
    if (u.finish) {
      outcome->last = u;
      promise->set_value(*outcome);
    }
  });
  if (id) *id = submitted;
  return promise->get_future();
}

GenerationRequest greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.stop.max_tokens = max_tokens;
  r.stop.ignore_eos = true;
  return r;
}

std::vector<int32_t> prompt_of(int32_t first, int64_t n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), first);
  for (int32_t& t : p) t %= 290;
  return p;
}

TEST(Engine, GreedyOutputIsTheModelsArgmaxChain) {
  auto model = testing::make_random_model(testing::tiny_v3_config(), PresetDtype::Bf16);
  std::vector<int32_t> expected;
  CacheSequence sequence;
  std::vector<int32_t> next = prompt_of(10, 20);
  for (int i = 0; i < 6; ++i) {
    const ForwardChunk chunk{&sequence, next};
    const std::vector<float> logits = model->forward({&chunk, 1}, false);
    next = {int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin())};
    expected.push_back(next[0]);
  }
  auto engine = make_engine();
  const Outcome out = submit(*engine, greedy(prompt_of(10, 20), 6)).get();
  EXPECT_EQ(out.tokens, expected);
  EXPECT_EQ(*out.last.finish, FinishReason::Length);
  EXPECT_EQ(out.last.usage.prompt_tokens, 20);
  EXPECT_EQ(out.last.usage.completion_tokens, 6);
  EXPECT_EQ(out.text, real_tokenizer()->decode(expected));
}

TEST(Engine, ConcurrentRequestsGetWhatTheyGetAlone) {
  EngineOptions small_steps;
  small_steps.max_step_tokens = 16;  // prompts of 40 tokens take several chunked steps
  auto engine = make_engine(4096, small_steps);
  std::vector<std::vector<int32_t>> alone;
  for (int r = 0; r < 6; ++r) alone.push_back(submit(*engine, greedy(prompt_of(r * 7, 40), 5)).get().tokens);
  std::vector<std::future<Outcome>> together;
  for (int r = 0; r < 6; ++r) together.push_back(submit(*engine, greedy(prompt_of(r * 7, 40), 5)));
  for (int r = 0; r < 6; ++r) EXPECT_EQ(together[size_t(r)].get().tokens, alone[size_t(r)]) << "request " << r;
}

// Steps of greedy requests alone take their tokens from the backend (forward_greedy); a step with
// one that needs logits (sampling, a penalty, logprobs) takes every token from the logits. Either
// way a greedy request gets the same tokens.
TEST(Engine, GreedyRequestsGetTheSameTokensBesideOnesThatNeedLogits) {
  auto engine = make_engine();
  const std::vector<int32_t> alone = submit(*engine, greedy(prompt_of(20, 12), 6)).get().tokens;
  GenerationRequest sampled = greedy(prompt_of(40, 9), 6), with_logprobs = greedy(prompt_of(20, 12), 6),
                    penalised = greedy(prompt_of(60, 7), 6);
  sampled.sampling.temperature = 1.0f, sampled.sampling.seed = 7;
  with_logprobs.top_logprobs = 2;
  penalised.sampling.repetition_penalty = 1.3f;
  for (GenerationRequest* other : {&sampled, &with_logprobs, &penalised}) {
    auto beside = submit(*engine, greedy(prompt_of(20, 12), 6));
    const Outcome needing_logits = submit(*engine, *other).get();
    EXPECT_EQ(beside.get().tokens, alone);
    EXPECT_EQ(needing_logits.tokens.size(), 6u);
    EXPECT_EQ(needing_logits.logprobs, other == &with_logprobs ? 6u : 0u);
  }
  EXPECT_EQ(submit(*engine, with_logprobs).get().tokens, alone);  // logprobs do not change the choice
}

TEST(Engine, SeededSamplingRepeats) {
  auto engine = make_engine();
  GenerationRequest r = greedy(prompt_of(3, 10), 8);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 1234;
  const auto first = submit(*engine, r).get().tokens;
  EXPECT_EQ(submit(*engine, r).get().tokens, first);
  r.sampling.seed = 4321;
  EXPECT_NE(submit(*engine, r).get().tokens, first);
}

TEST(Engine, SharedPrefixIsServedFromTheCache) {
  auto engine = make_engine();
  const auto prompt = prompt_of(0, 150);
  const Outcome first = submit(*engine, greedy(prompt, 4)).get();
  EXPECT_EQ(first.last.usage.cached_tokens, 0);
  const Outcome second = submit(*engine, greedy(prompt, 4)).get();
  EXPECT_EQ(second.last.usage.cached_tokens, 128);  // two whole pages of 64
  EXPECT_EQ(second.tokens, first.tokens);
}

TEST(Engine, StopTokenEndsGenerationWithoutItsText) {
  auto engine = make_engine();
  const auto free_run = submit(*engine, greedy(prompt_of(5, 12), 6)).get().tokens;
  GenerationRequest r = greedy(prompt_of(5, 12), 6);
  r.stop.stop_token_ids = {free_run[2]};
  const Outcome out = submit(*engine, r).get();
  EXPECT_EQ(out.tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + 3));
  EXPECT_EQ(*out.last.finish, FinishReason::Stop);
  EXPECT_EQ(out.text, real_tokenizer()->decode(std::vector<int32_t>(free_run.begin(), free_run.begin() + 2)));
}

TEST(Engine, ForcedTokensAreEmittedBeforeSamplingResumes) {
  auto engine = make_engine();
  GenerationRequest r = greedy(prompt_of(5, 12), 4);
  r.forced_tokens = {100, 101};
  const Outcome out = submit(*engine, r).get();
  ASSERT_EQ(out.tokens.size(), 4u);
  EXPECT_EQ(out.tokens[0], 100);
  EXPECT_EQ(out.tokens[1], 101);
}

TEST(Engine, RequestsWaitWhenTheCacheIsFullAndAllFinish) {
  auto engine = make_engine(/*cache_tokens=*/256);
  std::vector<std::future<Outcome>> outs;
  for (int r = 0; r < 4; ++r) outs.push_back(submit(*engine, greedy(prompt_of(r, 150), 30)));  // 3 pages each
  for (auto& o : outs) EXPECT_EQ(*o.get().last.finish, FinishReason::Length);
  EXPECT_EQ(engine->stats().kv_pages_used, 0);
}

TEST(Engine, CancelledRequestFinishesAndFreesItsPages) {
  auto engine = make_engine();
  uint64_t id = 0;
  auto out = submit(*engine, greedy(prompt_of(0, 30), 1000), &id);
  engine->cancel(id);
  EXPECT_EQ(*out.get().last.finish, FinishReason::Cancelled);
  EXPECT_EQ(engine->stats().kv_pages_used, 0);
}

TEST(Engine, InvalidRequestsAreRejectedWithAReason) {
  auto engine = make_engine(/*cache_tokens=*/256);
  EXPECT_THROW(engine->submit(greedy({}, 4), [](const GenerationUpdate&) {}), Error);
  EXPECT_THROW(engine->submit(greedy({1, 100000}, 4), [](const GenerationUpdate&) {}), Error);
  EXPECT_THROW(engine->submit(greedy(prompt_of(0, 200), 100), [](const GenerationUpdate&) {}), Error);
  GenerationRequest bad_temperature = greedy({1, 2}, 4);
  bad_temperature.sampling.temperature = -1.0f;
  EXPECT_THROW(engine->submit(bad_temperature, [](const GenerationUpdate&) {}), Error);
}

}  // namespace
}  // namespace dsv3
