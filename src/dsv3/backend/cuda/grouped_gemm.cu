// Grouped products on tensor cores: the experts of a prefill-sized MoE batch in one launch, each
// expert's weight multiplied into its own rows, without the host learning how many rows each has.
//
// A block computes a kBM x kBN tile of y. Its rows are found from the group offsets on the device
// (grouped_tile.cuh); groups of a few rows each (decode batches) take grouped_few.cu, and weights
// that grouped_wgmma.cu takes (every DeepSeek model's experts) go there. Operands go
// through shared memory in BF16 for mma.sync m16n8k16: the weight exactly (BF16 as stored; FP8
// codes widened and multiplied by their block's scale, then rounded once, as the dequantising path
// does), x as a high and a low BF16 part (x = high + low to 16 bits of mantissa), both multiplied
// into float32 sums, so the product is as accurate as float32 activations against a BF16 weight.
#include <cuda_bf16.h>

#include "dsv3/backend/cuda/cuda_check.h"
#include "dsv3/backend/cuda/grouped_few.h"
#include "dsv3/backend/cuda/grouped_tile.cuh"
#include "dsv3/backend/cuda/grouped_wgmma.h"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/mma.cuh"
#include "dsv3/backend/cuda/weight_element.cuh"

namespace dsv3::cuda {
namespace {

constexpr int kBM = 64, kBN = 128, kBK = 64, kThreads = 256;
// Shared rows are kBK + 8 BF16 (144 bytes) apart: the 8 rows an ldmatrix reads fall in distinct banks.
constexpr int kLd = kBK + 8;

struct alignas(16) TileBuffers {
  __nv_bfloat16 a_high[kBM][kLd], a_low[kBM][kLd], b[kBN][kLd];
};

// Global memory to registers, then registers to shared memory, for one kBK slice of k. Each
// thread loads kAFloats consecutive values of one row of x and kBElems of one weight row: the next
// slice's loads are in flight while the current one is multiplied.
constexpr int kAFloats = kBM * kBK / kThreads, kBElems = kBN * kBK / kThreads;

template <DType D>
struct TileLoader {
  static constexpr int kBytes = D == DType::F8_E4M3 ? 1 : 2;  // a weight element's
  static constexpr int kVectors = kBElems * kBytes / 16;
  const float* a_src = nullptr;
  int a_row, a_col;
  float4 a[kAFloats / 4];
  const uint8_t* b_src = nullptr;
  const float* b_scales = nullptr;  // the row's scale row (FP8)
  int64_t block_in = 128;
  int b_row, b_col;
  uint4 b[kVectors];
  float b_scale = 1.0f;

  __device__ void load(int64_t k0) {
#pragma unroll
    for (int i = 0; i < kAFloats / 4; ++i)
      a[i] = a_src ? *reinterpret_cast<const float4*>(a_src + k0 + 4 * i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int v = 0; v < kVectors; ++v)
      b[v] = b_src ? load_weight_vector(b_src + k0 * kBytes + 16 * v) : make_uint4(0, 0, 0, 0);
    if (D == DType::F8_E4M3 && b_src) b_scale = b_scales[(k0 + b_col) / block_in];
  }

  __device__ void store(TileBuffers& t) const {
#pragma unroll
    for (int i = 0; i < kAFloats / 8; ++i) {
      const float4 p = a[2 * i], q = a[2 * i + 1];
      const float x[8] = {p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w};
      uint4 high, low;
      split_bf16(x[0], x[1], high.x, low.x), split_bf16(x[2], x[3], high.y, low.y);
      split_bf16(x[4], x[5], high.z, low.z), split_bf16(x[6], x[7], high.w, low.w);
      *reinterpret_cast<uint4*>(&t.a_high[a_row][a_col + 8 * i]) = high;
      *reinterpret_cast<uint4*>(&t.a_low[a_row][a_col + 8 * i]) = low;
    }
#pragma unroll
    for (int v = 0; v < kVectors; ++v) {
      if constexpr (D == DType::F8_E4M3) {
        __nv_bfloat162 w[8];
#pragma unroll
        for (int g = 0; g < 4; ++g) {
          float f[4];
          WeightVector<DType::F8_E4M3>::widen(b[v], g, f);
          w[2 * g] = __floats2bfloat162_rn(f[0] * b_scale, f[1] * b_scale);
          w[2 * g + 1] = __floats2bfloat162_rn(f[2] * b_scale, f[3] * b_scale);
        }
        *reinterpret_cast<uint4*>(&t.b[b_row][b_col + 16 * v]) = *reinterpret_cast<const uint4*>(&w[0]);
        *reinterpret_cast<uint4*>(&t.b[b_row][b_col + 16 * v + 8]) = *reinterpret_cast<const uint4*>(&w[4]);
      } else {
        *reinterpret_cast<uint4*>(&t.b[b_row][b_col + 8 * v]) = b[v];
      }
    }
  }
};

// grid (column tiles, row tiles the groups could need). Eight warps, 2 x 4, each 32 x 32 of the tile.
template <DType D>
__global__ void __launch_bounds__(kThreads) grouped_linear_kernel(GroupedWeights weights, const int32_t* offsets,
                                                                  int n_groups, DeviceMatrix x, const int32_t* x_rows,
                                                                  DeviceMatrix y) {
  extern __shared__ TileBuffers buffers[];  // two: one multiplied while the next is stored
  const TileRows rows = find_tile<kBM>(offsets, n_groups, y.rows, int(blockIdx.y));
  if (rows.group < 0) return;
  const DeviceWeight w = weights.table ? weights.table[int64_t(rows.group) * weights.stride + weights.index] : weights.one;
  const int64_t K = w.cols, N = w.rows, n0 = int64_t(blockIdx.x) * kBN;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, wm = warp / 4, wn = warp % 4;

  TileLoader<D> loader;
  loader.a_row = tid / (kBK / kAFloats), loader.a_col = tid % (kBK / kAFloats) * kAFloats;
  if (const int64_t slot = rows.begin + loader.a_row; slot < rows.end)
    loader.a_src = x.data + int64_t(x_rows ? x_rows[slot] : slot) * x.stride + loader.a_col;
  loader.b_row = tid / (kBK / kBElems), loader.b_col = tid % (kBK / kBElems) * kBElems;
  if (const int64_t n = n0 + loader.b_row; n < N) {
    loader.b_src = static_cast<const uint8_t*>(w.data) + (n * K + loader.b_col) * TileLoader<D>::kBytes;
    if constexpr (D == DType::F8_E4M3) {
      loader.b_scales = w.scale_inv + n / w.block_out * ((K + w.block_in - 1) / w.block_in);
      loader.block_in = w.block_in;
    }
  }

  float acc[2][4][4] = {};
  const int64_t n_slices = K / kBK;
  loader.load(0);
  loader.store(buffers[0]);
  __syncthreads();
  for (int64_t s = 0; s < n_slices; ++s) {
    if (s + 1 < n_slices) loader.load((s + 1) * kBK);
    const TileBuffers& t = buffers[s % 2];
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 16) {
      uint32_t high[2][4], low[2][4], b[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int r = wm * 32 + mi * 16 + lane % 16, c = ks + lane / 16 * 8;
        ldmatrix_x4(high[mi], &t.a_high[r][c]);
        ldmatrix_x4(low[mi], &t.a_low[r][c]);
      }
#pragma unroll
      for (int p = 0; p < 2; ++p)
        ldmatrix_x4(b[p], &t.b[wn * 32 + p * 16 + lane % 8 + lane / 16 * 8][ks + lane / 8 % 2 * 8]);
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const uint32_t b0 = b[ni / 2][ni % 2 * 2], b1 = b[ni / 2][ni % 2 * 2 + 1];
          mma_bf16(acc[mi][ni], high[mi], b0, b1);
          mma_bf16(acc[mi][ni], low[mi], b0, b1);
        }
    }
    if (s + 1 < n_slices) loader.store(buffers[(s + 1) % 2]);
    __syncthreads();
  }

#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = rows.begin + wm * 32 + mi * 16 + lane / 4 + half * 8;
      if (row >= rows.end) continue;
      float* out = y.data + row * y.stride;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int64_t col = n0 + wn * 32 + ni * 8 + lane % 4 * 2;
        if (col < N) out[col] = acc[mi][ni][2 * half];
        if (col + 1 < N) out[col + 1] = acc[mi][ni][2 * half + 1];
      }
    }
}

template <DType D, typename... Args>
void launch(dim3 grid, cudaStream_t stream, Args... args) {
  constexpr size_t kSharedBytes = 2 * sizeof(TileBuffers);  // beyond the 48 KiB a kernel gets unasked
  static const bool configured = [] {
    DSV3_CUDA_CHECK(cudaFuncSetAttribute(grouped_linear_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(kSharedBytes)));
    return true;
  }();
  (void)configured;
  grouped_linear_kernel<D><<<grid, kThreads, kSharedBytes, stream>>>(args...);
}

}  // namespace

bool grouped_linear_ok(const DeviceWeight& shape, DeviceMatrix x) {
  auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool dtype_ok = shape.dtype == DType::BF16 || (shape.dtype == DType::F8_E4M3 && shape.block_in % kBElems == 0);
  return dtype_ok && shape.cols % kBK == 0 && aligned16(shape.data) && aligned16(x.data) && x.stride % 4 == 0;
}

// Groups of a few rows take grouped_few.cu, of many grouped_wgmma.cu where the weights suit it; this
// file's kernel takes the rest.
namespace {
bool takes_warpgroup_tiles(const DeviceWeight& shape, int64_t rows, int n_groups) {
  return !grouped_few_ok(shape, rows, n_groups) && grouped_wgmma_ok(shape);
}
}  // namespace

size_t grouped_linear_scratch_bytes(const DeviceWeight& shape, DeviceMatrix x, int64_t rows, int n_groups) {
  return takes_warpgroup_tiles(shape, rows, n_groups) ? grouped_wgmma_scratch_bytes(shape, x) : 0;
}

bool grouped_gate_up_ok(const DeviceWeight& shape, int64_t rows, int n_groups) {
  return grouped_few_ok(shape, rows, n_groups) || takes_warpgroup_tiles(shape, rows, n_groups);
}

void launch_grouped_gate_up(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets,
                            int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix hidden, void* scratch,
                            cudaStream_t stream) {
  if (hidden.rows == 0 || shape.rows == 0) return;
  if (grouped_few_ok(shape, hidden.rows, n_groups))
    launch_grouped_few(weights, shape, offsets, n_groups, x, x_rows, hidden, true, stream);
  else
    launch_grouped_wgmma(weights, shape, offsets, n_groups, x, x_rows, hidden, true, scratch, stream);
}

void launch_grouped_linear(const GroupedWeights& weights, const DeviceWeight& shape, const int32_t* offsets,
                           int n_groups, DeviceMatrix x, const int32_t* x_rows, DeviceMatrix y, void* scratch,
                           cudaStream_t stream) {
  if (y.rows == 0 || shape.rows == 0) return;
  if (grouped_few_ok(shape, y.rows, n_groups)) {
    launch_grouped_few(weights, shape, offsets, n_groups, x, x_rows, y, false, stream);
    return;
  }
  if (takes_warpgroup_tiles(shape, y.rows, n_groups)) {
    launch_grouped_wgmma(weights, shape, offsets, n_groups, x, x_rows, y, false, scratch, stream);
    return;
  }
  const dim3 grid(unsigned((shape.rows + kBN - 1) / kBN), unsigned(grouped_row_tiles(y.rows, n_groups, kBM)));
  if (shape.dtype == DType::F8_E4M3)
    launch<DType::F8_E4M3>(grid, stream, weights, offsets, n_groups, x, x_rows, y);
  else
    launch<DType::BF16>(grid, stream, weights, offsets, n_groups, x, x_rows, y);
}

}  // namespace dsv3::cuda
