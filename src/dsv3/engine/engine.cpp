#include "dsv3/engine/engine.h"

#include <algorithm>
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
  bool done = false;              // finished: its rows in launched steps are dropped
  int64_t prompt_launched = 0;    // prompt tokens in launched steps, prompt_done and those in flight
  int64_t launched_steps = 0;     // launched steps not collected that have a row of it
  int64_t picks_in_flight = 0;    // tokens those steps pick for it
  int64_t pick_row = 0;           // its row in the last step launched, where that one picks for it

  bool prefilling() const { return prompt_done < int64_t(request.prompt.size()); }
  // The number of the next token a step launched now picks for it.
  size_t next_token_number() const { return generated.size() + size_t(picks_in_flight); }
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

// A launched step: a chunk a row, each of its owner.
struct Engine::Launched {
  std::vector<ForwardChunk> chunks;
  std::vector<Active*> owners;
  std::vector<int64_t> prompt_tokens;  // a row's prompt tokens (0 for a decode row)
  std::vector<bool> takes_token;       // the row picks its owner's next token
  std::vector<bool> on_host;           // ... sampled on the host from the logits
  std::vector<TokenDraw> draws;
  std::vector<int32_t> tokens;         // decode rows' tokens (chunks point into it)
  bool with_logits = false;
  bool launched = false;
  std::string error;  // why the launch failed
  // The next step may take this one's tokens on the device: none comes from the host (a sample,
  // a forced token) and the logits stay there.
  bool feeds_next() const {
    if (with_logits) return false;
    for (size_t c = 0; c < owners.size(); ++c)
      if (takes_token[c] && owners[c]->next_token_number() <= owners[c]->request.forced_tokens.size()) return false;
    return true;
  }
};

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
  drop_in_flight();
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

void Engine::drop_in_flight() {
  if (in_flight_ && in_flight_->launched) {
    try {
      model_->collect_picked();  // keeps the model's steps in order
    } catch (const std::exception& e) {
      log_warn("forward failed: ", e.what());
    }
    release_rows(*in_flight_);
  }
  in_flight_.reset();
  std::erase_if(retired_, [](const std::unique_ptr<Active>& a) { return a->launched_steps == 0; });
}

void Engine::fail_all_running(const std::string& message) {
  drop_in_flight();
  std::vector<std::unique_ptr<Active>> failed;
  failed.swap(running_);
  for (auto& a : failed) {
    GenerationUpdate update;
    update.finish = FinishReason::Error;
    update.error = message;
    finish(std::move(a), update);
  }
}

void Engine::collect_in_flight() {
  if (!in_flight_) return;
  collect(*in_flight_);
  in_flight_.reset();
}

void Engine::step() {
  // A step whose tokens must come to the host before the next can go on from them is collected
  // first; otherwise the next step is launched before it is.
  if (in_flight_ && !in_flight_->feeds_next()) collect_in_flight();
  take_in();
  auto next = std::make_unique<Launched>(compose());
  if (!next->owners.empty()) launch(*next);
  collect_in_flight();
  if (!next->owners.empty()) in_flight_ = std::move(next);
  // Where every request of the new step finished meanwhile, nothing would come back for it.
  if (in_flight_ && std::all_of(in_flight_->owners.begin(), in_flight_->owners.end(), [](Active* a) { return a->done; }))
    collect_in_flight();
  std::lock_guard lock(mutex_);
  stats_.running = int64_t(running_.size());
  stats_.queued = int64_t(queued_.size());
  stats_.kv_pages_used = model_->pages().n_in_use();
}

void Engine::take_in() {
  PageAllocator& pages = model_->pages();
  std::vector<std::unique_ptr<Active>> cancelled;
  {
    std::lock_guard lock(mutex_);
    auto take_if_cancelled = [&](std::unique_ptr<Active>& a) {
      if (!cancelled_.count(a->id)) return false;
      cancelled.push_back(std::move(a));
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
      a.prompt_done = a.prompt_launched = cached;
      a.usage.cached_tokens = cached;
      a.admitted = true;
      running_.push_back(std::move(queued_.front()));
      queued_.pop_front();
    }
  }
  for (auto& a : cancelled) {
    GenerationUpdate update;
    update.finish = FinishReason::Cancelled;
    finish(std::move(a), update);
  }
}

Engine::Launched Engine::compose() {
  // One chunk a running request: its next token when decoding, part of its prompt when prefilling.
  // A decode row's token is the last one generated, or, while the step in flight picks it, fed to
  // the device from there; a request that step surely ends (max_tokens) gets no row.
  Launched step;
  step.tokens.reserve(running_.size());  // chunks point into it
  for (auto& a : running_) {
    if (a->done || a->prompt_launched < int64_t(a->request.prompt.size())) continue;
    if (a->picks_in_flight > 0) {
      if (int64_t(a->next_token_number()) >= a->request.stop.max_tokens) continue;
      step.tokens.push_back(fed_token(a->pick_row));
    } else {
      step.tokens.push_back(a->generated.back());
    }
    step.chunks.push_back({&a->sequence, {&step.tokens.back(), 1}});
    step.owners.push_back(a.get());
    step.prompt_tokens.push_back(0);
  }
  int64_t prefill_budget = options_.max_step_tokens;
  for (auto& a : running_) {
    const int64_t prompt = int64_t(a->request.prompt.size());
    if (a->done || a->prompt_launched >= prompt || prefill_budget <= 0) continue;
    const int64_t n = std::min<int64_t>(prefill_budget, prompt - a->prompt_launched);
    prefill_budget -= n;
    step.chunks.push_back({&a->sequence, std::span<const int32_t>(a->request.prompt).subspan(size_t(a->prompt_launched), size_t(n))});
    step.owners.push_back(a.get());
    step.prompt_tokens.push_back(n);
  }

  // The backend picks every token it can where the logits are (greedy, or a draw cut by top_k, min_p
  // and top_p: backend_draw): the host's download and scan of a row of logits cost more than a layer
  // of the model at batch 1. Only a step with a token to sample on the host (penalties) or logprobs
  // to give brings the logits back too.
  for (size_t c = 0; c < step.owners.size(); ++c) {
    const Active& a = *step.owners[c];
    const bool takes_token = a.prompt_launched + step.prompt_tokens[c] >= int64_t(a.request.prompt.size());
    const size_t number = a.next_token_number();
    const bool forced = number < a.request.forced_tokens.size();
    const std::optional<TokenDraw> draw = backend_draw(a.request.sampling, draw_key(a.draw_seed, number));
    step.takes_token.push_back(takes_token);
    step.on_host.push_back(takes_token && !forced && !draw);
    step.with_logits = step.with_logits || step.on_host.back() || (takes_token && a.request.top_logprobs >= 0);
    step.draws.push_back(draw.value_or(TokenDraw::greedy()));
  }
  return step;
}

void Engine::launch(Launched& step) {
  try {
    model_->launch_picking(step.chunks, step.draws, step.with_logits);
  } catch (const std::exception& e) {
    step.error = e.what();
    log_warn("forward failed: ", step.error);
    return;
  }
  step.launched = true;
  for (size_t c = 0; c < step.owners.size(); ++c) {
    Active& a = *step.owners[c];
    ++a.launched_steps;
    a.prompt_launched += step.prompt_tokens[c];
    if (step.takes_token[c]) ++a.picks_in_flight, a.pick_row = int64_t(c);
  }
}

void Engine::release_rows(const Launched& step) {
  for (size_t c = 0; c < step.owners.size(); ++c) {
    --step.owners[c]->launched_steps;
    if (step.takes_token[c]) --step.owners[c]->picks_in_flight;
  }
}

void Engine::collect(Launched& step) {
  PageAllocator& pages = model_->pages();
  DeepseekModel::Picked picked;
  std::string error = step.error;
  if (step.launched) {
    try {
      picked = model_->collect_picked();
    } catch (const std::exception& e) {
      error = e.what();
      log_warn("forward failed: ", error);
    }
  }

  if (step.launched) release_rows(step);

  std::vector<std::pair<Active*, GenerationUpdate>> updates;
  for (size_t c = 0; c < step.owners.size(); ++c) {
    Active& a = *step.owners[c];
    if (a.done) continue;  // finished after this step was launched: its row is dropped
    GenerationUpdate update;
    if (!error.empty()) {
      update.finish = FinishReason::Error;
      update.error = error;
      updates.push_back({&a, update});
      continue;
    }
    a.prompt_done += step.prompt_tokens[c];
    if (a.prefilling()) continue;  // more prompt to go: these logits are not needed
    if (step.prompt_tokens[c] > 0) pages.publish(a.sequence, a.request.prompt);  // share the prompt at once

    const std::span<const float> row = step.with_logits ? picked.logits(c) : std::span<const float>();
    int32_t token;
    const size_t forced = a.generated.size();
    if (forced < a.request.forced_tokens.size()) {
      token = a.request.forced_tokens[forced];
    } else if (!step.on_host[c]) {
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
        finish(std::move(r), update);
        break;
      }
    }
  }
  std::erase(running_, nullptr);
  std::erase_if(retired_, [](const std::unique_ptr<Active>& a) { return a->launched_steps == 0; });
}

void Engine::finish(std::unique_ptr<Active> a, GenerationUpdate update) {
  PageAllocator& pages = model_->pages();
  a->done = true;
  // A launched step may still write this request's pages: its work is queued ahead of whatever
  // later takes them.
  if (a->admitted) {
    if (update.finish != FinishReason::Error) pages.publish(a->sequence, a->cached_tokens());
    pages.release(a->sequence);
  }
  update.usage = a->usage;
  // Statistics first, so that a client told its request finished sees its pages freed.
  {
    std::lock_guard lock(mutex_);
    ++stats_.requests_finished;
    stats_.prompt_tokens += uint64_t(a->usage.prompt_tokens);
    stats_.generated_tokens += uint64_t(a->usage.completion_tokens);
    stats_.cached_prompt_tokens += uint64_t(a->usage.cached_tokens);
    stats_.kv_pages_used = pages.n_in_use();
  }
  a->on_update(update);
  if (a->launched_steps > 0) retired_.push_back(std::move(a));
}

}  // namespace dsv3
