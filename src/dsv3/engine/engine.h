// The generation engine: one thread that runs the model over all active requests at every step
// (continuous batching). New requests are prefilled in chunks within a token budget, so running
// decodes keep flowing; requests join and leave at any step. The latent cache is paged with
// prefix reuse; when it is full, new requests wait in the queue. Where the backend picks every
// token of a step, the next step is launched before that one is collected, on the tokens it picked
// (fed_token): the host's work on a step's results overlaps the device's work on the next.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "dsv3/engine/request.h"
#include "dsv3/model/deepseek_model.h"
#include "dsv3/tokenizer/tokenizer.h"

namespace dsv3 {

struct EngineOptions {
  int64_t max_step_tokens = 256;  // prompt tokens prefilled in one step, across requests
  int64_t max_running = 256;      // requests decoding at once
};

struct EngineStats {
  int64_t running = 0;
  int64_t queued = 0;
  int64_t kv_pages_used = 0;
  int64_t kv_pages_total = 0;
  uint64_t requests_finished = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t cached_prompt_tokens = 0;
};

class Engine {
 public:
  Engine(std::unique_ptr<DeepseekModel> model, std::shared_ptr<const Tokenizer> tokenizer, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Checks the request (a non-empty prompt of ids in the vocabulary that, with max_tokens, fits the
  // context and the cache; valid sampling values) and queues it; throws dsv3::Error saying what is
  // wrong. `on_update` is called from the engine thread; it must not block for long.
  uint64_t submit(GenerationRequest request, UpdateCallback on_update);
  // Stops a request at the next step and frees its pages; it finishes with FinishReason::Cancelled.
  void cancel(uint64_t id);
  // Cancels everything queued or running and stops the engine thread.
  void shutdown();

  EngineStats stats() const;
  const ModelConfig& model_config() const { return model_->config(); }
  // The longest prompt plus completion a request may have: the model's positions or the cache.
  int64_t context_tokens() const;
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  struct Active;
  struct Launched;
  void loop();
  void step();
  // Cancellations, then queued requests while they fit.
  void take_in();
  // The next step over the running requests: a chunk each, fed the tokens in_flight_ picks where it
  // is still running.
  Launched compose();
  void launch(Launched& step);
  // Waits for a launched step, hands its tokens to their requests and retires the finished.
  void collect(Launched& step);
  // collect(in_flight_), where there is one, and forgets it.
  void collect_in_flight();
  // The step's rows no longer hold their requests (launched_steps, picks_in_flight).
  void release_rows(const Launched& step);
  // Frees a request's pages and tells it it is done; it is kept while a launched step has a row of it.
  void finish(std::unique_ptr<Active> active, GenerationUpdate update);
  // Waits for the step in flight, if any, and drops its results.
  void drop_in_flight();
  void fail_all_running(const std::string& message);

  std::unique_ptr<DeepseekModel> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  EngineOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Active>> queued_;
  std::vector<std::unique_ptr<Active>> running_;
  std::unique_ptr<Launched> in_flight_;             // launched and not collected
  std::vector<std::unique_ptr<Active>> retired_;  // finished, with rows in a launched step
  std::unordered_map<uint64_t, bool> cancelled_;
  uint64_t next_id_ = 1;
  EngineStats stats_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace dsv3
