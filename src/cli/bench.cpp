// `dsv3 bench -m MODEL`: single-sequence decode throughput against the memory-bandwidth bound.
// Decoding one token reads every dense weight, the router, the shared and the top_k routed experts
// of each MoE layer, the lm_head and the latent cache once: bytes_per_token / measured_bandwidth
// is the fastest a token can be, and the ratio of that to the measured step time is the figure of merit.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/model_options.h"
#include "dsv3/bench/memory_bandwidth.h"
#include "dsv3/bench/decode_bytes.h"
#include "dsv3/util/error.h"
#include "dsv3/util/thread_pool.h"

namespace dsv3::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int run_bench(const Args& args) {
  const int64_t prompt_len = args.get_int("prompt-tokens", 128);
  const int64_t decode_len = args.get_int("decode-tokens", 32);
  if (prompt_len <= 0 || decode_len <= 0) fail("--prompt-tokens and --decode-tokens must be positive");

  auto model = load_model(args);
  const ModelConfig& config = model->config();
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, int32_t(config.vocab_size - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
  for (int32_t& t : prompt) t = token(rng);

  const double bandwidth = measure_read_bandwidth_bytes_per_s();

  CacheSequence sequence;
  const ForwardChunk prefill{&sequence, prompt};
  Clock::time_point start = Clock::now();
  model->forward({&prefill, 1}, false);
  const double prefill_s = seconds_since(start);

  int32_t next = token(rng);
  start = Clock::now();
  for (int64_t i = 0; i < decode_len; ++i) {
    const ForwardChunk step{&sequence, {&next, 1}};
    const std::vector<float> logits = model->forward({&step, 1}, false);
    next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double decode_s = seconds_since(start);

  // The cache grows during the timed steps: count the mean context.
  const double bytes_per_token =
      decode_bytes_per_token(model->weights(), config, prompt_len + decode_len / 2, model->backend().name());
  const double tokens_per_s = double(decode_len) / decode_s;
  const double bound_tokens_per_s = bandwidth / bytes_per_token;
  nlohmann::json result = {
      {"model", args.get_or("model", "preset:demo")},
      {"dtype", args.get_or("dtype", "")},
      {"device", model->backend().name()},
      {"threads", ThreadPool::global().n_threads()},
      {"prompt_tokens", prompt_len},
      {"decode_tokens", decode_len},
      {"prefill_tokens_per_s", double(prompt_len) / prefill_s},
      {"decode_tokens_per_s", tokens_per_s},
      {"decode_ms_per_token", 1e3 / tokens_per_s},
      {"weight_and_cache_bytes_per_token", bytes_per_token},
      {"measured_read_bandwidth_gb_per_s", bandwidth / 1e9},
      {"bandwidth_bound_tokens_per_s", bound_tokens_per_s},
      {"fraction_of_bound", tokens_per_s / bound_tokens_per_s},
  };
  std::printf("%-34s %s\n", "model", result["model"].get<std::string>().c_str());
  std::printf("%-34s %s, %d threads\n", "device", model->backend().name().c_str(), ThreadPool::global().n_threads());
  std::printf("%-34s %.1f tokens/s (%lld tokens)\n", "prefill", double(prompt_len) / prefill_s, (long long)prompt_len);
  std::printf("%-34s %.2f tokens/s, %.1f ms/token\n", "decode (batch 1)", tokens_per_s, 1e3 / tokens_per_s);
  std::printf("%-34s %.1f MB\n", "bytes read per decoded token", bytes_per_token / 1e6);
  std::printf("%-34s %.1f GB/s\n", "measured memory read bandwidth", bandwidth / 1e9);
  std::printf("%-34s %.2f tokens/s\n", "bandwidth bound", bound_tokens_per_s);
  std::printf("%-34s %.0f%%\n", "fraction of bound", 100.0 * tokens_per_s / bound_tokens_per_s);
  if (auto path = args.get("json")) {
    std::ofstream out(*path);
    if (!out) fail("cannot write --json ", *path);
    out << result.dump(2) << "\n";
  }
  return 0;
}

std::vector<FlagSpec> flags() {
  std::vector<FlagSpec> f = model_flags();
  f.push_back({"prompt-tokens", "", true, "prompt length before the timed decode (default 128)"});
  f.push_back({"decode-tokens", "", true, "decode steps timed (default 32)"});
  f.push_back({"json", "", true, "also write the results as JSON to this file"});
  return f;
}

const CommandRegistration registration{
    {"bench", "decode throughput against the memory-bandwidth bound (prefill too)", flags(), run_bench}};

}  // namespace
}  // namespace dsv3::cli
