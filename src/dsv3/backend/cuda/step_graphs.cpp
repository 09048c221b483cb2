#include "dsv3/backend/cuda/step_graphs.h"

#include <algorithm>
#include <bit>

namespace dsv3::cuda {

StepInputLayout StepInputLayout::of(std::span<const std::vector<int32_t>> inputs, bool padded) {
  constexpr int64_t kAlign = 64;  // values: 256 bytes
  StepInputLayout layout;
  for (const std::vector<int32_t>& values : inputs) {
    const int64_t size = int64_t(values.size());
    const int64_t capacity = padded ? int64_t(std::bit_ceil(uint64_t(std::max<int64_t>(size, 1)))) : size;
    layout.offsets.push_back(layout.total);
    layout.capacities.push_back(capacity);
    layout.total += (capacity + kAlign - 1) / kAlign * kAlign;
  }
  return layout;
}

StepGraphs::Graph::~Graph() {
  if (exec) cudaGraphExecDestroy(exec);
}

size_t StepGraphs::KeyHash::operator()(const Key& key) const {
  size_t h = std::hash<uint64_t>()(key.step);
  for (int64_t c : key.capacities) h = h * 1000003u ^ std::hash<int64_t>()(c);
  return h;
}

StepGraphs::Graph* StepGraphs::find(const Key& key) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) return nullptr;
  it->second->last_used = ++clock_;
  return it->second.get();
}

bool StepGraphs::seen_before(const Key& key) { return !sightings_.emplace(key, Sighting::Seen).second; }

bool StepGraphs::uncapturable(const Key& key) const {
  auto it = sightings_.find(key);
  return it != sightings_.end() && it->second == Sighting::Uncapturable;
}

void StepGraphs::mark_uncapturable(const Key& key) { sightings_[key] = Sighting::Uncapturable; }

void StepGraphs::add(const Key& key, std::unique_ptr<Graph> graph) {
  graph->last_used = ++clock_;
  graphs_[key] = std::move(graph);
  if (graphs_.size() <= kMaxGraphs) return;
  auto oldest = std::min_element(graphs_.begin(), graphs_.end(), [](const auto& a, const auto& b) {
    return a.second->last_used < b.second->last_used;
  });
  graphs_.erase(oldest);
}

}  // namespace dsv3::cuda
