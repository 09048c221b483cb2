// argmax_rows on the GPU: a greedy step's tokens picked from logits that never leave the device
// (a row of Moonlight's is 640 KB, which the host took longer to download and scan than the GPU to
// run a layer). util/argmax.h's rule: the largest value above -inf, the first of equal ones, else 0.
//
// Two launches: blocks of the first take kSpan values of a row each, every thread's loads in flight
// at once, and write their best (value, index); the second picks each row's best of those.
#include <cfloat>
#include <climits>

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256, kPerThread = 32, kSpan = kThreads * kPerThread;

struct Best {
  float value;
  int index;  // INT_MAX: none yet
};

__device__ inline void take(Best& best, float value, int index) {
  if (value > best.value || (value == best.value && value > -INFINITY && index < best.index)) best = {value, index};
}

__device__ inline void take_lanes(Best& best) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float value = __shfl_xor_sync(0xffffffffu, best.value, offset);
    const int index = __shfl_xor_sync(0xffffffffu, best.index, offset);
    take(best, value, index);
  }
}

// grid (rows, spans): parts[row * spans + span] = the best of the span's values.
__global__ void __launch_bounds__(kThreads) argmax_spans_kernel(DeviceMatrix x, Best* parts) {
  wait_for_inputs();
  const float* row = x.data + int64_t(blockIdx.x) * x.stride;
  const int64_t first = int64_t(blockIdx.y) * kSpan;
  Best best{-INFINITY, INT_MAX};
  float values[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t c = first + i * kThreads + threadIdx.x;
    values[i] = c < x.cols ? row[c] : -INFINITY;
  }
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) take(best, values[i], int(first + i * kThreads + threadIdx.x));
  take_lanes(best);
  __shared__ Best warps[kThreads / 32];
  if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x < 32) {
    best = threadIdx.x < kThreads / 32 ? warps[threadIdx.x] : Best{-INFINITY, INT_MAX};
    take_lanes(best);
    if (threadIdx.x == 0) parts[int64_t(blockIdx.x) * gridDim.y + blockIdx.y] = best;
  }
}

// One warp a row.
__global__ void argmax_pick_kernel(const Best* parts, int spans, DeviceMatrix out) {
  wait_for_inputs();
  Best best{-INFINITY, INT_MAX};
  for (int s = threadIdx.x; s < spans; s += 32) {
    const Best part = parts[int64_t(blockIdx.x) * spans + s];
    take(best, part.value, part.index);
  }
  take_lanes(best);
  if (threadIdx.x == 0) out.data[int64_t(blockIdx.x) * out.stride] = float(best.index == INT_MAX ? 0 : best.index);
}

}  // namespace

size_t argmax_scratch_bytes(int64_t rows, int64_t cols) {
  return size_t(rows * ((cols + kSpan - 1) / kSpan)) * sizeof(Best);
}

void launch_argmax_rows(DeviceMatrix x, void* scratch, DeviceMatrix out, cudaStream_t stream) {
  if (x.rows == 0) return;
  const int spans = int((x.cols + kSpan - 1) / kSpan);
  if (spans == 0) {
    launch_chained(argmax_pick_kernel, unsigned(x.rows), 32, 0, stream, static_cast<const Best*>(nullptr), 0, out);
    return;
  }
  auto* parts = static_cast<Best*>(scratch);
  launch_chained(argmax_spans_kernel, dim3(unsigned(x.rows), unsigned(spans)), kThreads, 0, stream, x, parts);
  launch_chained(argmax_pick_kernel, unsigned(x.rows), 32, 0, stream, static_cast<const Best*>(parts), spans, out);
}

}  // namespace dsv3::cuda
