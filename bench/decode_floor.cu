// What a batch-1 decode layer's kernels could cost at best on this GPU, measured apart from the model
// (bench/RESULTS.md uses it to say where Moonlight's batch-1 step stands):
//  - weight streams: a launch that reads a layer's expert weights once, one wave of 4-warp blocks, a
//    warp a 16-row tile of FP8 weights as moe_mma.cu reads it (rows g and g + 8, 32 bytes of each at
//    each 128-column chunk: the row pairs), against the same bytes laid out tile-major (a chunk's 16 x
//    128 bytes contiguous, 64 a lane), with `ahead` chunks a lane in flight and `work` dependent FMAs
//    a chunk standing for its products; and a plain read of every byte, many loads in flight, as the
//    ceiling of any order;
//  - hand-offs: a launch of small blocks that reads what the launch before wrote, launched plainly,
//    chained (programmatic dependent launch, chained_launch.cuh), and chained but waiting by polling
//    memory (hop_polled), all replayed from a CUDA graph, and a grid barrier inside one persistent
//    launch (one word, every block adding and spinning on it);
//  - a persistent layer's overlap: a layer's chain of barriers in one warp of each block while the
//    other warps stream the bytes the layer reads outside its routed experts, against each alone.
// Every stream reads 4 sets of weights in turn (more than L2 holds), and each time is the median of
// 21 replays (of a graph of 8 launches; of a launch of 1000 barriers; of one launch).
//
//   build/bench/dsv3_decode_floor
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/cuda_check.h"
#include "dsv3/backend/cuda/weight_element.cuh"
#include "floor_timing.cuh"

namespace {

using dsv3::cuda::launch_chained;
using dsv3::cuda::load_weight_vector;
using dsv3::cuda::wait_for_inputs;
using dsv3::floor::arrive_and_wait;
using dsv3::floor::fill_bytes;
using dsv3::floor::fold_vectors;
using dsv3::floor::median_us;
using dsv3::floor::read_all;

constexpr int kWarps = 4, kTileRows = 16, kChunkCols = 128;
constexpr int kWeightSets = 4, kLaunchesPerReplay = 8;

enum class Order { kRowPairs, kTileMajor };

// Byte offset in a tile of lane's vector v (16 bytes) of chunk c.
template <Order kOrder>
__device__ inline int64_t lane_offset(int c, int64_t cols, int lane, int v) {
  if constexpr (kOrder == Order::kRowPairs) {
    const int g = lane / 4, t = lane % 4, row = g + 8 * (v / 2);
    return row * cols + int64_t(c) * kChunkCols + 32 * t + 16 * (v % 2);
  } else {
    return int64_t(c) * kTileRows * kChunkCols + 64 * lane + 16 * v;
  }
}

// A chunk's words folded in after `work` dependent FMAs on one of them (a chunk's products take a
// lane some 16 dependent tensor-core steps).
__device__ inline unsigned consume(const uint4 (&chunk)[4], int work) {
  float f = __uint_as_float((chunk[0].x & 0x007fffffu) | 0x3f800000u);
  for (int i = 0; i < work; ++i) f = fmaf(f, 0.999f, 1e-3f);
  unsigned folded = __float_as_uint(f);
#pragma unroll
  for (int v = 0; v < 4; ++v) folded ^= chunk[v].x ^ chunk[v].y ^ chunk[v].z ^ chunk[v].w;
  return folded;
}

template <Order kOrder, int kAhead>
__global__ void __launch_bounds__(kWarps * 32, 4)
    stream_tiles(const uint8_t* weights, int64_t cols, int64_t n_tiles, int work, unsigned* sink) {
  const int lane = threadIdx.x % 32;
  const int64_t tile = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (tile >= n_tiles) return;
  const uint8_t* base = weights + tile * kTileRows * cols;
  const int chunks = int(cols / kChunkCols);
  uint4 ring[kAhead][4];
  auto ask = [&](int u, int c) {
    if (c >= chunks) return;
#pragma unroll
    for (int v = 0; v < 4; ++v) ring[u][v] = load_weight_vector(base + lane_offset<kOrder>(c, cols, lane, v));
  };
#pragma unroll
  for (int u = 0; u < kAhead; ++u) ask(u, u);
  unsigned folded = 0;
#pragma unroll 1
  for (int c0 = 0; c0 < chunks; c0 += kAhead)
#pragma unroll
    for (int u = 0; u < kAhead; ++u) {
      if (c0 + u >= chunks) break;
      folded ^= consume(ring[u], work);
      ask(u, c0 + u + kAhead);
    }
  sink[tile * 32 + lane] = folded;
}

// One hand-off: each block reads the word the block after it wrote in the launch before. The words
// count launches: launch L reads L from slot (L + 1) % 2 and writes L + 1 to slot L % 2.
template <bool kChained>
__global__ void hop(unsigned* words, int step) {
  if constexpr (kChained) wait_for_inputs();
  if (threadIdx.x != 0) return;
  const unsigned n = gridDim.x, from = (step + 1) % 2, to = step % 2;
  words[to * n + blockIdx.x] = __ldcg(words + from * n + (blockIdx.x + 1) % n) + 1;
}

__device__ inline unsigned load_relaxed(const unsigned* p) {
  unsigned v;
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// How a chained launch can wait other than by griddepcontrol.wait (which waits for the whole launch
// ahead to end and its memory to be flushed): by polling memory, once the launch ahead's blocks have
// all started (the attribute lets this launch start then; each block lets the next start once past
// its wait, as wait_for_inputs() does).
//  - kCounted: each block of the launch ahead fences its writes and adds 1 to one count; a block
//    polls the count until every block ahead has added, then reads the words (two round trips after
//    the writes: the fence and count, then the poll and read).
//  - kWordsAsFlags: the words are their own flags (NCCL's low-latency protocol): a block polls every
//    word of the launch ahead until each holds the count it expects, one round trip after the writes.
// Either way every block waits for every block ahead, as a product's blocks wait for all of its input.
// What launch L expects, L, is one more than what this block wrote two launches ago.
enum class Poll { kCounted, kWordsAsFlags };

template <Poll kPoll>
__global__ void hop_polled(unsigned* words, unsigned* count, int step) {
  const unsigned n = gridDim.x, from = (step + 1) % 2, to = step % 2;
  const unsigned expected = __ldcg(words + to * n + blockIdx.x) + 1;
  if constexpr (kPoll == Poll::kCounted) {
    if (threadIdx.x == 0)
      while (load_relaxed(count) - expected * n > 0x7fffffffu) __nanosleep(0);  // count < expected * n
    __syncthreads();
  } else {
    bool all_there;
    do {
      bool mine = true;
      for (unsigned b = threadIdx.x; b < n; b += blockDim.x) mine &= load_relaxed(words + from * n + b) == expected;
      all_there = __syncthreads_and(mine);
    } while (!all_there);
  }
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (threadIdx.x != 0) return;
  const unsigned got = __ldcg(words + from * n + (blockIdx.x + 1) % n);
  if constexpr (kPoll == Poll::kCounted) {
    words[to * n + blockIdx.x] = got + 1;
    __threadfence();
    atomicAdd(count, 1u);
  } else {
    asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" ::"l"(words + to * n + blockIdx.x), "r"(got + 1) : "memory");
  }
}

// n_barriers grid barriers in one launch.
__global__ void barriers(unsigned* count, unsigned base, int n_barriers) {
  for (int i = 1; i <= n_barriers; ++i) {
    __syncthreads();
    if (threadIdx.x == 0) arrive_and_wait(count, base, i);
    __syncthreads();
  }
}

// What a persistent layer would count on: that its chain of dependent steps runs while the same
// blocks stream weights. One block an SM; warp 0 of each goes through n_barriers grid barriers (a
// batch-1 layer's dependent steps) while the other warps read n_vectors of weights; either may be
// none.
constexpr int kOverlapThreads = 1024;

__global__ void __launch_bounds__(kOverlapThreads)
    barriers_beside_stream(unsigned* count, unsigned base, int n_barriers, const uint4* weights, int64_t n_vectors,
                           unsigned* sink) {
  if (threadIdx.x < 32) {
    for (int i = 1; i <= n_barriers; ++i) {
      if (threadIdx.x == 0) arrive_and_wait(count, base, i);
      __syncwarp();
    }
    return;
  }
  const int64_t streamers = int64_t(gridDim.x) * (blockDim.x - 32);
  const int64_t thread = int64_t(blockIdx.x) * (blockDim.x - 32) + threadIdx.x - 32;
  sink[thread] = fold_vectors(weights, n_vectors, thread, streamers);
}

// Median microseconds of one launch of `record` (kLaunchesPerReplay of them captured in a graph).
double median_launch_us(cudaStream_t stream, const std::function<void(int)>& record) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  DSV3_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < kLaunchesPerReplay; ++i) record(i);
  DSV3_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  DSV3_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double us = median_us(stream, kLaunchesPerReplay, [&](int) { DSV3_CUDA_CHECK(cudaGraphLaunch(exec, stream)); });
  DSV3_CUDA_CHECK(cudaGraphExecDestroy(exec));
  DSV3_CUDA_CHECK(cudaGraphDestroy(graph));
  return us;
}

struct Layer {
  const char* name;
  int64_t n_tiles, cols;  // Moonlight's: gate_up of 6 routed experts and the shared FFN, and down
  int64_t bytes() const { return n_tiles * kTileRows * cols; }
};

// One line of the weight streams' table: `what` read `layer` once in `us`, its rate with and without
// a hand-off's `hop_us`.
void report(const Layer& layer, const char* what, double us, double hop_us) {
  std::printf("%-8s %-30s%6.1f MB  %7.2f us  %5.2f TB/s  (less a hand-off: %5.2f TB/s)\n", layer.name, what,
              layer.bytes() / 1e6, us, layer.bytes() / us / 1e6, layer.bytes() / (us - hop_us) / 1e6);
}

template <Order kOrder, int kAhead>
void time_stream(cudaStream_t stream, const Layer& layer, const std::vector<uint8_t*>& sets, int work, unsigned* sink,
                 const char* order, double hop_us) {
  const unsigned blocks = unsigned((layer.n_tiles + kWarps - 1) / kWarps);
  const double us = median_launch_us(stream, [&](int i) {
    stream_tiles<kOrder, kAhead><<<blocks, kWarps * 32, 0, stream>>>(sets[i % kWeightSets], layer.cols, layer.n_tiles,
                                                                      work, sink);
    DSV3_CUDA_CHECK(cudaGetLastError());
  });
  char what[64];
  std::snprintf(what, sizeof what, "%-10s ahead %d  work %3d", order, kAhead, work);
  report(layer, what, us, hop_us);
}

template <bool kChained>
double time_hops(cudaStream_t stream, unsigned blocks, unsigned* words) {
  return median_launch_us(stream, [&](int i) {
    if constexpr (kChained) {
      launch_chained(hop<true>, blocks, 128, 0, stream, words, i);
    } else {
      hop<false><<<blocks, 128, 0, stream>>>(words, i);
      DSV3_CUDA_CHECK(cudaGetLastError());
    }
  });
}

// The words as launch -2 and -1 left them (slot 0 all ~0u, slot 1 all 0) and a count of 0, so that
// the polled hops' launch L finds L where it expects it. On the stream: the legacy stream's memsets
// are not ordered with this non-blocking one.
void reset_hops(cudaStream_t stream, unsigned* words, unsigned* count, unsigned blocks) {
  DSV3_CUDA_CHECK(cudaMemsetAsync(words, 0xff, blocks * sizeof(unsigned), stream));
  DSV3_CUDA_CHECK(cudaMemsetAsync(words + blocks, 0, blocks * sizeof(unsigned), stream));
  DSV3_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned), stream));
}

template <Poll kPoll>
double time_polled_hops(cudaStream_t stream, unsigned blocks, unsigned* words, unsigned* count) {
  reset_hops(stream, words, count, blocks);
  return median_launch_us(stream, [&](int i) { launch_chained(hop_polled<kPoll>, blocks, 128, 0, stream, words, count, i); });
}

double time_barriers(cudaStream_t stream, unsigned blocks, unsigned* count) {
  constexpr int kBarriers = 1000;
  DSV3_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned), stream));
  return median_us(stream, kBarriers, [&](int r) {
    unsigned base = unsigned(r) * kBarriers * blocks;
    int n = kBarriers;
    void* args[] = {&count, &base, &n};
    DSV3_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(barriers), blocks, 128, args, 0, stream));
  });
}

// Median microseconds of one launch of barriers_beside_stream on `blocks` blocks, each replay reading
// the next of `sets`.
double time_overlap(cudaStream_t stream, unsigned blocks, unsigned* count, int n_barriers,
                    const std::vector<uint8_t*>& sets, int64_t bytes, unsigned* sink) {
  DSV3_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned), stream));
  return median_us(stream, 1, [&](int r) {
    unsigned base = unsigned(r) * unsigned(n_barriers) * blocks;
    int n = n_barriers;
    const uint4* weights = reinterpret_cast<const uint4*>(sets[r % kWeightSets]);
    int64_t n_vectors = bytes / 16;
    void* args[] = {&count, &base, &n, &weights, &n_vectors, &sink};
    DSV3_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(barriers_beside_stream), blocks,
                                                kOverlapThreads, args, 0, stream));
  });
}

void run() {
  cudaDeviceProp props{};
  DSV3_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", props.name, props.multiProcessorCount, props.l2CacheSize >> 20);
  cudaStream_t stream;
  DSV3_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const unsigned sms = unsigned(props.multiProcessorCount);

  unsigned* words;
  DSV3_CUDA_CHECK(cudaMalloc(&words, (size_t(2) * 4 * sms + 1) * sizeof(unsigned)));
  DSV3_CUDA_CHECK(cudaMemset(words, 0, (size_t(2) * 4 * sms + 1) * sizeof(unsigned)));
  unsigned* const count = words + 2 * 4 * sms;
  std::printf("\nhand-offs, us each:\n");
  for (unsigned blocks : {sms, 2 * sms, 4 * sms}) {
    const double plain = time_hops<false>(stream, blocks, words), chained = time_hops<true>(stream, blocks, words);
    const double counted = time_polled_hops<Poll::kCounted>(stream, blocks, words, count);
    const double flagged = time_polled_hops<Poll::kWordsAsFlags>(stream, blocks, words, count);
    std::printf("  %4u blocks: plain launch %5.2f  chained launch %5.2f  chained, polling a count %5.2f  chained, "
                "polling the words %5.2f\n",
                blocks, plain, chained, counted, flagged);
  }
  for (unsigned blocks : {sms, 2 * sms})
    std::printf("  %4u blocks: grid barrier in one launch %5.2f\n", blocks, time_barriers(stream, blocks, words));
  const double hop_us = time_hops<false>(stream, 4 * sms, words);

  const Layer layers[] = {{"gate_up", (6 * 2 * 1408 + 2 * 2816) / kTileRows, 2048},
                          {"down", 8 * 2048 / kTileRows, 1408}};
  const int64_t most_bytes = std::max(layers[0].bytes(), layers[1].bytes());
  std::vector<uint8_t*> sets(kWeightSets);
  for (int s = 0; s < kWeightSets; ++s) {
    DSV3_CUDA_CHECK(cudaMalloc(&sets[s], size_t(most_bytes)));
    fill_bytes<<<4 * sms, 256, 0, stream>>>(sets[s], most_bytes, 977u * s + 1);
    DSV3_CUDA_CHECK(cudaGetLastError());
  }
  unsigned* sink;
  DSV3_CUDA_CHECK(cudaMalloc(&sink, size_t(most_bytes / 16) * sizeof(unsigned)));
  DSV3_CUDA_CHECK(cudaStreamSynchronize(stream));

  std::printf("\nweight streams (one launch; the hand-off subtracted is a plain launch's, %.2f us):\n", hop_us);
  for (const Layer& layer : layers) {
    const unsigned blocks = 4 * sms;
    const double us = median_launch_us(stream, [&](int i) {
      read_all<<<blocks, 256, 0, stream>>>(reinterpret_cast<const uint4*>(sets[i % kWeightSets]), layer.bytes() / 16,
                                          sink);
      DSV3_CUDA_CHECK(cudaGetLastError());
    });
    report(layer, "read_all", us, hop_us);
    for (int work : {0, 64}) {
      time_stream<Order::kRowPairs, 2>(stream, layer, sets, work, sink, "row pairs", hop_us);
      time_stream<Order::kRowPairs, 4>(stream, layer, sets, work, sink, "row pairs", hop_us);
      time_stream<Order::kTileMajor, 2>(stream, layer, sets, work, sink, "tile-major", hop_us);
      time_stream<Order::kTileMajor, 4>(stream, layer, sets, work, sink, "tile-major", hop_us);
    }
  }
  // A Moonlight batch-1 layer's 11 dependent launches as barriers, beside the bytes the layer reads
  // outside its routed experts: 16.6 MB (q_proj, kv_a, kv_b, o_proj, the router's gate, the cache
  // rows), and those with the shared FFN's 17.3 MB. Each time includes one plain launch.
  constexpr int kLayerSteps = 11;
  std::printf("\npersistent layer (one launch of %u blocks of %d threads; warp 0 the barriers), us:\n", sms,
              kOverlapThreads);
  const double chain = time_overlap(stream, sms, count, kLayerSteps, sets, 0, sink);
  for (const int64_t bytes : {int64_t(16'600'000), int64_t(33'900'000)}) {
    const double alone = time_overlap(stream, sms, count, 0, sets, bytes, sink);
    const double both = time_overlap(stream, sms, count, kLayerSteps, sets, bytes, sink);
    std::printf("  %d barriers %6.2f  reading %4.1f MB %6.2f  both %6.2f  (the two apart, added: %6.2f)\n", kLayerSteps,
                chain, bytes / 1e6, alone, both, chain + alone);
  }
  for (uint8_t* s : sets) DSV3_CUDA_CHECK(cudaFree(s));
  DSV3_CUDA_CHECK(cudaFree(sink));
  DSV3_CUDA_CHECK(cudaFree(words));
  DSV3_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace

int main() { return dsv3::floor::run_reporting_errors("dsv3_decode_floor", run); }
