// Serving throughput and latency: `n_clients` clients keep one request each in flight against an
// Engine until `n_requests` have finished; each request has a random prompt of `prompt_tokens` and
// generates exactly `output_tokens`. Reports tokens per second over the wall time, and percentiles
// of time to first token and of inter-token latency.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv3/engine/engine.h"

namespace dsv3 {

struct ServingBenchParams {
  int64_t n_clients = 8;
  int64_t n_requests = 16;
  int64_t prompt_tokens = 128;
  int64_t output_tokens = 64;
  float temperature = 0.0f;  // 0: greedy; else a draw, as OpenAI's default (1)
  float top_p = 1.0f;
  int64_t top_k = 0;
};

struct ServingBenchResult {
  double wall_s = 0.0;
  double output_tokens_per_s = 0.0;
  double total_tokens_per_s = 0.0;  // prompt and output
  double ttft_p50_s = 0.0, ttft_p90_s = 0.0, ttft_p99_s = 0.0;
  double itl_p50_s = 0.0, itl_p90_s = 0.0, itl_p99_s = 0.0;
};

ServingBenchResult run_serving_bench(Engine& engine, const ServingBenchParams& params);

}  // namespace dsv3
