// The CUDA backend: float32 activations in device memory from a caching pool, weights copied to the
// device once in their stored format (BF16, or FP8 with 128x128 block scales), one stream for all
// work. Few rows stream weights through our own kernels; many rows go to cuBLASLt (BF16, or FP8 with
// DeepSeek's block scaling).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "dsv3/backend/backend.h"
#include "dsv3/backend/cuda/device_pool.h"
#include "dsv3/backend/cuda/gemm.h"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/moe_mma.h"
#include "dsv3/backend/cuda/step_graphs.h"

namespace dsv3 {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& options = {});
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }

  ActBuffer alloc(int64_t rows, int64_t cols) override;
  ActBuffer upload(std::span<const float> values, int64_t rows, int64_t cols) override;
  void download(const Act& src, float* dst) override;
  Buffer alloc_cache(const LatentCacheLayout& layout) override;
  int64_t cache_value_bytes() const override { return sizeof(cuda::CacheValue); }
  TensorView place(const TensorView& stored) override;

  void launch_step(std::optional<uint64_t> replay_key, std::span<const std::vector<int32_t>> inputs,
                   const StepBody& body) override;
  void finish_step(std::vector<float>& result) override;

  void embed(const TensorView& table, const Indices& ids, const Act& fed, const Act& out) override;
  void gather_rows(const Act& x, const Indices& rows, const Act& out) override;
  void pick_tokens(const Act& logits, const Indices& draws, bool cut_rows, const Act& out) override;
  void rmsnorm(const Act& x, const Act& weight, float eps, const Act& out) override;
  void add_rmsnorm(const Act& x, const Act& y, const Act& weight, float eps, const Act& out) override;
  void linear(const Act& x, const LinearWeight& w, const Act& out) override;
  void linear_pair(const Act& x, const LinearWeight& w_a, const Act& out_a, const LinearWeight& w_b,
                   const Act& out_b) override;
  void linear_add_rmsnorm(const Act& x, const LinearWeight& w, const Act& out, const ResidualNorm& then) override;
  void add(const Act& x, const Act& y) override;
  void silu_mul(const Act& gate, const Act& up, const Act& out) override;
  void rope(const Act& x, int64_t head_dim, int64_t offset, const RopeTable& table,
            const Indices& positions) override;

  void cache_write(const Buffer& cache, const LatentCacheLayout& layout, int64_t layer, const Indices& slots,
                   const Act& rows) override;
  void mla_rope_and_cache(const MlaShape& shape, const Act& q, const Act& kv, const Act& kv_norm, float eps,
                          const RopeTable& rope, const Indices& positions, const Buffer& cache,
                          const LatentCacheLayout& layout, int64_t layer, const Indices& slots) override;
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
  void moe_experts_add_rmsnorm(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                               const ExpertWeights* shared, const Act& out, const ResidualNorm& then) override;
  void moe_add_rmsnorm(const Act& x, const MoeSublayerWeights& moe, const RouterParams& params, const Act& out,
                       const ResidualNorm& then) override;
  // Whether moe_add_rmsnorm routes x in the experts' launches (a lone token whose experts, and shared
  // FFN, stream on tensor cores in the same launches: moe_mma.h, LoneRouting), the gate's launch only
  // multiplying, where other batches route in the gate's last block or a launch of its own.
  bool routes_in_experts(const Act& x, const MoeSublayerWeights& moe, const RouterParams& params);

  // Host values into fresh device memory (queued on the stream).
  template <typename T>
  Buffer to_device(std::span<const T> values) {
    Buffer b = pool_->allocate(values.size_bytes());
    copy_to_device(b.data(), values.data(), values.size_bytes());
    return b;
  }
  // Waits for every queued op and reports a fault of any of them.
  void synchronize();
  cudaStream_t stream() const { return stream_; }

  // Whether cuBLASLt has a block-scaled FP8 product for y `out` of K-column activations (what
  // LinearPath::Gemm takes for FP8 weights in 128x128 blocks).
  bool fp8_gemm_available(const Act& out, int64_t K);
  // Reads a large device buffer; bytes read per second.
  double measure_read_bandwidth() override;
  double measure_matmul_rate() override;

  // Products with their path forced, for the op tests and the bench: `Small` streams the weight
  // through our kernel, `Gemm` takes cuBLASLt (FP8 weights: the block-scaled FP8 product where
  // cuBLASLt has one, else FP16 on the dequantised weight), `Gemm16` always its 16-bit product (BF16
  // weights against x in two BF16 parts, FP8 ones as FP16 against x in FP16), `Grouped` our
  // tensor-core kernel (grouped_gemm.cu) as one group, `Few` its few-row tiles with K split over
  // blocks (grouped_few.cu). `Auto` takes `Small` for up to 16 rows, `Few` for up to kFewRows where
  // it takes the weight, else `Gemm` with BackendOptions::fp8_activations and `Gemm16` without.
  enum class LinearPath { Auto, Small, Few, Gemm, Gemm16, Grouped };
  void linear_with(LinearPath path, const Act& x, const LinearWeight& w, const Act& out);

 private:
  void copy_to_device(void* dst, const void* src, size_t n_bytes);
  Buffer scratch(size_t n_bytes) { return pool_->allocate(n_bytes); }
  void linear_gemm(const Act& x, const LinearWeight& w, const Act& out, bool allow_fp8);
  // The experts' weights as a device array (gate, up, down per expert, then the shared FFN's where
  // given), made once per layer.
  const cuda::DeviceWeight* expert_table(std::span<const ExpertWeights> experts, const ExpertWeights* shared);
  // moe_experts, then `then` where given: in the combine's launch for a lone token, where the shared
  // FFN joined the routed experts' launches. With `lone`, a lone token is routed in the experts'
  // launches (moe_mma.h), which write routing's weights and the pair slots of routing.plan.
  void run_experts(const Act& x, const Routing& routing, std::span<const ExpertWeights> experts,
                   const ExpertWeights* shared, const Act& out, const ResidualNorm* then,
                   const cuda::LoneRouting* lone = nullptr);
  // out += down(silu(gate x) * up x) of the shared experts, through linear().
  void shared_ffn_add(const Act& x, const ExpertWeights& shared, const Act& out);
  // A step's inputs in one device block laid out as `layout` says, uploaded through the staging ring.
  void upload_step_inputs(std::span<const std::vector<int32_t>> inputs, const cuda::StepInputLayout& layout,
                          void* memory);
  // The body run as it is, over freshly uploaded inputs; its result's download queued.
  void launch_step_directly(std::span<const std::vector<int32_t>> inputs, const StepBody& body);
  // Queues the download of a launched step's result and records when it is done.
  void queue_result_download(const Act& src);
  // The body captured into a graph over the graph's own inputs and memory; false when an op could
  // not be captured (it synchronises).
  bool capture_step(const cuda::StepGraphs::Key& key, std::span<const std::vector<int32_t>> inputs,
                    const cuda::StepInputLayout& layout, const StepBody& body);

  BackendOptions options_;
  cudaStream_t stream_ = nullptr;
  int sm_count_ = 0;
  std::shared_ptr<cuda::DevicePool> pool_;
  std::unique_ptr<cuda::GemmRunner> gemm_;
  std::vector<Buffer> placed_;  // weights copied to the device
  // The counter of kernels whose last block ends their work (last_block.cuh), at zero between them.
  Buffer blocks_done_;
  unsigned* blocks_done() { return static_cast<unsigned*>(blocks_done_.data()); }
  // Pinned staging memory for small uploads: a copy from pageable memory would first wait for the
  // stream to drain, stalling the GPU at every op that takes host values (positions, block tables).
  // Regions are handed out in order; before the ring wraps, the stream is drained once.
  static constexpr size_t kStagingBytes = 64u << 20;
  Buffer staging_;
  size_t staging_used_ = 0;
  // Pinned memory that downloads pass through, grown to the largest asked for.
  Buffer download_;
  // Steps launched and not finished, oldest first, each with the pinned memory its result comes
  // down to and the event recorded behind that copy; blocks and events of finished steps are kept
  // for the next ones.
  struct LaunchedStep {
    Buffer block;
    size_t n_values = 0;
    cudaEvent_t done = nullptr;
  };
  static constexpr size_t kKeptResultBlocks = 4;
  std::deque<LaunchedStep> launched_;
  std::vector<Buffer> free_results_;
  std::vector<cudaEvent_t> free_events_;
  std::map<std::pair<const void*, const void*>, Buffer> expert_tables_;  // by (first expert, shared FFN)
  cuda::StepGraphs graphs_;
  bool capturing_ = false;  // the stream is recording a step graph
  // kv_b_proj as MLA decode reads it (cuda::decode_kv_b_as_stored): as stored, or a float32 copy.
  cuda::DeviceWeight decode_kv_b(const LinearWeight& w, const cuda::MlaDims& dims);
  // A float32 copy of w, made once (at a key's first step, never inside a step graph).
  const float* float_weight(const LinearWeight& w);
  std::unordered_map<const void*, Buffer> float_weights_;
};

namespace cuda {

inline DeviceMatrix matrix(const Act& a) { return {static_cast<float*>(a.data), a.rows, a.cols, a.stride}; }

inline DeviceResidualNorm residual_norm(const ResidualNorm& r) {
  return {matrix(r.residual), static_cast<const float*>(r.weight.data), r.eps, matrix(r.normed)};
}

inline DeviceWeight weight(const LinearWeight& w) {
  return {w.weight.data, w.weight.dtype, w.out_features(), w.in_features(),
          reinterpret_cast<const float*>(w.scale_inv.data), w.block_out, w.block_in};
}

inline DeviceWeight weight(const TensorView& t) { return {t.data, t.dtype, t.shape.at(0), t.shape.at(1), nullptr}; }

// Whether a GPU can be used by this process.
bool device_present();

}  // namespace cuda
}  // namespace dsv3
