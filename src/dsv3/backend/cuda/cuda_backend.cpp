#include "dsv3/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "dsv3/backend/cuda/grouped_few.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

// Rows up to which the weight-streaming kernel beats cuBLASLt: it reads the weight once per 16 rows.
constexpr int64_t kSmallRows = 16;

// What LinearPath::Auto picks: the weight-streaming kernel for few rows, or a dtype the tensor-core
// paths do not take.
bool streams(const Act& x, const LinearWeight& w) {
  return x.rows <= kSmallRows || (w.weight.dtype != DType::BF16 && w.weight.dtype != DType::F8_E4M3);
}

// The block-scaled FP8 product's rows for y `out`, and the floats between its output rows. Its
// activation scales are [k_group][row], rows padded to 4 (GemmRunner::fp8_supported); a padded
// product writes its rows to scratch, N floats apart, and the M real ones are copied out.
struct Fp8ProductRows {
  int64_t rows, ld;
};
Fp8ProductRows fp8_product_rows(const Act& out) {
  const int64_t rows = (out.rows + 3) / 4 * 4;
  return {rows, rows == out.rows ? out.stride : out.cols};
}

// The shortest of `passes` runs of the work queued by `work`, timed by events on the stream; the
// first `untimed` runs do not count.
double best_seconds(cudaStream_t stream, int passes, int untimed, const std::function<void()>& work) {
  cudaEvent_t begin, end;
  DSV3_CUDA_CHECK(cudaEventCreate(&begin));
  DSV3_CUDA_CHECK(cudaEventCreate(&end));
  float best_ms = 1e30f;
  for (int pass = 0; pass < passes; ++pass) {
    DSV3_CUDA_CHECK(cudaEventRecord(begin, stream));
    work();
    DSV3_CUDA_CHECK(cudaEventRecord(end, stream));
    DSV3_CUDA_CHECK(cudaEventSynchronize(end));
    float ms = 0.0f;
    DSV3_CUDA_CHECK(cudaEventElapsedTime(&ms, begin, end));
    if (pass >= untimed) best_ms = std::min(best_ms, ms);
  }
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  return double(best_ms) * 1e-3;
}

}  // namespace

namespace cuda {

bool device_present() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

}  // namespace cuda

using cuda::matrix;

CudaBackend::CudaBackend(const BackendOptions& options) : options_(options) {
  if (!cuda::device_present()) fail("--device cuda: no CUDA device is visible to this process");
  DSV3_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, 0));
  pool_ = std::make_shared<cuda::DevicePool>();
  gemm_ = std::make_unique<cuda::GemmRunner>(stream_);
  staging_ = cuda::pinned_alloc(kStagingBytes);
  blocks_done_ = cuda::device_alloc(sizeof(unsigned), "a launch's count of finished blocks");
  DSV3_CUDA_CHECK(cudaMemsetAsync(blocks_done_.data(), 0, sizeof(unsigned), stream_));
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  for (LaunchedStep& step : launched_) cudaEventDestroy(step.done);
  for (cudaEvent_t event : free_events_) cudaEventDestroy(event);
  gemm_.reset();
  cudaStreamDestroy(stream_);
}

void CudaBackend::copy_to_device(void* dst, const void* src, size_t n_bytes) {
  if (n_bytes == 0) return;
  // A recorded copy would read the staging region again at every replay, long since reused.
  if (capturing_) fail("--device cuda: an op uploaded host values while a step graph was being recorded");
  if (n_bytes > kStagingBytes / 4) {  // large (weights of tests, uploads at load): pageable is fine
    DSV3_CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyHostToDevice, stream_));
    return;
  }
  const size_t aligned = (n_bytes + 255) / 256 * 256;
  if (staging_used_ + aligned > kStagingBytes) {
    synchronize();  // every queued copy out of the ring has finished
    staging_used_ = 0;
  }
  void* region = static_cast<uint8_t*>(staging_.data()) + staging_used_;
  staging_used_ += aligned;
  std::memcpy(region, src, n_bytes);
  DSV3_CUDA_CHECK(cudaMemcpyAsync(dst, region, n_bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::synchronize() { DSV3_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

double CudaBackend::measure_read_bandwidth() {
  constexpr size_t kBytes = size_t(4) << 30;
  Buffer data = cuda::device_alloc(kBytes, "the bandwidth probe"), sink = cuda::device_alloc(4096, "the bandwidth probe");
  DSV3_CUDA_CHECK(cudaMemsetAsync(data.data(), 1, kBytes, stream_));
  const double seconds = best_seconds(stream_, 5, 0, [&] {
    cuda::launch_read_probe(data.data(), kBytes, static_cast<float*>(sink.data()), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
  });
  return double(kBytes) / seconds;
}

double CudaBackend::measure_matmul_rate() {
  // cuBLASLt's BF16 product on 8192^3, the largest of prefill's shapes and then some, over random
  // values (products of zeros run faster than real data).
  constexpr int64_t n = 8192;
  std::vector<uint16_t> values(size_t(n * n));
  uint32_t state = 12345;
  for (uint16_t& v : values) v = uint16_t(0x3c00 + ((state = state * 1664525u + 1013904223u) >> 22));  // (0.008, 2)
  Buffer a = scratch(values.size() * 2), b = scratch(values.size() * 2), c = scratch(values.size() * 4);
  DSV3_CUDA_CHECK(cudaMemcpy(a.data(), values.data(), values.size() * 2, cudaMemcpyHostToDevice));
  DSV3_CUDA_CHECK(cudaMemcpy(b.data(), values.data(), values.size() * 2, cudaMemcpyHostToDevice));
  // The first pass plans and warms up.
  const double seconds = best_seconds(stream_, 5, 1, [&] {
    gemm_->bf16(static_cast<const uint16_t*>(a.data()), static_cast<const uint16_t*>(b.data()), n, n, n,
                static_cast<float*>(c.data()), n, false);
  });
  return 2.0 * double(n) * double(n) * double(n) / seconds;
}

ActBuffer CudaBackend::alloc(int64_t rows, int64_t cols) {
  Buffer memory = pool_->allocate(size_t(rows * cols) * sizeof(float));
  Act view{memory.data(), rows, cols, cols, 4};
  return {std::move(memory), view};
}

ActBuffer CudaBackend::upload(std::span<const float> values, int64_t rows, int64_t cols) {
  DSV3_ASSERT(int64_t(values.size()) == rows * cols);
  ActBuffer b = alloc(rows, cols);
  copy_to_device(b.view.data, values.data(), values.size_bytes());
  return b;
}

void CudaBackend::download(const Act& src, float* dst) {
  // Through pinned memory: a copy into pageable memory is staged by the driver in small pieces, and
  // a decode step's logits (655 KB for Moonlight) are downloaded every step.
  const size_t n_bytes = size_t(src.rows * src.cols) * 4;
  // Every download has finished (synchronised below) when the block is replaced.
  if (n_bytes > download_.n_bytes()) download_ = cuda::pinned_alloc(n_bytes);
  if (src.rows > 0)
    DSV3_CUDA_CHECK(cudaMemcpy2DAsync(download_.data(), size_t(src.cols) * 4, src.data, size_t(src.stride) * 4,
                                      size_t(src.cols) * 4, size_t(src.rows), cudaMemcpyDeviceToHost, stream_));
  synchronize();
  std::memcpy(dst, download_.data(), n_bytes);
}

Buffer CudaBackend::alloc_cache(const LatentCacheLayout& layout) {
  return cuda::device_alloc(size_t(layout.n_layers * layout.layer_elems() * cache_value_bytes()), "the latent KV cache");
}

TensorView CudaBackend::place(const TensorView& stored) {
  Buffer copy = cuda::device_alloc(stored.n_bytes, stored.name.c_str());
  DSV3_CUDA_CHECK(cudaMemcpy(copy.data(), stored.data, stored.n_bytes, cudaMemcpyHostToDevice));
  TensorView placed = stored;
  placed.data = static_cast<const uint8_t*>(copy.data());
  placed_.push_back(std::move(copy));
  return placed;
}

// Ids are the model's to check against the vocabulary: the device cannot report a bad one.
void CudaBackend::embed(const TensorView& table, const Indices& ids, const Act& fed, const Act& out) {
  cuda::launch_embed(cuda::weight(table), ids.data, matrix(fed), matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::gather_rows(const Act& x, const Indices& rows, const Act& out) {
  cuda::launch_gather_rows(matrix(x), rows.data, matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::pick_tokens(const Act& logits, const Indices& draws, bool cut_rows, const Act& out) {
  const Buffer parts = scratch(cuda::pick_tokens_scratch_bytes(logits.rows, logits.cols));
  cuda::launch_pick_tokens(matrix(logits), draws.data, cut_rows, parts.data(), matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::rmsnorm(const Act& x, const Act& weight, float eps, const Act& out) {
  cuda::launch_rmsnorm(matrix(x), static_cast<const float*>(weight.data), eps, matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::add_rmsnorm(const Act& x, const Act& y, const Act& weight, float eps, const Act& out) {
  cuda::launch_add_rmsnorm(matrix(x), matrix(y), static_cast<const float*>(weight.data), eps, matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::linear(const Act& x, const LinearWeight& w, const Act& out) { linear_with(LinearPath::Auto, x, w, out); }

void CudaBackend::linear_pair(const Act& x, const LinearWeight& w_a, const Act& out_a, const LinearWeight& w_b,
                              const Act& out_b) {
  const cuda::DeviceWeight a = cuda::weight(w_a), b = cuda::weight(w_b);
  // Both on the streaming path (what linear() picks for them) and alike enough for one launch.
  if (!streams(x, w_a) || !streams(x, w_b) || !cuda::linear_small_pair_ok(a, b, matrix(x)))
    return Backend::linear_pair(x, w_a, out_a, w_b, out_b);
  DSV3_ASSERT(x.cols == w_a.in_features() && out_a.cols == w_a.out_features() && out_b.cols == w_b.out_features() &&
                  x.rows == out_a.rows && x.rows == out_b.rows,
              "linear_pair ", w_a.weight.name, ", ", w_b.weight.name);
  cuda::launch_linear_small_pair(a, matrix(out_a), b, matrix(out_b), matrix(x), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::linear_add_rmsnorm(const Act& x, const LinearWeight& w, const Act& out, const ResidualNorm& then) {
  if (!streams(x, w) || !cuda::last_block_norm_fits(x.rows)) return Backend::linear_add_rmsnorm(x, w, out, then);
  DSV3_ASSERT(x.cols == w.in_features() && out.cols == w.out_features() && x.rows == out.rows &&
                  then.residual.rows == x.rows && then.residual.cols == out.cols,
              "linear_add_rmsnorm ", w.weight.name);
  cuda::launch_linear_small_add_rmsnorm(cuda::weight(w), matrix(x), matrix(out), cuda::residual_norm(then),
                                        blocks_done(), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::linear_with(LinearPath path, const Act& x, const LinearWeight& w, const Act& out) {
  DSV3_ASSERT(x.cols == w.in_features() && out.cols == w.out_features() && x.rows == out.rows, "linear ",
              w.weight.name);
  const bool tensor_core_dtype = w.weight.dtype == DType::BF16 || w.weight.dtype == DType::F8_E4M3;
  if (path == LinearPath::Auto)
    path = streams(x, w)                                  ? LinearPath::Small
           : cuda::few_rows_ok(cuda::weight(w), matrix(x)) ? LinearPath::Few
           : options_.fp8_activations                      ? LinearPath::Gemm
                                                           : LinearPath::Gemm16;
  if (path == LinearPath::Small) {
    cuda::launch_linear_small(cuda::weight(w), matrix(x), matrix(out), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    return;
  }
  if (path == LinearPath::Few) {
    DSV3_ASSERT(cuda::few_rows_ok(cuda::weight(w), matrix(x)), "few-row product for weight ", w.weight.name);
    cuda::launch_few_rows(cuda::weight(w), matrix(x), matrix(out), sm_count_, stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    return;
  }
  if (path == LinearPath::Grouped) {
    const cuda::DeviceWeight shape = cuda::weight(w);
    DSV3_ASSERT(cuda::grouped_linear_ok(shape, matrix(x)), "grouped product for weight ", w.weight.name);
    const Buffer parts = scratch(cuda::grouped_linear_scratch_bytes(shape, matrix(x), x.rows, 1));
    cuda::launch_grouped_linear({nullptr, 0, 0, shape}, shape, nullptr, 1, matrix(x), nullptr, matrix(out),
                                parts.data(), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    return;
  }
  DSV3_ASSERT(tensor_core_dtype, "cuBLASLt path for ", dtype_name(w.weight.dtype), " weight ", w.weight.name);
  linear_gemm(x, w, out, path == LinearPath::Gemm);
}

void CudaBackend::linear_gemm(const Act& x, const LinearWeight& w, const Act& out, bool allow_fp8) {
  const int64_t M = x.rows, N = w.out_features(), K = w.in_features();
  if (M == 0) return;
  auto* y = static_cast<float*>(out.data);
  if (allow_fp8 && w.is_fp8() && w.block_out == 128 && w.block_in == 128 && fp8_gemm_available(out, K)) {
    const Fp8ProductRows product = fp8_product_rows(out);
    const bool padded = product.rows != M;
    const int64_t k_groups = (K + 127) / 128;
    Buffer codes = scratch(size_t(product.rows * K));
    Buffer scales = scratch(size_t(k_groups * product.rows) * sizeof(float));
    Buffer padded_y = padded ? scratch(size_t(product.rows * N) * sizeof(float)) : Buffer();
    cuda::launch_quantize_fp8(matrix(x), static_cast<uint8_t*>(codes.data()), static_cast<float*>(scales.data()),
                              product.rows, stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    float* d = padded ? static_cast<float*>(padded_y.data()) : y;
    gemm_->fp8_block_scaled(static_cast<const uint8_t*>(codes.data()), static_cast<const float*>(scales.data()),
                            w.weight.data, reinterpret_cast<const float*>(w.scale_inv.data), product.rows, N, K, d,
                            product.ld);
    if (padded)
      DSV3_CUDA_CHECK(cudaMemcpy2DAsync(y, size_t(out.stride) * sizeof(float), d, size_t(product.ld) * sizeof(float),
                                        size_t(N) * sizeof(float), size_t(M), cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  if (w.weight.dtype == DType::BF16) {
    // Activations as a high and a low BF16 part against the BF16 weight as stored: routing and the
    // fixtures' 3e-2 need more than BF16-rounded activations give (6e-2 on one fixture).
    Buffer x_high = scratch(size_t(M * K) * 2), x_low = scratch(size_t(M * K) * 2);
    cuda::launch_to_bf16_pair(matrix(x), static_cast<uint16_t*>(x_high.data()), static_cast<uint16_t*>(x_low.data()),
                              stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    const auto* w_bf16 = reinterpret_cast<const uint16_t*>(w.weight.data);
    gemm_->bf16(static_cast<const uint16_t*>(x_high.data()), w_bf16, M, N, K, y, out.stride, false);
    gemm_->bf16(static_cast<const uint16_t*>(x_low.data()), w_bf16, M, N, K, y, out.stride, true);
    return;
  }
  // FP8 weights: their real values (codes times block scales) rounded once to FP16, against x in FP16
  // at one power of two: 11 bits of mantissa each, 2^-12 an element on average, one product. (As BF16
  // with x in two BF16 parts the weight kept 8 bits, and the products were two.) Scaled weights below
  // FP16's normal range (2^-14) keep its absolute step of 2^-24, far below the weights that count.
  Buffer w_f16 = scratch(size_t(N * K) * 2), x_f16 = scratch(size_t(M * K) * 2);
  Buffer scale = scratch(sizeof(cuda::HalfScale));
  auto* half_scale = static_cast<cuda::HalfScale*>(scale.data());
  cuda::launch_weight_to_f16(cuda::weight(w), static_cast<uint16_t*>(w_f16.data()), stream_);
  cuda::launch_to_f16_scaled(matrix(x), static_cast<uint16_t*>(x_f16.data()), half_scale, stream_);
  DSV3_CUDA_CHECK_LAUNCH();
  gemm_->f16(static_cast<const uint16_t*>(x_f16.data()), static_cast<const uint16_t*>(w_f16.data()), M, N, K,
             &half_scale->unscale, y, out.stride);
}

bool CudaBackend::fp8_gemm_available(const Act& out, int64_t K) {
  const Fp8ProductRows product = fp8_product_rows(out);
  return gemm_->fp8_supported(product.rows, out.cols, K, product.ld);
}

const float* CudaBackend::float_weight(const LinearWeight& w) {
  auto it = float_weights_.find(w.weight.data);
  if (it == float_weights_.end()) {
    Buffer copy = cuda::device_alloc(size_t(w.out_features() * w.in_features()) * 4, w.weight.name.c_str());
    cuda::launch_weight_to_f32(cuda::weight(w), static_cast<float*>(copy.data()), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    // Kernels may read weights before their wait_for_inputs() (chained_launch.cuh: only weights no
    // kernel of the stream is still writing), so the copy is finished here, once, outside any step
    // graph (a key's first step runs directly).
    synchronize();
    it = float_weights_.emplace(w.weight.data, std::move(copy)).first;
  }
  return static_cast<const float*>(it->second.data());
}

void CudaBackend::add(const Act& x, const Act& y) {
  cuda::launch_add(matrix(x), matrix(y), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::silu_mul(const Act& gate, const Act& up, const Act& out) {
  cuda::launch_silu_mul(matrix(gate), matrix(up), matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::rope(const Act& x, int64_t head_dim, int64_t offset, const RopeTable& table,
                       const Indices& positions) {
  cuda::launch_rope(matrix(x), head_dim, offset, static_cast<const float*>(table.inv_freq.view.data),
                    table.inv_freq.view.cols, table.attention_factor, positions.data, stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv3
