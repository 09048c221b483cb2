#include "dsv3/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace dsv3 {

int32_t sample_token(std::span<const float> logits, const SamplingParams& params, std::mt19937_64& rng) {
  if (params.temperature <= 0.0f)
    return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());

  // Candidates by descending logit; top_k and top_p only ever cut the tail.
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t k = params.top_k > 0 ? std::min(size_t(params.top_k), order.size()) : order.size();
  std::partial_sort(order.begin(), order.begin() + ptrdiff_t(k), order.end(),
                    [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  order.resize(k);

  std::vector<double> probs(k);
  const double max_logit = logits[size_t(order[0])];
  double sum = 0.0;
  for (size_t i = 0; i < k; ++i) sum += probs[i] = std::exp((logits[size_t(order[i])] - max_logit) / params.temperature);
  size_t kept = k;
  if (params.top_p < 1.0f) {
    double mass = 0.0;
    for (kept = 0; kept < k && mass < params.top_p * sum;) mass += probs[kept++];
  }
  std::discrete_distribution<size_t> pick(probs.begin(), probs.begin() + ptrdiff_t(kept));
  return order[pick(rng)];
}

}  // namespace dsv3
