// pick_tokens on the GPU: a step's next tokens chosen from logits that never leave the device (a row
// of Moonlight's is 640 KB, which the host took longer to download and scan than the GPU to run a
// layer). A row's score is its logit (greedy, util/argmax.h's rule: the largest above -inf, the
// first of equal ones, else 0) or logit / T plus its Gumbel noise (util/gumbel_noise.h).
//
// Uncut rows: two launches; blocks of the first take kSpan values of a row each, every thread's
// loads in flight at once, and write their best (score, index); the second picks each row's best of
// those. Where some row is cut by top_k, min_p or top_p, one block a row runs util/token_draw.h's
// rounds over the whole row instead (a pass for the max, five to find top_k's k-th token, one for the
// kept mass, two a round).
#include <climits>

#include "dsv3/backend/cuda/block_reduce.cuh"
#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/float_key.cuh"
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
// 1/T (0: greedy), the key, top_p, min_p and top_k.
struct RowDraw {
  float inv_temperature;
  uint64_t key;
  float top_p, min_p;
  int top_k;
};
constexpr int kDrawValues = 6;  // TokenDraw::kPacked

__device__ inline RowDraw row_draw(const int32_t* draws, int64_t row) {
  const int32_t* d = draws + kDrawValues * row;
  return {__int_as_float(d[0]), uint64_t(uint32_t(d[1])) | uint64_t(uint32_t(d[2])) << 32, __int_as_float(d[3]),
          __int_as_float(d[4]), d[5]};
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

// A key whose ascending order is ranks_before's order of the logits, ties aside: larger logits
// first, -0 as +0, NaN last (the floats' own order, reversed).
__device__ inline uint32_t rank_key(float logit) { return ~ordered_key(logit); }

// The token of rank k - 1 (0 < k <= cols) by ranks_before, NaN last (util/token_draw.h,
// kth_ranked), for the whole block: a radix select over rank_key, 8 bits a pass (a warp's equal
// digits counted by one atomic), then the k-th token among those of its key by id.
__device__ int kth_ranked(const float* row, int cols, int k) {
  __shared__ int histogram[256];
  __shared__ uint32_t found_prefix;
  __shared__ int found_left, found;
  __shared__ int chunk_ties[kCutThreads];
  const int lane = int(threadIdx.x % 32);
  uint32_t prefix = 0, mask = 0;
  int left = k;  // the rank sought among the tokens whose key starts with prefix, from 1
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) histogram[b] = 0;
    __syncthreads();
    for (int c0 = 0; c0 < cols; c0 += blockDim.x) {  // the same trips for every thread
      const int c = c0 + int(threadIdx.x);
      const uint32_t key = c < cols ? rank_key(row[c]) : 0u;
      const bool counted = c < cols && (key & mask) == prefix;
      const int digit = counted ? int(key >> shift & 0xffu) : -1 - lane;  // the uncounted each alone
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (counted && lane == __ffs(peers) - 1) atomicAdd(&histogram[digit], __popc(peers));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int digit = 0, below = 0;
      while (below + histogram[digit] < left) below += histogram[digit++];
      found_prefix = prefix | uint32_t(digit) << shift, found_left = left - below;
    }
    __syncthreads();
    prefix = found_prefix, left = found_left, mask |= 0xffu << shift;
  }
  // The left-th token of key `prefix` by id: each thread counts them in its own run of ids.
  const int per = (cols + int(blockDim.x) - 1) / int(blockDim.x);
  const int first = int(threadIdx.x) * per, last = min(cols, first + per);
  int ties = 0;
  for (int c = first; c < last; ++c) ties += rank_key(row[c]) == prefix;
  chunk_ties[threadIdx.x] = ties;
  __syncthreads();
  if (threadIdx.x == 0) {
    found = -1;  // stays so only if the counts disagree, which they cannot
    int before = 0;
    for (int t = 0; t < int(blockDim.x); ++t) {
      const int mine = chunk_ties[t];
      chunk_ties[t] = before;
      before += mine;
    }
  }
  __syncthreads();
  const int before = chunk_ties[threadIdx.x];
  if (before < left && left <= before + ties)
    for (int c = first, seen = before; c < last; ++c)
      if (rank_key(row[c]) == prefix && ++seen == left) found = c;
  __syncthreads();
  const int result = found;
  __syncthreads();  // the scratch is free for another call
  return result;
}

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
    // top_k: the k-th token; the top k are it and those ranked before it (all but NaN where it is NaN).
    const int kth = draw.top_k > 0 && draw.top_k < cols ? kth_ranked(row, cols, draw.top_k) : -1;
    const float kth_logit = kth >= 0 ? row[kth] : 0.0f;
    auto kept = [&](float logit, int c) {
      return weight(logit) >= draw.min_p &&
             (kth < 0 || isnan(kth_logit) || c == kth || ranks_before(logit, c, kth_logit, kth));
    };
    float kept_mass = 0.0f;
    if (draw.top_p < 1.0f) {
      float mass = 0.0f;
      for (int c = threadIdx.x; c < cols; c += blockDim.x)
        if (kept(row[c], c)) mass += weight(row[c]);
      kept_mass = block_sum(mass);
    }
    bool ruled_out_tail = false;
    float pivot_logit = 0.0f;
    int pivot = 0;
    for (;;) {
      best = {-INFINITY, INT_MAX};
      for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float logit = row[c];
        if (!kept(logit, c) || (ruled_out_tail && !ranks_before(logit, c, pivot_logit, pivot))) continue;
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
        if (const float logit = row[c]; ranks_before(logit, c, picked_logit, picked) && kept(logit, c))
          mass += weight(logit);
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
