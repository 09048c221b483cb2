#include "dsv3/server/metrics.h"

#include <sstream>

namespace dsv3 {

void Histogram::observe(double seconds) {
  size_t b = 0;
  while (b < kBounds.size() && seconds > kBounds[b]) ++b;
  if (b < kBounds.size()) ++counts_[b];
  ++count_;
  sum_ += seconds;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::ostringstream s;
  s << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  uint64_t cumulative = 0;
  for (size_t b = 0; b < kBounds.size(); ++b) {
    cumulative += counts_[b];
    s << name << "_bucket{le=\"" << kBounds[b] << "\"} " << cumulative << "\n";
  }
  s << name << "_bucket{le=\"+Inf\"} " << count_ << "\n" << name << "_sum " << sum_ << "\n" << name << "_count " << count_ << "\n";
  out += s.str();
}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::observe_time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  time_to_first_token_.observe(seconds);
}

void Metrics::observe_inter_token_latency(double seconds) {
  std::lock_guard lock(mutex_);
  inter_token_latency_.observe(seconds);
}

std::string Metrics::render(const EngineStats& e) const {
  std::lock_guard lock(mutex_);
  std::ostringstream s;
  s << "# HELP dsv3_requests_total HTTP requests by endpoint and status.\n# TYPE dsv3_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    s << "dsv3_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << n << "\n";
  auto gauge = [&](const char* name, const char* help, double v, const char* type = "gauge") {
    s << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << v << "\n";
  };
  gauge("dsv3_prompt_tokens_total", "Prompt tokens of finished requests.", double(e.prompt_tokens), "counter");
  gauge("dsv3_generation_tokens_total", "Generated tokens of finished requests.", double(e.generated_tokens), "counter");
  gauge("dsv3_prompt_tokens_cached_total", "Prompt tokens served from the prefix cache.", double(e.cached_prompt_tokens),
        "counter");
  gauge("dsv3_requests_finished_total", "Requests the engine finished.", double(e.requests_finished), "counter");
  gauge("dsv3_requests_running", "Requests being generated.", double(e.running));
  gauge("dsv3_requests_waiting", "Requests queued for cache space.", double(e.queued));
  gauge("dsv3_kv_cache_pages_used", "Latent cache pages held by requests.", double(e.kv_pages_used));
  gauge("dsv3_kv_cache_pages_total", "Latent cache pages.", double(e.kv_pages_total));
  gauge("dsv3_kv_cache_usage_ratio", "Fraction of the latent cache held by requests.",
        e.kv_pages_total ? double(e.kv_pages_used) / double(e.kv_pages_total) : 0.0);
  std::string out = s.str();
  time_to_first_token_.render(out, "dsv3_time_to_first_token_seconds", "Time from request to its first token.");
  inter_token_latency_.render(out, "dsv3_inter_token_latency_seconds", "Time between a request's tokens.");
  return out;
}

}  // namespace dsv3
