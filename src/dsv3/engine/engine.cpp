#include "dsv3/engine/engine.h"

#include <chrono>
#include <random>

#include "dsv3/engine/stop_matcher.h"
#include "dsv3/tokenizer/incremental_decoder.h"
#include "dsv3/util/error.h"
#include "dsv3/util/log.h"

namespace dsv3 {
namespace {

using Clock = std::chrono::steady_clock;

// The text a generated token adds. A model's vocabulary can be larger than its tokenizer's
// (DeepSeek-V3: 129280 rows, 128815 tokens); an id without a token adds no text, as in
// transformers' decode, rather than failing the request.
std::string decode_generated(IncrementalDecoder& decoder, int32_t token) {
  try {
    return decoder.push(token);
  } catch (const Error&) {
    return {};
  }
}

}  // namespace

// A request the engine has taken: its cache, its progress and its text state.
struct Engine::Active {
  Active(uint64_t id_, GenerationRequest request_, UpdateCallback on_update_, const Tokenizer& tokenizer)
      : id(id_),
        request(std::move(request_)),
        on_update(std::move(on_update_)),
        decoder(tokenizer),
        stop(request.stop.stop),
        rng(request.sampling.seed ? *request.sampling.seed : std::random_device{}()),
        draw_seed(request.sampling.seed ? *request.sampling.seed : rng()) {}

  uint64_t id;
  GenerationRequest request;
  UpdateCallback on_update;
  CacheSequence sequence;
  int64_t prompt_done = 0;        // prompt tokens in the cache, cached prefix included
  std::vector<int32_t> generated;  // the last one is not in the cache yet
  TokenHistory history;
  IncrementalDecoder decoder;
  StopMatcher stop;
  std::mt19937_64 rng;  // for draws on the host
  uint64_t draw_seed;   // for those a backend makes (draw_key)
  Usage usage;
  Clock::time_point submitted = Clock::now();
  bool admitted = false;

  bool prefilling() const { return prompt_done < int64_t(request.prompt.size()); }
  // Every token whose cache rows exist: the prompt, then all generated tokens but the last.
  std::vector<int32_t> cached_tokens() const {
    std::vector<int32_t> all = request.prompt;
    all.insert(all.end(), generated.begin(), generated.end());
    all.resize(size_t(sequence.n_tokens));
    return all;
  }
};

Engine::Engine(std::unique_ptr<DeepseekModel> model, std::shared_ptr<const Tokenizer> tokenizer, EngineOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(options) {
  stats_.kv_pages_total = model_->pages().n_pages();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { shutdown(); }

uint64_t Engine::submit(GenerationRequest request, UpdateCallback on_update) {
  const ModelConfig& config = model_->config();
  if (request.prompt.empty()) fail("the prompt is empty");
  for (int32_t id : request.prompt)
    if (id < 0 || id >= config.vocab_size) fail("prompt token id ", id, " is outside the vocabulary (", config.vocab_size, ")");
  if (request.stop.max_tokens < 1) fail("max_tokens must be at least 1, got ", request.stop.max_tokens);
  validate(request.sampling);
  const int64_t total = int64_t(request.prompt.size()) + request.stop.max_tokens;
  const int64_t context = context_tokens();
  if (total > context)
    fail("the prompt (", request.prompt.size(), " tokens) plus max_tokens (", request.stop.max_tokens,
         ") is longer than the context of ", context, " tokens");

  std::lock_guard lock(mutex_);
  if (stopping_) fail("the engine is shutting down");
  const uint64_t id = next_id_++;
  auto active = std::make_unique<Active>(id, std::move(request), std::move(on_update), *tokenizer_);
  active->history.add_prompt(active->request.prompt, config.vocab_size);
  active->usage.prompt_tokens = int64_t(active->request.prompt.size());
  queued_.push_back(std::move(active));
  ++stats_.queued;
  wake_.notify_one();
  return id;
}

void Engine::cancel(uint64_t id) {
  std::lock_guard lock(mutex_);
  cancelled_[id] = true;
  wake_.notify_one();
}

void Engine::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

int64_t Engine::context_tokens() const {
  return std::min(model_->config().max_position_embeddings, model_->pages().n_pages() * model_->pages().page_size());
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queued_.empty() || !running_.empty(); });
      if (stopping_) break;
    }
    try {
      step();
    } catch (const std::exception& e) {
      // A bug must not take the server down: report it on the requests in flight and carry on.
      log_warn("engine step failed: ", e.what());
      fail_all_running(e.what());
    }
  }
  // Shutting down: everything still here is cancelled.
  std::vector<std::unique_ptr<Active>> left;
  {
    std::lock_guard lock(mutex_);
    for (auto& a : queued_) left.push_back(std::move(a));
    for (auto& a : running_) left.push_back(std::move(a));
    queued_.clear();
    running_.clear();
  }
  for (auto& a : left) {
    model_->release(a->sequence);
    GenerationUpdate update;
    update.finish = FinishReason::Cancelled;
    update.usage = a->usage;
    a->on_update(update);
  }
}

void Engine::fail_all_running(const std::string& message) {
  std::vector<std::unique_ptr<Active>> failed;
  failed.swap(running_);
  for (auto& a : failed) {
    model_->release(a->sequence);
    GenerationUpdate update;
    update.finish = FinishReason::Error;
    update.error = message;
    update.usage = a->usage;
    a->on_update(update);
  }
}

void Engine::step() {
  PageAllocator& pages = model_->pages();
  std::vector<std::pair<std::unique_ptr<Active>, GenerationUpdate>> finished;

  // Take in cancellations and new requests (those whose prompt and max_tokens fit the cache now).
  {
    std::lock_guard lock(mutex_);
    auto take_if_cancelled = [&](std::unique_ptr<Active>& a) {
      if (!cancelled_.count(a->id)) return false;
      GenerationUpdate update;
      update.finish = FinishReason::Cancelled;
      finished.push_back({std::move(a), update});
      return true;
    };
    std::erase_if(running_, take_if_cancelled);
    std::erase_if(queued_, take_if_cancelled);
    cancelled_.clear();
    while (!queued_.empty() && int64_t(running_.size()) < options_.max_running) {
      Active& a = *queued_.front();
      const int64_t cached = pages.match_prefix(a.sequence, a.request.prompt);
      try {
        pages.reserve(a.sequence, int64_t(a.request.prompt.size()) + a.request.stop.max_tokens);
      } catch (const Error&) {
        pages.release(a.sequence);  // wait for running requests to free pages
        break;
      }
      a.prompt_done = cached;
      a.usage.cached_tokens = cached;
      a.admitted = true;
      running_.push_back(std::move(queued_.front()));
      queued_.pop_front();
    }
  }

  // One chunk a running request: its next token when decoding, part of its prompt when prefilling.
  std::vector<ForwardChunk> chunks;
  std::vector<Active*> owners;
  std::vector<int64_t> chunk_prompt_tokens;
  int64_t prefill_budget = options_.max_step_tokens;
  for (auto& a : running_) {
    if (!a->prefilling()) {
      chunks.push_back({&a->sequence, {&a->generated.back(), 1}});
      owners.push_back(a.get());
      chunk_prompt_tokens.push_back(0);
    }
  }
  for (auto& a : running_) {
    if (!a->prefilling() || prefill_budget <= 0) continue;
    const int64_t n = std::min<int64_t>(prefill_budget, int64_t(a->request.prompt.size()) - a->prompt_done);
    prefill_budget -= n;
    chunks.push_back({&a->sequence, std::span<const int32_t>(a->request.prompt).subspan(size_t(a->prompt_done), size_t(n))});
    owners.push_back(a.get());
    chunk_prompt_tokens.push_back(n);
  }

  // The backend picks every token it can where the logits are (greedy, or a draw cut by top_p and
  // min_p at most: backend_draw): the host's download and scan of a row of logits cost more than a
  // layer of the model at batch 1. Only a step with a token to sample on the host (top_k, penalties)
  // or logprobs to give brings the logits back too.
  std::vector<TokenDraw> draws;
  std::vector<bool> on_host;  // sampled on the host
  bool with_logits = false;
  for (size_t c = 0; c < owners.size(); ++c) {
    const Active& a = *owners[c];
    const bool takes_token = a.prompt_done + chunk_prompt_tokens[c] >= int64_t(a.request.prompt.size());
    const bool forced = a.generated.size() < a.request.forced_tokens.size();
    const std::optional<TokenDraw> draw = backend_draw(a.request.sampling, draw_key(a.draw_seed, a.generated.size()));
    on_host.push_back(takes_token && !forced && !draw);
    with_logits = with_logits || on_host.back() || (takes_token && a.request.top_logprobs >= 0);
    draws.push_back(draw.value_or(TokenDraw::greedy()));
  }
  DeepseekModel::Picked picked;
  std::string forward_error;
  if (!chunks.empty()) {
    try {
      picked = model_->forward_picking(chunks, draws, with_logits);
    } catch (const std::exception& e) {
      forward_error = e.what();
      log_warn("forward failed: ", forward_error);
    }
  }

  std::vector<std::pair<Active*, GenerationUpdate>> updates;
  for (size_t c = 0; c < owners.size(); ++c) {
    Active& a = *owners[c];
    GenerationUpdate update;
    if (!forward_error.empty()) {
      update.finish = FinishReason::Error;
      update.error = forward_error;
      updates.push_back({&a, update});
      continue;
    }
    a.prompt_done += chunk_prompt_tokens[c];
    if (a.prefilling()) continue;  // more prompt to go: these logits are not needed
    if (chunk_prompt_tokens[c] > 0) pages.publish(a.sequence, a.request.prompt);  // share the prompt at once

    const std::span<const float> row = with_logits ? picked.logits(c) : std::span<const float>();
    int32_t token;
    const size_t forced = a.generated.size();
    if (forced < a.request.forced_tokens.size()) {
      token = a.request.forced_tokens[forced];
    } else if (!on_host[c]) {
      token = picked.tokens[c];
    } else {
      std::vector<float> penalised(row.begin(), row.end());
      apply_penalties(penalised, a.request.sampling, a.history);
      token = sample_token(penalised, a.request.sampling, a.rng);
    }
    if (a.generated.empty())
      update.time_to_first_token_s = std::chrono::duration<double>(Clock::now() - a.submitted).count();
    if (a.request.top_logprobs >= 0) {  // the step brought the logits back
      TokenLogprob lp;
      lp.token = token;
      lp.logprob = token_logprob(row, token, a.request.top_logprobs, &lp.top);
      update.logprobs.push_back(std::move(lp));
    }
    a.generated.push_back(token);
    a.history.add_output(token);
    update.tokens.push_back(token);
    a.usage.completion_tokens = int64_t(a.generated.size());

    const StopCriteria& stop = a.request.stop;
    const bool eos = !stop.ignore_eos && token == model_->config().eos_token_id;
    const bool stop_token = eos || std::find(stop.stop_token_ids.begin(), stop.stop_token_ids.end(), token) !=
                                       stop.stop_token_ids.end();
    if (stop_token) {
      update.text = a.stop.push(a.decoder.finish());
      update.finish = FinishReason::Stop;
    } else {
      update.text = a.stop.push(decode_generated(a.decoder, token));
      if (a.stop.stopped()) {
        update.finish = FinishReason::Stop;
      } else if (int64_t(a.generated.size()) >= stop.max_tokens) {
        update.text += a.stop.push(a.decoder.finish());
        update.text += a.stop.flush();
        update.finish = a.stop.stopped() ? FinishReason::Stop : FinishReason::Length;
      }
    }
    updates.push_back({&a, update});
  }

  // Deliver, and retire the finished.
  for (auto& [a, update] : updates) {
    update.usage = a->usage;
    if (!update.finish) {
      a->on_update(update);
      continue;
    }
    for (auto& r : running_) {
      if (r.get() == a) {
        finished.push_back({std::move(r), update});
        break;
      }
    }
  }
  std::erase(running_, nullptr);
  for (auto& [a, update] : finished) {
    if (a->admitted) {
      pages.publish(a->sequence, a->cached_tokens());
      pages.release(a->sequence);
    }
    update.usage = a->usage;
  }
  // Statistics first, so that a client told its request finished sees its pages freed.
  {
    std::lock_guard lock(mutex_);
    for (auto& [a, update] : finished) {
      ++stats_.requests_finished;
      stats_.prompt_tokens += uint64_t(a->usage.prompt_tokens);
      stats_.generated_tokens += uint64_t(a->usage.completion_tokens);
      stats_.cached_prompt_tokens += uint64_t(a->usage.cached_tokens);
    }
    stats_.running = int64_t(running_.size());
    stats_.queued = int64_t(queued_.size());
    stats_.kv_pages_used = pages.n_in_use();
  }
  for (auto& [a, update] : finished) a->on_update(update);
}

}  // namespace dsv3
