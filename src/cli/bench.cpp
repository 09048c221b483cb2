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
#include "cli/engine_setup.h"
#include "cli/model_options.h"
#include "dsv3/bench/serving_bench.h"
#include "dsv3/bench/batched_decode.h"
#include "dsv3/bench/decode_bytes.h"
#include "dsv3/bench/op_rates.h"
#include "dsv3/bench/prefill_flops.h"
#include "dsv3/util/error.h"
#include "dsv3/util/thread_pool.h"

namespace dsv3::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Serving mode (--clients N): throughput and latency percentiles of many concurrent requests.
void write_json(const Args& args, const nlohmann::json& result) {
  if (auto path = args.get("json")) {
    std::ofstream out(*path);
    if (!out) fail("cannot write --json ", *path);
    out << result.dump(2) << "\n";
  }
}

int run_serving(const Args& args) {
  ServingBenchParams params;
  params.n_clients = args.get_int("clients", 8);
  params.n_requests = args.get_int("requests", 2 * params.n_clients);
  params.prompt_tokens = args.get_int("prompt-tokens", 128);
  params.output_tokens = args.get_int("output-tokens", 64);
  params.temperature = float(args.get_double("temperature", 0.0));
  params.top_p = float(args.get_double("top-p", 1.0));
  params.top_k = args.get_int("top-k", 0);
  if (!(params.temperature >= 0.0f)) fail("flag --temperature must be >= 0");
  if (params.top_k < 0) fail("flag --top-k must be >= 0");
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) fail("flag --top-p must be in (0, 1]");
  ServingModel model = load_serving_model(args);
  const ServingBenchResult r = run_serving_bench(*model.engine, params);
  const nlohmann::json result = {
      {"model", model.name}, {"dtype", args.get_or("dtype", "")}, {"threads", ThreadPool::global().n_threads()},
      {"clients", params.n_clients}, {"requests", params.n_requests}, {"prompt_tokens", params.prompt_tokens},
      {"output_tokens", params.output_tokens}, {"temperature", params.temperature}, {"top_p", params.top_p}, {"top_k", params.top_k}, {"wall_s", r.wall_s}, {"output_tokens_per_s", r.output_tokens_per_s},
      {"total_tokens_per_s", r.total_tokens_per_s}, {"ttft_ms", {{"p50", 1e3 * r.ttft_p50_s}, {"p90", 1e3 * r.ttft_p90_s},
      {"p99", 1e3 * r.ttft_p99_s}}}, {"itl_ms", {{"p50", 1e3 * r.itl_p50_s}, {"p90", 1e3 * r.itl_p90_s},
      {"p99", 1e3 * r.itl_p99_s}}}};
  std::printf("%-34s %s, %d threads\n", "model", model.name.c_str(), ThreadPool::global().n_threads());
  std::printf("%-34s %lld clients, %lld requests of %lld + %lld tokens\n", "load", (long long)params.n_clients,
              (long long)params.n_requests, (long long)params.prompt_tokens, (long long)params.output_tokens);
  std::printf("%-34s %.1f output tokens/s (%.1f with prompts), %.1f s\n", "throughput", r.output_tokens_per_s,
              r.total_tokens_per_s, r.wall_s);
  std::printf("%-34s p50 %.0f ms, p90 %.0f ms, p99 %.0f ms\n", "time to first token", 1e3 * r.ttft_p50_s,
              1e3 * r.ttft_p90_s, 1e3 * r.ttft_p99_s);
  std::printf("%-34s p50 %.1f ms, p90 %.1f ms, p99 %.1f ms\n", "inter-token latency", 1e3 * r.itl_p50_s,
              1e3 * r.itl_p90_s, 1e3 * r.itl_p99_s);
  write_json(args, result);
  return 0;
}

// --ops: the hot ops on their own, against the bandwidth and product rate measured in this run.
void report_op_rates(DeepseekModel& model, double bandwidth, double matmul_rate, nlohmann::json& result) {
  auto report = [&](const OpRate& r, bool bytes) {
    const double rate = r.per_second(), bound = bytes ? bandwidth : matmul_rate;
    result["ops"].push_back({{"op", r.what}, {"seconds", r.seconds}, {bytes ? "gb_per_s" : "tflop_per_s",
                             rate / (bytes ? 1e9 : 1e12)}, {"fraction_of_measured", rate / bound}});
    std::printf("%-34s %.3g %s in %.3g ms, %.0f%% of the measured %s\n", r.what.c_str(), rate / (bytes ? 1e9 : 1e12),
                bytes ? "GB/s" : "TFLOP/s", 1e3 * r.seconds, 100.0 * rate / bound,
                bytes ? "read bandwidth" : "BF16 product rate");
  };
  for (const auto& [items, context] : std::vector<std::pair<int64_t, int64_t>>{{1, 32768}, {32, 4096}, {128, 1024}})
    report(time_mla_decode(model, items, context), true);
  report(time_dense_product(model, 4096), false);
  for (const int64_t rows : {1, 32, 64}) report(time_decode_product(model, rows), true);
  for (const int64_t tokens : {1024, 8192}) report(time_routed_experts(model, tokens), false);
}

int run_bench(const Args& args) {
  if (args.has("clients")) return run_serving(args);
  const int64_t prompt_len = args.get_int("prompt-tokens", 128);
  const int64_t decode_len = args.get_int("decode-tokens", 32);
  if (prompt_len <= 0 || decode_len <= 0) fail("--prompt-tokens and --decode-tokens must be positive");
  const std::vector<int64_t> batch_sizes = args.get_int_list("batch");
  for (const int64_t batch : batch_sizes)
    if (batch <= 0) fail("--batch sizes must be positive, got ", batch);

  auto model = load_model(args);
  const ModelConfig& config = model->config();
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, int32_t(config.vocab_size - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
  for (int32_t& t : prompt) t = token(rng);

  const double bandwidth = model->backend().measure_read_bandwidth();
  const double matmul_rate = model->backend().measure_matmul_rate();

  // Warm-up, untimed: a prefill of the same length and two decode steps make what the first calls
  // make once (weight copies, product plans for the prompt's shapes, pooled memory, the first decode
  // graph), as a server has made them by its second request.
  {
    CacheSequence warm;
    const ForwardChunk warm_prefill{&warm, prompt};
    model->forward({&warm_prefill, 1}, false);
    for (int i = 0; i < 2; ++i) {
      const ForwardChunk step{&warm, {&prompt[0], 1}};
      model->forward_greedy({&step, 1});
    }
    model->release(warm);
  }

  CacheSequence sequence;
  const ForwardChunk prefill{&sequence, prompt};
  Clock::time_point start = Clock::now();
  model->forward({&prefill, 1}, false);
  const double prefill_s = seconds_since(start);
  model->pages().publish(sequence, prompt);  // for the batches of --batch

  start = Clock::now();
  decode_greedy(*model, {&sequence, 1}, {token(rng)}, decode_len);
  const double decode_s = seconds_since(start);

  // The cache grows during the timed steps: count the mean context.
  const double bytes_per_token =
      decode_bytes_per_token(model->weights(), config, prompt_len + decode_len / 2, model->backend().cache_value_bytes());
  const double tokens_per_s = double(decode_len) / decode_s;
  const double prefill_flop_rate = prefill_flops(model->weights(), config, prompt_len) / prefill_s;
  const double bound_tokens_per_s = bandwidth / bytes_per_token;
  nlohmann::json result = {
      {"model", args.get_or("model", "preset:demo")},
      {"dtype", args.get_or("dtype", "")},
      {"fp8_activations", args.has("fp8-activations")},
      {"device", model->backend().name()},
      {"threads", ThreadPool::global().n_threads()},
      {"prompt_tokens", prompt_len},
      {"decode_tokens", decode_len},
      {"prefill_tokens_per_s", double(prompt_len) / prefill_s},
      {"prefill_tflop_per_s", prefill_flop_rate / 1e12},
      {"measured_matmul_tflop_per_s", matmul_rate / 1e12},
      {"decode_tokens_per_s", tokens_per_s},
      {"decode_ms_per_token", 1e3 / tokens_per_s},
      {"weight_and_cache_bytes_per_token", bytes_per_token},
      {"measured_read_bandwidth_gb_per_s", bandwidth / 1e9},
      {"bandwidth_bound_tokens_per_s", bound_tokens_per_s},
      {"fraction_of_bound", tokens_per_s / bound_tokens_per_s},
  };
  std::printf("%-34s %s%s\n", "model", result["model"].get<std::string>().c_str(),
              result["fp8_activations"].get<bool>() ? ", FP8 activations" : "");
  std::printf("%-34s %s, %d threads\n", "device", model->backend().name().c_str(), ThreadPool::global().n_threads());
  std::printf("%-34s %.1f tokens/s (%lld tokens), %.1f ms to the first token\n", "prefill",
              double(prompt_len) / prefill_s, (long long)prompt_len, 1e3 * prefill_s);
  std::printf("%-34s %.3g TFLOP/s, %.0f%% of a measured %.3g TFLOP/s BF16 product\n", "prefill arithmetic",
              prefill_flop_rate / 1e12, 100.0 * prefill_flop_rate / matmul_rate, matmul_rate / 1e12);
  std::printf("%-34s %.2f tokens/s, %.1f ms/token\n", "decode (batch 1)", tokens_per_s, 1e3 / tokens_per_s);
  std::printf("%-34s %.1f MB\n", "bytes read per decoded token", bytes_per_token / 1e6);
  std::printf("%-34s %.1f GB/s\n", "measured memory read bandwidth", bandwidth / 1e9);
  std::printf("%-34s %.2f tokens/s\n", "bandwidth bound", bound_tokens_per_s);
  std::printf("%-34s %.0f%%\n", "fraction of bound", 100.0 * tokens_per_s / bound_tokens_per_s);
  for (const int64_t batch : batch_sizes) {
    const double batch_tokens_per_s = batched_decode_tokens_per_s(*model, prompt, batch, decode_len);
    result["decode_tokens_per_s_at_batch"][std::to_string(batch)] = batch_tokens_per_s;
    std::printf("%-34s %.1f tokens/s, %.1f ms a step\n", ("decode (batch " + std::to_string(batch) + ")").c_str(),
                batch_tokens_per_s, 1e3 * double(batch) / batch_tokens_per_s);
  }
  if (args.has("ops")) report_op_rates(*model, bandwidth, matmul_rate, result);
  write_json(args, result);
  return 0;
}

std::vector<FlagSpec> flags() {
  std::vector<FlagSpec> f = model_flags();
  f.push_back({"prompt-tokens", "", true, "prompt length before the timed decode (default 128)"});
  f.push_back({"decode-tokens", "", true, "decode steps timed (default 32)"});
  f.push_back({"batch", "", true, "also decode batches of these sizes after the prompt, e.g. 32,128,256"});
  f.push_back({"ops", "", false, "also time the hot ops on their own: MLA decode, dense products, experts"});
  f.push_back({"json", "", true, "also write the results as JSON to this file"});
  f.push_back({"clients", "", true, "serving mode: concurrent clients, each keeping one request in flight"});
  f.push_back({"requests", "", true, "serving mode: requests in all (default 2 x clients)"});
  f.push_back({"output-tokens", "", true, "serving mode: tokens each request generates (default 64)"});
  f.push_back({"temperature", "", true, "serving mode: the requests' temperature (default 0, greedy)"});
  f.push_back({"top-p", "", true, "serving mode: the requests' nucleus mass (default 1)"});
  f.push_back({"top-k", "", true, "serving mode: the requests' top_k (default 0: every token)"});
  return f;
}

const CommandRegistration registration{
    {"bench", "decode throughput against the memory-bandwidth bound; with --clients, serving throughput and latency", flags(), run_bench}};

}  // namespace
}  // namespace dsv3::cli
