// DeepSeekMoE on the CPU (REFERENCE.md, DeepSeekMoE FFN): the router and the routed experts.
// Selection follows transformers, the oracle: experts outside the chosen groups are masked to -inf
// before the final top-k (V2's positive probabilities make that equal to its 0.0 mask), and
// normalisation adds 1e-20 to the denominator.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/cpu/cpu_linear.h"
#include "dsv3/util/error.h"
#include "dsv3/util/thread_pool.h"
#include "dsv3/util/token_draw.h"

namespace dsv3 {
namespace {

using cpu::row_ptr;

// Indices of the k largest values, largest first (ties to the lower index, as a stable sort does),
// NaN after every number: a token whose hidden state went to NaN has every logit NaN, and `>` alone
// is no strict weak order over them, which the sorts need ([alg.sorting]).
std::vector<int32_t> top_k_indices(const std::vector<float>& values, int64_t k) {
  std::vector<int32_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return ranks_before_nan_last(values[size_t(a)], a, values[size_t(b)], b);
  });
  order.resize(size_t(k));
  return order;
}

// Scores used to choose experts: all of them, or only those in the best topk_group groups.
std::vector<float> group_limited(const std::vector<float>& choice, const RouterParams& p) {
  const bool grouped = p.n_group > 1 &&
                       (p.topk_method == TopkMethod::NoauxTc || p.topk_method == TopkMethod::GroupLimitedGreedy);
  if (!grouped) return choice;
  const int64_t per_group = int64_t(choice.size()) / p.n_group;
  std::vector<float> group_scores(static_cast<size_t>(p.n_group));
  for (int64_t g = 0; g < p.n_group; ++g) {
    std::vector<float> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
    std::sort(members.begin(), members.end(), [](float a, float b) { return ranks_before_nan_last(a, 0, b, 0); });
    // V3: a group scores the sum of its two best; V2 group_limited_greedy: its best.
    group_scores[size_t(g)] = p.topk_method == TopkMethod::NoauxTc ? members[0] + (members.size() > 1 ? members[1] : 0.0f)
                                                                     : members[0];
  }
  std::vector<float> masked(choice.size(), -std::numeric_limits<float>::infinity());
  for (int32_t g : top_k_indices(group_scores, p.topk_group))
    std::copy_n(choice.begin() + g * per_group, per_group, masked.begin() + g * per_group);
  return masked;
}

}  // namespace

Routing CpuBackend::moe_route(const Act& x, const LinearWeight& gate, const Act* e_score_correction_bias,
                              const RouterParams& p) {
  const int64_t n = x.rows, n_experts = gate.out_features();
  std::vector<float> logits(static_cast<size_t>(n * n_experts));
  cpu::linear_f32(gate, static_cast<const float*>(x.data), n, x.stride, logits.data(), n_experts);

  Routing routing{cpu::host_alloc(size_t(n * p.top_k) * 4), cpu::host_alloc(size_t(n * p.top_k) * 4), n, p.top_k, {}};
  auto* ids = static_cast<int32_t*>(routing.expert_ids.data());
  auto* weights = static_cast<float*>(routing.expert_weights.data());
  const float* bias = e_score_correction_bias ? row_ptr(*e_score_correction_bias, 0) : nullptr;

  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> scores(logits.begin() + t * n_experts, logits.begin() + (t + 1) * n_experts);
    if (p.scoring_func == ScoringFunc::Sigmoid) {
      for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
    } else {
      const float max_logit = *std::max_element(scores.begin(), scores.end());
      float sum = 0.0f;
      for (float& s : scores) sum += (s = std::exp(s - max_logit));
      for (float& s : scores) s /= sum;
    }
    std::vector<float> choice = scores;
    if (bias)
      for (int64_t e = 0; e < n_experts; ++e) choice[size_t(e)] += bias[e];
    const std::vector<int32_t> chosen = top_k_indices(group_limited(choice, p), p.top_k);

    float sum = 0.0f;
    for (int64_t k = 0; k < p.top_k; ++k) sum += scores[size_t(chosen[size_t(k)])];
    for (int64_t k = 0; k < p.top_k; ++k) {
      float w = scores[size_t(chosen[size_t(k)])];
      if (p.norm_topk_prob) w /= sum + 1e-20f;
      ids[t * p.top_k + k] = chosen[size_t(k)];
      weights[t * p.top_k + k] = w * p.routed_scaling_factor;
    }
  }
  return routing;
}

void CpuBackend::moe_experts(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                             const ExpertWeights* shared, const Act& out) {
  const auto* ids = static_cast<const int32_t*>(routing.expert_ids.data());
  const auto* weights = static_cast<const float*>(routing.expert_weights.data());
  const int64_t hidden = x.cols;

  // Tokens by expert, so that each chosen expert's weights are read once for all its tokens; the
  // shared experts last, every token with weight 1.
  const size_t n_ffns = experts.size() + (shared ? 1 : 0);
  std::vector<std::vector<std::pair<int64_t, float>>> tokens_of(n_ffns);
  for (int64_t t = 0; t < routing.n_tokens; ++t)
    for (int64_t k = 0; k < routing.top_k; ++k)
      tokens_of[size_t(ids[t * routing.top_k + k])].push_back({t, weights[t * routing.top_k + k]});
  if (shared)
    for (int64_t t = 0; t < routing.n_tokens; ++t) tokens_of.back().push_back({t, 1.0f});

  for (int64_t r = 0; r < out.rows; ++r) std::fill_n(row_ptr(out, r), hidden, 0.0f);
  for (size_t e = 0; e < n_ffns; ++e) {
    const auto& routed = tokens_of[e];
    if (routed.empty()) continue;
    const ExpertWeights& expert = e < experts.size() ? experts[e] : *shared;
    const int64_t m = int64_t(routed.size()), width = expert.gate_proj.out_features();
    std::vector<float> xs(static_cast<size_t>(m * hidden)), y(static_cast<size_t>(m * hidden));
    std::vector<float> gate(static_cast<size_t>(m * width)), up(static_cast<size_t>(m * width));
    for (int64_t i = 0; i < m; ++i) std::copy_n(row_ptr(x, routed[size_t(i)].first), hidden, xs.begin() + i * hidden);
    cpu::linear_f32(expert.gate_proj, xs.data(), m, hidden, gate.data(), width);
    cpu::linear_f32(expert.up_proj, xs.data(), m, hidden, up.data(), width);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    cpu::linear_f32(expert.down_proj, gate.data(), m, width, y.data(), hidden);
    for (int64_t i = 0; i < m; ++i) {
      float* o = row_ptr(out, routed[size_t(i)].first);
      const float w = routed[size_t(i)].second;
      for (int64_t c = 0; c < hidden; ++c) o[c] += w * y[size_t(i * hidden + c)];
    }
  }
}

}  // namespace dsv3
