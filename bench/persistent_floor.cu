// What a persistent batch-1 decode kernel could reach on this GPU, measured apart from the model
// (bench/RESULTS.md compares it with the engine's launches): Moonlight's MoE layers as one launch of
// one block an SM, in the manner of a "megakernel". In each block:
//  - warp 0 is the producer: it walks the layers' steps in order and asks for its block's slice of
//    each step's weights by bulk copies (cp.async.bulk, completing on an mbarrier) into a ring of
//    shared-memory slots, as far ahead as free slots allow, across steps and layers. Weights do not
//    depend on the token, so it never waits on the chain, except for a step's routed experts, whose
//    addresses the layer's router decides: those it asks for only after the router's step;
//  - the other warps are the chain: a step waits for every block's previous step (a grid barrier),
//    reads what the previous step wrote (a dependent L2 round trip), folds its slots as they fill
//    (standing for the products) and frees them, writes its output and arrives at the next barrier.
// A step's time is then the larger of its bytes and its chain, not their sum, if the ring keeps the
// bytes coming while the chain waits. The same launch with no bytes (the chain alone) and with no
// barriers (the ring alone) says how far each is from the whole.
//
//   build/bench/dsv3_persistent_floor
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "dsv3/backend/cuda/bulk_copy.cuh"
#include "dsv3/backend/cuda/cuda_check.h"
#include "dsv3/backend/cuda/weight_element.cuh"
#include "floor_timing.cuh"

namespace {

using dsv3::DType;
using namespace dsv3::cuda;   // the bulk copies, their barriers and FP8 widening
using namespace dsv3::floor;  // the timing, the weights' fill and the barrier count

constexpr int kThreads = 512, kChainThreads = kThreads - 32, kChainWarps = kChainThreads / 32;
constexpr int kSlotBytes = 16 * 1024, kSlots = 12;
constexpr int kSteps = 11, kRouterStep = 7;
constexpr int kWeightSets = 4;  // layers read these in turn: more bytes than L2 holds

// A Moonlight MoE layer's 11 dependent steps at batch 1 (FP8 weights), as the engine launches them:
// the bytes any time may ask for, and those of the 6 routed experts, known once the router has run.
struct Step {
  int64_t any_bytes, routed_bytes;
};
constexpr Step kLayer[kSteps] = {
    {2048 * (3072 + 576), 0},                  // q_proj and kv_a
    {0, 0},                                    // rope and cache
    {16 * 128 * 512, 0},                       // absorb (kv_b's keys)
    {1024 * 576 * 4, 0},                       // attention (1K float32 cache rows)
    {0, 0},                                    // merge
    {16 * 128 * 512, 0},                       // unabsorb (kv_b's values)
    {2048 * 2048, 0},                          // o_proj
    {64 * 2048 * 4, 0},                        // router gate (float32)
    {2 * 2816 * 2048, 6 * 2 * 1408 * 2048},    // gate_up: shared; routed
    {2048 * 2816, 6 * 2048 * 1408},            // down: shared; routed
    {0, 0},                                    // combine and norm
};

struct Plan {
  const uint8_t* sets[kWeightSets];
  int64_t any_offset[kSteps], routed_offset[kSteps];  // in a set
  int64_t any_slice[kSteps], routed_slice[kSteps];    // a block's bytes, multiples of 16
  int layers;
  bool chain;  // grid barriers between steps (false: the ring alone)
  bool gated;  // routed bytes asked for only after the router's step
};

__device__ inline void chain_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kChainThreads) : "memory"); }

// The ring: slot k % kSlots holds the k-th chunk a block asks for; `full` completes when it has
// landed, `empty` when every chain warp is done with it.
struct Ring {
  uint64_t full[kSlots], empty[kSlots];
};

template <typename Visit>
__device__ inline void for_each_chunk(int64_t slice, Visit&& visit) {
  for (int64_t at = 0; at < slice; at += kSlotBytes) visit(at, unsigned(min(int64_t(kSlotBytes), slice - at)));
}

__device__ void produce(const Plan& plan, Ring& ring, uint8_t* slots, const unsigned* count, unsigned base) {
  unsigned k = 0;
  for (int layer = 0; layer < plan.layers; ++layer)
    for (int s = 0; s < kSteps; ++s)
      for (int part = 0; part < 2; ++part) {
        const bool routed = part == 1;
        const int64_t slice = routed ? plan.routed_slice[s] : plan.any_slice[s];
        if (slice == 0) continue;
        if (routed && plan.gated && plan.chain)
          wait_for_count(count, base + unsigned(layer * kSteps + kRouterStep + 1) * gridDim.x);
        const uint8_t* src = plan.sets[layer % kWeightSets] + (routed ? plan.routed_offset[s] : plan.any_offset[s]) +
                             int64_t(blockIdx.x) * slice;
        for_each_chunk(slice, [&](int64_t at, unsigned bytes) {
          const unsigned slot = k % kSlots;
          if (k >= kSlots) mbarrier_wait(&ring.empty[slot], (k / kSlots - 1) & 1);
          mbarrier_arrive_expecting(&ring.full[slot], bytes);
          bulk_copy(slots + size_t(slot) * kSlotBytes, src + at, bytes, &ring.full[slot]);
          ++k;
        });
      }
}

// What a chain thread makes of a 16-byte vector of FP8 weights: with kProducts, its 16 products
// with an input x as the engine's batch-1 kernels do them (widened to float32, multiplied, summed);
// without, only its bits folded in.
template <bool kProducts>
__device__ inline unsigned consume(const uint4& w, float x, unsigned folded) {
  if constexpr (kProducts) {
    float sum = 0.0f;
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      float f[4];
      WeightVector<DType::F8_E4M3>::widen(w, g, f);
#pragma unroll
      for (int j = 0; j < 4; ++j) sum = fmaf(f[j], x, sum);
    }
    return folded ^ __float_as_uint(sum);
  } else {
    return folded ^ w.x ^ w.y ^ w.z ^ w.w;
  }
}

// The chain warps: step after step, the barrier, the previous outputs, the slots, the outputs.
template <bool kProducts>
__device__ unsigned chain(const Plan& plan, Ring& ring, const uint8_t* slots, unsigned* count, unsigned base,
                          unsigned* outputs) {
  const int t = threadIdx.x - 32, warp = t / 32, lane = t % 32;
  const unsigned n_outputs = gridDim.x * kChainWarps;
  unsigned k = 0, folded = 0;
  for (int layer = 0; layer < plan.layers; ++layer)
    for (int s = 0; s < kSteps; ++s) {
      const int g = layer * kSteps + s;  // barriers passed before this step
      if (plan.chain && g > 0) {
        if (t == 0) wait_for_count(count, base + unsigned(g) * gridDim.x);
        chain_sync();
        folded ^= __ldcg(outputs + (g - 1) % 2 * n_outputs + (blockIdx.x * kChainThreads + t) % n_outputs);
      }
      const float x = __uint_as_float((folded & 0x007fffffu) | 0x3f800000u);  // in [1, 2)
      for (int part = 0; part < 2; ++part)
        for_each_chunk(part == 1 ? plan.routed_slice[s] : plan.any_slice[s], [&](int64_t, unsigned bytes) {
          const unsigned slot = k % kSlots;
          mbarrier_wait(&ring.full[slot], (k / kSlots) & 1);
          const uint4* v = reinterpret_cast<const uint4*>(slots + size_t(slot) * kSlotBytes);
          for (unsigned i = t; i < bytes / 16; i += kChainThreads) folded = consume<kProducts>(v[i], x, folded);
          __syncwarp();
          if (lane == 0) mbarrier_arrive(&ring.empty[slot]);
          ++k;
        });
      if (plan.chain) {
        if (lane == 0) outputs[g % 2 * n_outputs + blockIdx.x * kChainWarps + warp] = folded;
        chain_sync();
        if (t == 0) arrive_at_count(count);
      }
    }
  return folded;
}

template <bool kProducts>
__global__ void __launch_bounds__(kThreads, 1)
    persistent_layers(const Plan plan, unsigned* count, unsigned base, unsigned* outputs, unsigned* sink) {
  extern __shared__ __align__(128) uint8_t slots[];
  __shared__ Ring ring;
  if (threadIdx.x < kSlots) {
    mbarrier_init(&ring.full[threadIdx.x], 1);
    mbarrier_init(&ring.empty[threadIdx.x], kChainWarps);
  }
  dsv3::cuda::mbarrier_init_fence();
  __syncthreads();
  if (threadIdx.x < 32) {
    if (threadIdx.x == 0) produce(plan, ring, slots, count, base);
    return;
  }
  const unsigned folded = chain<kProducts>(plan, ring, slots, count, base, outputs);
  sink[blockIdx.x * kChainThreads + threadIdx.x - 32] = folded;
}

int64_t slice_of(int64_t bytes, unsigned blocks) { return (bytes + 16 * blocks - 1) / (16 * blocks) * 16; }

void run() {
  cudaDeviceProp props{};
  DSV3_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
  const unsigned blocks = unsigned(props.multiProcessorCount);
  std::printf("device: %s, %u SMs, L2 %d MB\n", props.name, blocks, props.l2CacheSize >> 20);
  cudaStream_t stream;
  DSV3_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  Plan plan{};
  int64_t set_bytes = 0, layer_bytes = 0;
  for (int s = 0; s < kSteps; ++s) {
    plan.any_slice[s] = slice_of(kLayer[s].any_bytes, blocks);
    plan.routed_slice[s] = slice_of(kLayer[s].routed_bytes, blocks);
    plan.any_offset[s] = set_bytes;
    set_bytes += plan.any_slice[s] * blocks;
    plan.routed_offset[s] = set_bytes;
    set_bytes += plan.routed_slice[s] * blocks;
    layer_bytes += kLayer[s].any_bytes + kLayer[s].routed_bytes;
  }
  std::vector<uint8_t*> sets(kWeightSets);
  for (int i = 0; i < kWeightSets; ++i) {
    DSV3_CUDA_CHECK(cudaMalloc(&sets[i], size_t(set_bytes)));
    fill_bytes<<<4 * blocks, 256, 0, stream>>>(sets[i], set_bytes, 977u * i + 1);
    DSV3_CUDA_CHECK(cudaGetLastError());
    plan.sets[i] = sets[i];
  }
  unsigned *count, *outputs, *sink;
  const size_t sink_words = std::max<size_t>(size_t(blocks) * kThreads, size_t(set_bytes / 16));
  DSV3_CUDA_CHECK(cudaMalloc(&count, sizeof(unsigned)));
  DSV3_CUDA_CHECK(cudaMalloc(&outputs, 2 * size_t(blocks) * kChainWarps * sizeof(unsigned)));
  DSV3_CUDA_CHECK(cudaMalloc(&sink, sink_words * sizeof(unsigned)));
  DSV3_CUDA_CHECK(cudaMemsetAsync(outputs, 0, 2 * size_t(blocks) * kChainWarps * sizeof(unsigned), stream));
  DSV3_CUDA_CHECK(cudaStreamSynchronize(stream));

  // Copy bandwidth's stand-in: every byte of a set read once by a plain wide launch.
  const double read_us = median_us(stream, 1, [&](int r) {
    read_all<<<4 * blocks, 512, 0, stream>>>(reinterpret_cast<const uint4*>(sets[r % kWeightSets]), set_bytes / 16,
                                             sink);
    DSV3_CUDA_CHECK(cudaGetLastError());
  });
  const double tbps = set_bytes / read_us / 1e6;
  std::printf("a layer's weights: %.1f MB (%.1f MB as %u slices); read once by a plain launch: %.2f us, %.2f TB/s\n",
              layer_bytes / 1e6, set_bytes / 1e6, blocks, read_us, tbps);

  const int shared_bytes = kSlots * kSlotBytes;
  for (const void* kernel : {reinterpret_cast<const void*>(persistent_layers<false>),
                             reinterpret_cast<const void*>(persistent_layers<true>)})
    DSV3_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes));
  constexpr int kLayers = 26;  // Moonlight's MoE layers
  auto time_layers = [&](bool bytes, bool chain, bool gated, bool products = false) {
    Plan p = plan;
    p.layers = kLayers, p.chain = chain, p.gated = gated;
    if (!bytes)
      for (int s = 0; s < kSteps; ++s) p.any_slice[s] = p.routed_slice[s] = 0;
    DSV3_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned), stream));
    return median_us(stream, kLayers, [&](int r) {
      unsigned base = unsigned(r) * kLayers * kSteps * blocks;
      void* args[] = {&p, &count, &base, &outputs, &sink};
      const void* kernel = products ? reinterpret_cast<const void*>(persistent_layers<true>)
                                    : reinterpret_cast<const void*>(persistent_layers<false>);
      DSV3_CUDA_CHECK(cudaLaunchCooperativeKernel(kernel, blocks, kThreads, args, size_t(shared_bytes), stream));
    });
  };
  const double layer_floor = set_bytes / tbps / 1e6;
  std::printf("\n%d layers in one launch of %u blocks x %d threads, a ring of %d x %d KB; us a layer:\n", kLayers, blocks,
              kThreads, kSlots, kSlotBytes / 1024);
  std::printf("  the bytes at the plain launch's rate      %7.2f\n", layer_floor);
  const double ring = time_layers(true, false, false), barriers = time_layers(false, true, false);
  const double gated = time_layers(true, true, true), ungated = time_layers(true, true, false);
  const double products = time_layers(true, true, true, true);
  std::printf("  the ring alone (no barriers)              %7.2f  (%.0f%% of the rate)\n", ring,
              100 * layer_floor / ring);
  std::printf("  the chain alone (%d barriers, no bytes)   %7.2f\n", kSteps, barriers);
  std::printf("  both, routed bytes after the router       %7.2f  (%.0f%% of the rate)\n", gated,
              100 * layer_floor / gated);
  std::printf("  both, routed bytes whenever               %7.2f  (%.0f%% of the rate)\n", ungated,
              100 * layer_floor / ungated);
  std::printf("  both, routed after the router, products   %7.2f  (%.0f%% of the rate)\n", products,
              100 * layer_floor / products);

  for (uint8_t* s : sets) DSV3_CUDA_CHECK(cudaFree(s));
  DSV3_CUDA_CHECK(cudaFree(count));
  DSV3_CUDA_CHECK(cudaFree(outputs));
  DSV3_CUDA_CHECK(cudaFree(sink));
  DSV3_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace

int main() { return dsv3::floor::run_reporting_errors("dsv3_persistent_floor", run); }
