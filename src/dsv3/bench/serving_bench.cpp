#include "dsv3/bench/serving_bench.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>

#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, size_t(p * double(values.size() - 1) + 0.5))];
}

}  // namespace

ServingBenchResult run_serving_bench(Engine& engine, const ServingBenchParams& params) {
  if (params.n_clients < 1 || params.n_requests < 1 || params.prompt_tokens < 1 || params.output_tokens < 1)
    fail("serving benchmark: clients, requests, prompt and output tokens must be positive");
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, std::min<int32_t>(engine.tokenizer().vocab_size(),
                                                                     int32_t(engine.model_config().vocab_size)) - 1);
  std::mutex mutex;
  std::condition_variable finished_one;
  int64_t submitted = 0, finished = 0, in_flight = 0;
  std::vector<double> ttft, itl;

  // Called without the lock; the counters were taken for this request under it.
  auto submit_one = [&] {
    GenerationRequest r;
    for (int64_t i = 0; i < params.prompt_tokens; ++i) r.prompt.push_back(token(rng));
    r.sampling.temperature = params.temperature;
    r.sampling.top_p = params.top_p;
    r.sampling.top_k = params.top_k;
    r.stop.max_tokens = params.output_tokens;
    r.stop.ignore_eos = true;
    auto last = std::make_shared<Clock::time_point>();
    engine.submit(std::move(r), [&, last](const GenerationUpdate& u) {
      const auto now = Clock::now();
      std::lock_guard lock(mutex);
      if (!u.tokens.empty()) {
        if (u.time_to_first_token_s > 0.0) ttft.push_back(u.time_to_first_token_s);
        else itl.push_back(std::chrono::duration<double>(now - *last).count());
        *last = now;
      }
      if (u.finish) {
        ++finished;
        --in_flight;
        finished_one.notify_one();
      }
    });
  };

  const auto start = Clock::now();
  std::unique_lock lock(mutex);
  while (finished < params.n_requests) {
    while (in_flight < params.n_clients && submitted < params.n_requests) {
      ++submitted;
      ++in_flight;
      lock.unlock();
      submit_one();
      lock.lock();
    }
    finished_one.wait(lock);
  }
  ServingBenchResult r;
  r.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  r.output_tokens_per_s = double(params.n_requests * params.output_tokens) / r.wall_s;
  r.total_tokens_per_s = double(params.n_requests * (params.output_tokens + params.prompt_tokens)) / r.wall_s;
  r.ttft_p50_s = percentile(ttft, 0.5);
  r.ttft_p90_s = percentile(ttft, 0.9);
  r.ttft_p99_s = percentile(ttft, 0.99);
  r.itl_p50_s = percentile(itl, 0.5);
  r.itl_p90_s = percentile(itl, 0.9);
  r.itl_p99_s = percentile(itl, 0.99);
  return r;
}

}  // namespace dsv3
