// Bulk copies from global to shared memory by the Tensor Memory Accelerator (cp.async.bulk, sm_90),
// counted on shared-memory barriers (mbarrier): a producer thread asks for bytes, the threads that
// use them wait for the barrier's phase (PTX ISA, "cp.async.bulk" and "mbarrier"). One thread can
// keep a whole SM's bytes in flight this way, so the other warps only compute: bench/persistent_floor.cu
// (and moe_lone.cu's persistent launch on branch wip/moe-lone-persistent, not landed).
#pragma once

#include <cstdint>

namespace dsv3::cuda {

__device__ inline uint32_t shared_address(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// A barrier whose phases complete after `arrivals` arrivals (and the bytes they expect).
__device__ inline void mbarrier_init(uint64_t* bar, unsigned arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_address(bar)), "r"(arrivals) : "memory");
}
// Makes the block's initialised barriers visible to the copies (then __syncthreads).
__device__ inline void mbarrier_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }

__device__ inline void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(shared_address(bar)) : "memory");
}
// An arrival that also makes the current phase wait for `bytes` more bytes of copies.
__device__ inline void mbarrier_arrive_expecting(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address(bar)), "r"(bytes)
               : "memory");
}
// Until the barrier's phase of parity `parity` (the n-th phase: n & 1) has completed.
__device__ inline void mbarrier_wait(uint64_t* bar, unsigned parity) {
  unsigned done;
  do
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(shared_address(bar)), "r"(parity)
        : "memory");
  while (!done);
}

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global to shared memory, counted on
// `bar` as they land.
__device__ inline void bulk_copy(void* dst, const void* src, unsigned bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   shared_address(dst)),
               "l"(src), "r"(bytes), "r"(shared_address(bar))
               : "memory");
}

}  // namespace dsv3::cuda
