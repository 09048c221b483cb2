// The CPU backend: float32 activations in host memory, weights read in their stored format,
// work split over the global thread pool.
#pragma once

#include "dsv3/backend/backend.h"

namespace dsv3 {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  ActBuffer alloc(int64_t rows, int64_t cols) override;
  ActBuffer upload(std::span<const float> values, int64_t rows, int64_t cols) override;
  void download(const Act& src, float* dst) override;
  Buffer alloc_cache(const LatentCacheLayout& layout) override;
  int64_t cache_value_bytes() const override { return sizeof(float); }
  double measure_read_bandwidth() override;

  void embed(const TensorView& table, const Indices& ids, const Act& fed, const Act& out) override;
  void gather_rows(const Act& x, const Indices& rows, const Act& out) override;
  void pick_tokens(const Act& logits, const Indices& draws, bool cut_rows, const Act& out) override;
  void rmsnorm(const Act& x, const Act& weight, float eps, const Act& out) override;
  void linear(const Act& x, const LinearWeight& w, const Act& out) override;
  void add(const Act& x, const Act& y) override;
  void silu_mul(const Act& gate, const Act& up, const Act& out) override;
  void rope(const Act& x, int64_t head_dim, int64_t offset, const RopeTable& table,
            const Indices& positions) override;

  void cache_write(const Buffer& cache, const LatentCacheLayout& layout, int64_t layer, const Indices& slots,
                   const Act& rows) override;
  void mla_prefill(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj, const Buffer& cache,
                   const LatentCacheLayout& layout, int64_t layer, const CacheSequence& sequence,
                   int64_t start, const Act& out) override;
  void mla_decode(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj, const Buffer& cache,
                  const LatentCacheLayout& layout, int64_t layer, const DecodeBatch& batch,
                  const Act& out) override;

  Routing moe_route(const Act& x, const LinearWeight& gate, const Act* e_score_correction_bias,
                    const RouterParams& params) override;
  void moe_experts(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                   const ExpertWeights* shared, const Act& out) override;
};

namespace cpu {

inline float* row_ptr(const Act& a, int64_t r) { return static_cast<float*>(a.data) + r * a.stride; }

// Host memory aligned for vector loads, as a Buffer.
Buffer host_alloc(size_t n_bytes);

// The cache row (c_kv then k_pe) of `slot` (cache_slot()) at `layer`.
inline float* cache_row(const Buffer& cache, const LatentCacheLayout& layout, int64_t layer, int64_t slot) {
  return static_cast<float*>(cache.data()) + layer * layout.layer_elems() + slot * layout.row_width();
}

// Indices in host memory, where the CPU backend's run_step puts them.
inline std::span<const int32_t> host_values(const Indices& indices) { return {indices.data, size_t(indices.size)}; }

}  // namespace cpu
}  // namespace dsv3
