// Decode steps recorded as CUDA graphs (Backend::run_step). A decode step is some 25 launches a
// layer; replaying them as one graph removes the host's launch cost and the gaps between kernels.
// A graph's kernels read their inputs from one device block at a fixed address, which each replay
// refills, and use device memory of the graph's own, which no other work is handed.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "dsv3/backend/buffer.h"
#include "dsv3/backend/cuda/device_pool.h"

namespace dsv3::cuda {

// Where a step's inputs lie in one device block: each at a 256-byte boundary, with room for
// `capacities[i]` values.
struct StepInputLayout {
  std::vector<int64_t> offsets, capacities;  // in int32 values
  int64_t total = 0;

  // Room for the sizes given, or (padded) for each rounded up to a power of two, so that inputs that
  // grow from step to step (block tables) still fit a recorded step for a while.
  static StepInputLayout of(std::span<const std::vector<int32_t>> inputs, bool padded);
};

class StepGraphs {
 public:
  struct Key {
    uint64_t step = 0;
    std::vector<int64_t> capacities;
    bool operator==(const Key&) const = default;
  };

  struct Graph {
    Graph() = default;
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    ~Graph();

    cudaGraphExec_t exec = nullptr;
    std::shared_ptr<DevicePool> pool;  // the memory the ops were captured over
    Buffer inputs;                     // the inputs' block
    Act result;                        // in `pool`
    uint64_t last_used = 0;
  };

  // The graph recorded for `key`, or null.
  Graph* find(const Key& key);
  // Whether `key` was asked for before; the first step of a key runs as it is, so that lazy set-up
  // (expert tables, float32 copies of weights) happens outside any graph.
  bool seen_before(const Key& key);
  bool uncapturable(const Key& key) const;
  void mark_uncapturable(const Key& key);
  // Keeps `graph`, dropping the least recently used beyond kMaxGraphs.
  void add(const Key& key, std::unique_ptr<Graph> graph);

 private:
  static constexpr size_t kMaxGraphs = 16;
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  enum class Sighting { Seen, Uncapturable };

  std::unordered_map<Key, std::unique_ptr<Graph>, KeyHash> graphs_;
  std::unordered_map<Key, Sighting, KeyHash> sightings_;
  uint64_t clock_ = 0;
};

}  // namespace dsv3::cuda
