#include "dsv3/backend/backend.h"

#include <algorithm>
#include <chrono>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/util/error.h"
#ifdef DSV3_HAVE_CUDA
#include "dsv3/backend/cuda/cuda_backend.h"
#endif

namespace dsv3 {

void Backend::launch_step(std::optional<uint64_t>, std::span<const std::vector<int32_t>> inputs, const StepBody& body) {
  std::vector<Indices> views;
  for (const std::vector<int32_t>& values : inputs) views.push_back({values.data(), int64_t(values.size())});
  const ActBuffer out = body(views);
  std::vector<float> result(size_t(out.view.rows * out.view.cols));
  download(out.view, result.data());
  finished_results_.push_back(std::move(result));
}

void Backend::finish_step(std::vector<float>& result) {
  DSV3_ASSERT(!finished_results_.empty());
  result = std::move(finished_results_.front());
  finished_results_.pop_front();
}

void Backend::mla_rope_and_cache(const MlaShape& shape, const Act& q, const Act& kv, const Act& kv_norm, float eps,
                                 const RopeTable& rope, const Indices& positions, const Buffer& cache,
                                 const LatentCacheLayout& layout, int64_t layer, const Indices& slots) {
  const Act c_kv = kv.cols_slice(0, shape.kv_lora_rank);
  rmsnorm(c_kv, kv_norm, eps, c_kv);
  this->rope(q, shape.qk_head_dim(), shape.qk_nope_head_dim, rope, positions);
  this->rope(kv.cols_slice(shape.kv_lora_rank, shape.qk_rope_head_dim), shape.qk_rope_head_dim, 0, rope, positions);
  cache_write(cache, layout, layer, slots, kv);
}

double Backend::measure_matmul_rate() {
  constexpr int64_t M = 256, N = 2048, K = 2048;
  const std::vector<uint16_t> weight(size_t(N * K), 0x3c00);  // BF16 0.0078125
  const TensorView stored{"matmul rate probe", DType::BF16, {N, K}, reinterpret_cast<const uint8_t*>(weight.data()),
                          weight.size() * sizeof(uint16_t)};
  const LinearWeight w{place(stored), {}, 128, 128};
  const ActBuffer x = upload(std::vector<float>(size_t(M * K), 0.5f), M, K), y = alloc(M, N);
  float probe = 0.0f;
  double best_s = 1e30;
  for (int pass = 0; pass < 3; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    linear(x.view, w, y.view);
    download(y.view.rows_slice(0, 1).cols_slice(0, 1), &probe);  // waits for the product
    best_s = std::min(best_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 2.0 * double(M * N * K) / best_s;
}

std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options) {
#ifdef DSV3_HAVE_CUDA
  if (name == "cuda" || (name.empty() && cuda::device_present())) return std::make_unique<CudaBackend>(options);
#else
  if (name == "cuda") fail("--device cuda: this dsv3 was built without the CUDA backend (no nvcc at build time); use --device cpu");
#endif
  if (name.empty() || name == "cpu") {
    if (options.fp8_activations) fail("--fp8-activations takes the CUDA backend; the CPU one keeps activations in float32");
    return std::make_unique<CpuBackend>();
  }
  fail("unknown --device '", name, "' (expected cpu or cuda)");
}

}  // namespace dsv3
