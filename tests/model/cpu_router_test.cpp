// The CPU router on logits it is handed directly (an identity gate): the order it chooses in, and
// a token whose logits are all NaN, which must still get distinct experts in range and leave the
// other tokens' choice alone (its sorts rank NaN last, util/token_draw.h's ranks_before_nan_last).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"

namespace dsv3 {
namespace {

constexpr int64_t kExperts = 16;

struct IdentityGate {
  std::vector<float> values = std::vector<float>(size_t(kExperts * kExperts), 0.0f);
  LinearWeight linear;
  IdentityGate() {
    for (int64_t e = 0; e < kExperts; ++e) values[size_t(e * kExperts + e)] = 1.0f;
    linear.weight = {"gate", DType::F32, {kExperts, kExperts}, reinterpret_cast<const uint8_t*>(values.data()),
                     values.size() * 4};
  }
};

std::vector<int32_t> route_ids(CpuBackend& cpu, const std::vector<float>& logits, const RouterParams& p) {
  const IdentityGate gate;
  const int64_t n = int64_t(logits.size()) / kExperts;
  ActBuffer x = cpu.upload(logits, n, kExperts);
  const Routing routing = cpu.moe_route(x.view, gate.linear, nullptr, p);
  const auto* ids = static_cast<const int32_t*>(routing.expert_ids.data());
  return {ids, ids + n * p.top_k};
}

const std::vector<RouterParams> kRouters = {
    {ScoringFunc::Sigmoid, TopkMethod::NoauxTc, 4, 2, 3, true, 2.5f},
    {ScoringFunc::Softmax, TopkMethod::GroupLimitedGreedy, 4, 2, 3, false, 16.0f},
    {ScoringFunc::Softmax, TopkMethod::Greedy, 1, 1, 3, false, 1.0f},
};

TEST(CpuRouter, ChoosesTheLargestWithTiesToTheLowerIndex) {
  CpuBackend cpu;
  std::vector<float> logits(kExperts, -1.0f);
  logits[9] = 3.0f, logits[2] = 2.0f, logits[7] = 2.0f;  // 2 and 7 tie: 2 first
  const RouterParams greedy = kRouters[2];
  EXPECT_EQ(route_ids(cpu, logits, greedy), (std::vector<int32_t>{9, 2, 7}));
}

TEST(CpuRouter, NanLogitsChooseDistinctExpertsInRange) {
  CpuBackend cpu;
  std::vector<float> finite(kExperts);
  for (int64_t e = 0; e < kExperts; ++e) finite[size_t(e)] = std::sin(float(e) * 1.7f);
  std::vector<float> logits(kExperts, std::nanf(""));
  logits.insert(logits.end(), finite.begin(), finite.end());
  for (const RouterParams& p : kRouters) {
    const std::vector<int32_t> ids = route_ids(cpu, logits, p);
    const std::set<int32_t> nan_token(ids.begin(), ids.begin() + p.top_k);
    EXPECT_EQ(int64_t(nan_token.size()), p.top_k);
    for (const int32_t id : nan_token) EXPECT_TRUE(id >= 0 && id < kExperts) << id;
    EXPECT_EQ(std::vector<int32_t>(ids.begin() + p.top_k, ids.end()), route_ids(cpu, finite, p));
  }
}

}  // namespace
}  // namespace dsv3
