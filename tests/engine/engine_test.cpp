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

// The backend picks greedy tokens, and draws cut by top_p and min_p at most, where the logits are;
// a step with a token to sample on the host (top_k, a penalty) or logprobs to give brings the logits
// back too. However its step runs, a request gets the same tokens.
TEST(Engine, RequestsGetTheSameTokensHoweverTheirStepRuns) {
  auto engine = make_engine();
  GenerationRequest plain = greedy(prompt_of(20, 12), 6), drawn = greedy(prompt_of(30, 8), 6);
  drawn.sampling.temperature = 0.8f, drawn.sampling.top_p = 0.95f, drawn.sampling.seed = 11;
  const std::vector<int32_t> plain_alone = submit(*engine, plain).get().tokens;
  const std::vector<int32_t> drawn_alone = submit(*engine, drawn).get().tokens;
  GenerationRequest top_k = greedy(prompt_of(40, 9), 6), penalised = greedy(prompt_of(60, 7), 6);
  GenerationRequest plain_logprobs = plain, drawn_logprobs = drawn;
  top_k.sampling.temperature = 1.0f, top_k.sampling.top_k = 20, top_k.sampling.seed = 7;
  penalised.sampling.repetition_penalty = 1.3f;
  plain_logprobs.top_logprobs = 2, drawn_logprobs.top_logprobs = 0;
  for (const GenerationRequest* other : {&top_k, &penalised, &plain_logprobs, &drawn_logprobs}) {
    auto beside_plain = submit(*engine, plain), beside_drawn = submit(*engine, drawn);
    const Outcome outcome = submit(*engine, *other).get();
    EXPECT_EQ(beside_plain.get().tokens, plain_alone);
    EXPECT_EQ(beside_drawn.get().tokens, drawn_alone);
    EXPECT_EQ(outcome.tokens.size(), 6u);
    EXPECT_EQ(outcome.logprobs, other->top_logprobs >= 0 ? 6u : 0u);
  }
  EXPECT_EQ(submit(*engine, plain_logprobs).get().tokens, plain_alone);
  EXPECT_EQ(submit(*engine, drawn_logprobs).get().tokens, drawn_alone);
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

// A request that ends on a stop token has a row in the step launched before its end was seen; that
// row is dropped, and the cache it wrote is what a later request sharing the text reads.
TEST(Engine, RequestsEndingWhileTheNextStepRunsLeaveTheCacheRight) {
  auto engine = make_engine();
  const std::vector<int32_t> prompt = prompt_of(7, 60);  // the first page ends after 4 generated tokens
  const auto free_run = submit(*engine, greedy(prompt, 8)).get().tokens;
  GenerationRequest stopped = greedy(prompt, 8);
  stopped.stop.stop_token_ids = {free_run[3]};
  const Outcome out = submit(*engine, stopped).get();
  EXPECT_EQ(out.tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + 4));
  EXPECT_EQ(engine->stats().kv_pages_used, 0);

  std::vector<int32_t> longer = prompt;
  longer.insert(longer.end(), free_run.begin(), free_run.begin() + 5);
  const Outcome rest = submit(*engine, greedy(longer, 3)).get();
  EXPECT_EQ(rest.last.usage.cached_tokens, 64);
  EXPECT_EQ(rest.tokens, std::vector<int32_t>(free_run.begin() + 5, free_run.end()));
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
