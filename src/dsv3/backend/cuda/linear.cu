// Linear layers for few rows (the decode path, where the work is reading the weight: linear_small.cuh)
// and the conversions that feed cuBLASLt for many rows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "dsv3/backend/cuda/fp16_parts.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/linear_small.cuh"
#include "dsv3/backend/cuda/residual_norm.cuh"

namespace dsv3::cuda {
namespace {

// The residual add and norm after a sublayer's last projection (launch_linear_small_add_rmsnorm):
// a decode step's attention output projection and dense FFNs end with it, a launch fewer each
// (bench/RESULTS.md has what these last-block epilogues gave).
struct ThenNorm {
  static constexpr bool kLastBlock = true;
  using Early = LastBlockNormWeights;
  DeviceResidualNorm norm;
  unsigned* blocks_done;
  __device__ Early early(int64_t cols) const { return Early(norm.weight, cols); }
  __device__ void run(const Early& weights, const DeviceMatrix& y, int64_t rows) const {
    static_assert(kRowWarps * 32 == kNormThreads);
    last_block_add_rmsnorm(norm, weights, y.data, y.stride, rows);
  }
};

void launch_by_tokens(int64_t rows, const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y, const DeviceWeight* w2,
                      DeviceMatrix y2, cudaStream_t stream) {
  const NothingAfter none{};
  if (rows == 1) return launch_tokens<1>(w, x, y, w2, y2, none, 0, stream);
  if (rows <= 4) return launch_tokens<4>(w, x, y, w2, y2, none, 0, stream);
  if (rows <= 8) return launch_tokens<8>(w, x, y, w2, y2, none, 0, stream);
  launch_tokens<16>(w, x, y, w2, y2, none, 0, stream);
}

__global__ void to_bf16_pair_kernel(DeviceMatrix x, __nv_bfloat16* high, __nv_bfloat16* low) {
  const float* xr = x.data + blockIdx.x * x.stride;
  __nv_bfloat16* h = high + blockIdx.x * x.cols;
  __nv_bfloat16* l = low + blockIdx.x * x.cols;
  for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) {
    const __nv_bfloat16 top = __float2bfloat16(xr[c]);
    h[c] = top;
    l[c] = __float2bfloat16(xr[c] - __bfloat162float(top));
  }
}

// The bits of the largest magnitude of x's rows blockIdx.x, blockIdx.x + gridDim.x, ... into
// scale->block_max_bits[blockIdx.x]: non-negative floats order as their bits do.
__global__ void max_magnitude_kernel(DeviceMatrix x, HalfScale* scale) {
  wait_for_inputs();
  float m = 0.0f;
  for (int64_t r = blockIdx.x; r < x.rows; r += gridDim.x)
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) m = fmaxf(m, fabsf(x.data[r * x.stride + c]));
  m = block_max(m);
  if (threadIdx.x == 0) scale->block_max_bits[blockIdx.x] = __float_as_uint(m);
}

// out = fp16(x 2^s) [rows, cols] contiguous, s as scale_exponent gives it for the whole of x (the
// largest of max_magnitude_kernel's slots, one a block of the same grid), and scale->unscale = 2^-s.
__global__ void to_f16_scaled_kernel(DeviceMatrix x, HalfScale* scale, __half* out) {
  wait_for_inputs();
  unsigned bits = 0;
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) bits = max(bits, scale->block_max_bits[b]);
  const int s = scale_exponent(__float_as_uint(block_max(__uint_as_float(bits))));
  const float up = power_of_two(s);
  if (blockIdx.x == 0 && threadIdx.x == 0) scale->unscale = power_of_two(-s), scale->zero = 0.0f;
  for (int64_t r = blockIdx.x; r < x.rows; r += gridDim.x)
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x)
      out[r * x.cols + c] = __float2half_rn(x.data[r * x.stride + c] * up);
}

__global__ void weight_to_f16_kernel(DeviceWeight w, __half* out) {
  wait_for_inputs();  // out is scratch that the kernel ahead may still read
  const int64_t n = w.rows * w.cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2half_rn(weight_element(w, i / w.cols, i % w.cols));
}

// FP8 to FP16 sixteen elements a thread: one 16-byte load and two 16-byte stores (the element-wise
// kernel above is bound by its index arithmetic). Same rounding: scale in float32, then to FP16.
__global__ void fp8_to_f16_kernel(DeviceWeight w, uint4* out) {
  wait_for_inputs();  // as weight_to_f16_kernel
  const int64_t row_vectors = w.cols / 16, n = w.rows * row_vectors;
  const int64_t scale_cols = (w.cols + w.block_in - 1) / w.block_in;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / row_vectors, col = i % row_vectors * 16;
    const uint4 codes = static_cast<const uint4*>(w.data)[i];
    const float scale = w.scale_inv[row / w.block_out * scale_cols + col / w.block_in];
    __half2 pairs[8];
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      float f[4];
      WeightVector<DType::F8_E4M3>::widen(codes, g, f);
      pairs[2 * g] = __floats2half2_rn(f[0] * scale, f[1] * scale);
      pairs[2 * g + 1] = __floats2half2_rn(f[2] * scale, f[3] * scale);
    }
    out[2 * i] = *reinterpret_cast<const uint4*>(&pairs[0]);
    out[2 * i + 1] = *reinterpret_cast<const uint4*>(&pairs[4]);
  }
}

__global__ void weight_to_f32_kernel(DeviceWeight w, float* out) {
  const int64_t n = w.rows * w.cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = weight_element(w, i / w.cols, i % w.cols);
}

// One block of 128 threads a (row, 128-column group).
__global__ void quantize_fp8_kernel(DeviceMatrix x, __nv_fp8_storage_t* codes, float* scales, int64_t scale_stride) {
  __shared__ float warp_max[4];
  const int64_t row = blockIdx.y, col = int64_t(blockIdx.x) * 128 + threadIdx.x;
  const float v = col < x.cols ? x.data[row * x.stride + col] : 0.0f;
  float amax = fabsf(v);
  for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = fmaxf(fmaxf(warp_max[0], warp_max[1]), fmaxf(warp_max[2], warp_max[3]));
  const float scale = fmaxf(amax, 1e-12f) / 448.0f;  // 448: the largest finite e4m3 value
  if (col < x.cols) codes[row * x.cols + col] = __nv_cvt_float_to_fp8(v / scale, __NV_SATFINITE, __NV_E4M3);
  if (threadIdx.x == 0) scales[int64_t(blockIdx.x) * scale_stride + row] = scale;
}

}  // namespace

bool vector_rows_ok(const DeviceWeight& w, const void* x, int64_t stride) {
  auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return w.cols % 16 == 0 && aligned16(w.data) && aligned16(x) && stride % 4 == 0 &&
         (w.dtype != DType::F8_E4M3 || w.block_in % 16 == 0);
}

void launch_linear_small(const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y, cudaStream_t stream) {
  if (x.rows > 0 && w.rows > 0) launch_by_tokens(x.rows, w, x, y, nullptr, DeviceMatrix{}, stream);
}

void launch_linear_small_add_rmsnorm(const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y,
                                     const DeviceResidualNorm& then, unsigned* blocks_done, cudaStream_t stream) {
  static_assert(kLastBlockNormRows == 1);  // kTokens 1
  if (w.rows > 0) launch_tokens<1>(w, x, y, nullptr, DeviceMatrix{}, ThenNorm{then, blocks_done}, 0, stream);
}

bool linear_small_pair_ok(const DeviceWeight& w_a, const DeviceWeight& w_b, DeviceMatrix x) {
  return w_a.dtype == w_b.dtype && w_a.cols == w_b.cols &&
         vector_rows_ok(w_a, x.data, x.stride) == vector_rows_ok(w_b, x.data, x.stride);
}

void launch_linear_small_pair(const DeviceWeight& w_a, DeviceMatrix y_a, const DeviceWeight& w_b, DeviceMatrix y_b,
                              DeviceMatrix x, cudaStream_t stream) {
  if (x.rows > 0 && w_a.rows > 0 && w_b.rows > 0)
    launch_by_tokens(x.rows, w_a, x, y_a, &w_b, y_b, stream);
}

void launch_to_bf16_pair(DeviceMatrix x, uint16_t* high, uint16_t* low, cudaStream_t stream) {
  if (x.rows > 0)
    to_bf16_pair_kernel<<<unsigned(x.rows), 256, 0, stream>>>(x, reinterpret_cast<__nv_bfloat16*>(high),
                                                              reinterpret_cast<__nv_bfloat16*>(low));
}

void launch_to_f16_scaled(DeviceMatrix x, uint16_t* out, HalfScale* scale, cudaStream_t stream) {
  if (x.rows == 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>(x.rows, kMaxHalfScaleBlocks));
  launch_chained(max_magnitude_kernel, blocks, 256, 0, stream, x, scale);
  launch_chained(to_f16_scaled_kernel, blocks, 256, 0, stream, x, scale, reinterpret_cast<__half*>(out));
}

void launch_weight_to_f16(const DeviceWeight& w, uint16_t* out, cudaStream_t stream) {
  if (w.dtype == DType::F8_E4M3 && w.cols % 16 == 0 && w.block_in % 16 == 0 &&
      reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    const int64_t blocks = std::min<int64_t>((w.rows * w.cols / 16 + 255) / 256, 4096);
    if (blocks > 0) launch_chained(fp8_to_f16_kernel, unsigned(blocks), 256, 0, stream, w, reinterpret_cast<uint4*>(out));
    return;
  }
  const int64_t blocks = std::min<int64_t>((w.rows * w.cols + 255) / 256, 65536);
  if (blocks > 0) launch_chained(weight_to_f16_kernel, unsigned(blocks), 256, 0, stream, w, reinterpret_cast<__half*>(out));
}

void launch_weight_to_f32(const DeviceWeight& w, float* out, cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>((w.rows * w.cols + 255) / 256, 65536);
  if (blocks > 0) weight_to_f32_kernel<<<unsigned(blocks), 256, 0, stream>>>(w, out);
}

void launch_quantize_fp8(DeviceMatrix x, uint8_t* codes, float* scales, int64_t scale_stride, cudaStream_t stream) {
  if (x.rows == 0) return;
  const dim3 grid(unsigned((x.cols + 127) / 128), unsigned(x.rows));
  quantize_fp8_kernel<<<grid, 128, 0, stream>>>(x, reinterpret_cast<__nv_fp8_storage_t*>(codes), scales, scale_stride);
}

}  // namespace dsv3::cuda
