// pick_tokens on the GPU: a step's next tokens chosen from logits that never leave the device (a row
// of Moonlight's is 640 KB, which the host took longer to download and scan than the GPU to run a
// layer). A row's score is its logit (greedy, util/argmax.h's rule: the largest above -inf, the
// first of equal ones, else 0) or logit / T plus its Gumbel noise (util/gumbel_noise.h).
//
// Uncut rows: two launches; blocks of the first take kSpan values of a row each, every thread's
// loads in flight at once, and write their best (score, index); the second picks each row's best of
// those. Where some row is cut by top_p or min_p, one block a row runs util/token_draw.h's rounds
// over the whole row instead (a pass for the max, one for the kept mass, two a round).
#include <climits>

#include "dsv3/backend/cuda/block_reduce.cuh"
#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/util/gumbel_noise.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256, kPerThread = 32, kSpan = kThreads * kPerThread;

struct Best {
  double score;
  int index;  // INT_MAX: none yet
};

__device__ inline void take(Best& best, double score, int index) {
  if (score > best.score || (score == best.score && score > -INFINITY && index < best.index)) best = {score, index};
}

__device__ inline void take_lanes(Best& best) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const double score = __shfl_xor_sync(0xffffffffu, best.score, offset);
    const int index = __shfl_xor_sync(0xffffffffu, best.index, offset);
    take(best, score, index);
  }
}

// The block's best of each thread's `best` (every thread gets it).
__device__ Best block_best(Best best) {
  __shared__ Best warps[32];
  __shared__ Best total;
  take_lanes(best);
  if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x < 32) {
    best = threadIdx.x < blockDim.x / 32 ? warps[threadIdx.x] : Best{-INFINITY, INT_MAX};
    take_lanes(best);
    if (threadIdx.x == 0) total = best;
  }
  __syncthreads();
  const Best result = total;
  __syncthreads();  // warps and total are free for the next call
  return result;
}

// A row's draw as TokenDraw::pack lays it out (util/token_draw.h, which is C++20 and host code):
// 1/T (0: greedy), the key, top_p and min_p.
struct RowDraw {
  float inv_temperature;
  uint64_t key;
  float top_p, min_p;
};
constexpr int kDrawValues = 5;  // TokenDraw::kPacked

__device__ inline RowDraw row_draw(const int32_t* draws, int64_t row) {
  const int32_t* d = draws + kDrawValues * row;
  return {__int_as_float(d[0]), uint64_t(uint32_t(d[1])) | uint64_t(uint32_t(d[2])) << 32, __int_as_float(d[3]),
          __int_as_float(d[4])};
}

// grid (rows, spans): parts[row * spans + span] = the best of the span's scores.
__global__ void __launch_bounds__(kThreads) pick_spans_kernel(DeviceMatrix x, const int32_t* draws, Best* parts) {
  wait_for_inputs();
  const float* row = x.data + int64_t(blockIdx.x) * x.stride;
  const RowDraw draw = row_draw(draws, blockIdx.x);
  const int64_t first = int64_t(blockIdx.y) * kSpan;
  Best best{-INFINITY, INT_MAX};
  float values[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t c = first + i * kThreads + threadIdx.x;
    values[i] = c < x.cols ? row[c] : -INFINITY;
  }
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int c = int(first + i * kThreads + threadIdx.x);
    const double score = draw.inv_temperature == 0.0f ? double(values[i])
                                                       : perturbed_logit(values[i], draw.inv_temperature, draw.key, c);
    take(best, score, c);
  }
  best = block_best(best);
  if (threadIdx.x == 0) parts[int64_t(blockIdx.x) * gridDim.y + blockIdx.y] = best;
}

// One warp a row.
__global__ void pick_best_kernel(const Best* parts, int spans, DeviceMatrix out) {
  wait_for_inputs();
  Best best{-INFINITY, INT_MAX};
  for (int s = threadIdx.x; s < spans; s += 32) {
    const Best part = parts[int64_t(blockIdx.x) * spans + s];
    take(best, part.score, part.index);
  }
  take_lanes(best);
  if (threadIdx.x == 0) out.data[int64_t(blockIdx.x) * out.stride] = float(best.index == INT_MAX ? 0 : best.index);
}

__device__ inline bool ranks_before(float logit_a, int a, float logit_b, int b) {
  return logit_a > logit_b || (logit_a == logit_b && a < b);
}

constexpr int kCutThreads = 1024;

// One block a row: pick_token's rounds (util/token_draw.h), every row's draw whether cut or not.
__global__ void __launch_bounds__(kCutThreads) pick_cut_kernel(DeviceMatrix x, const int32_t* draws, DeviceMatrix out) {
  wait_for_inputs();
  const float* row = x.data + int64_t(blockIdx.x) * x.stride;
  const RowDraw draw = row_draw(draws, blockIdx.x);
  const int cols = int(x.cols);
  Best best{-INFINITY, INT_MAX};
  for (int c = threadIdx.x; c < cols; c += blockDim.x) take(best, row[c], c);
  const Best top = block_best(best);  // the greedy pick, and the max logit
  int picked = top.index;
  if (draw.inv_temperature != 0.0f && top.index != INT_MAX) {
    const float max_logit = float(top.score);
    auto weight = [&](float logit) { return expf((logit - max_logit) * draw.inv_temperature); };
    float kept_mass = 0.0f;
    if (draw.top_p < 1.0f) {
      float mass = 0.0f;
      for (int c = threadIdx.x; c < cols; c += blockDim.x)
        if (const float w = weight(row[c]); w >= draw.min_p) mass += w;
      kept_mass = block_sum(mass);
    }
    bool ruled_out_tail = false;
    float pivot_logit = 0.0f;
    int pivot = 0;
    for (;;) {
      best = {-INFINITY, INT_MAX};
      for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float logit = row[c];
        if (weight(logit) < draw.min_p || (ruled_out_tail && !ranks_before(logit, c, pivot_logit, pivot))) continue;
        take(best, perturbed_logit(logit, draw.inv_temperature, draw.key, c), c);
      }
      const Best round = block_best(best);
      if (round.index == INT_MAX) {  // nothing above -inf is left
        picked = ruled_out_tail ? pivot : INT_MAX;
        break;
      }
      picked = round.index;
      if (draw.top_p >= 1.0f) break;
      const float picked_logit = row[picked];
      float mass = 0.0f;
      for (int c = threadIdx.x; c < cols; c += blockDim.x)
        if (const float logit = row[c]; ranks_before(logit, c, picked_logit, picked))
          if (const float w = weight(logit); w >= draw.min_p) mass += w;
      if (block_sum(mass) < draw.top_p * kept_mass) break;
      ruled_out_tail = true, pivot_logit = picked_logit, pivot = picked;
    }
  }
  if (threadIdx.x == 0) out.data[int64_t(blockIdx.x) * out.stride] = float(picked == INT_MAX ? 0 : picked);
}

}  // namespace

size_t pick_tokens_scratch_bytes(int64_t rows, int64_t cols) {
  return size_t(rows * ((cols + kSpan - 1) / kSpan)) * sizeof(Best);
}

void launch_pick_tokens(DeviceMatrix x, const int32_t* draws, bool cut_rows, void* scratch, DeviceMatrix out,
                        cudaStream_t stream) {
  if (x.rows == 0) return;
  if (cut_rows) {
    launch_chained(pick_cut_kernel, unsigned(x.rows), kCutThreads, 0, stream, x, draws, out);
    return;
  }
  const int spans = int((x.cols + kSpan - 1) / kSpan);
  auto* parts = static_cast<Best*>(scratch);
  if (spans > 0)
    launch_chained(pick_spans_kernel, dim3(unsigned(x.rows), unsigned(spans)), kThreads, 0, stream, x, draws, parts);
  launch_chained(pick_best_kernel, unsigned(x.rows), 32, 0, stream, static_cast<const Best*>(parts), spans, out);
}

}  // namespace dsv3::cuda
