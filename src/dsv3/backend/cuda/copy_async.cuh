// Asynchronous copies global -> shared memory without passing through registers (cp.async, sm_80+):
// the MLA decode kernels' cache tiles (mla_decode_rows.cuh), grouped_wgmma.cu's stages of x and
// mla_prefill_flash.cu's tiles of keys.
#pragma once

#include <cstdint>

namespace dsv3::cuda {

// 16 bytes to the shared-memory address `shared_address`; zeros where !real (src unread).
__device__ inline void copy_async16(uint32_t shared_address, const void* src, bool real) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(shared_address), "l"(src), "r"(real ? 16 : 0));
}
__device__ inline void copy_async16(void* dst, const void* src, bool real) {
  copy_async16(static_cast<uint32_t>(__cvta_generic_to_shared(dst)), src, real);
}
__device__ inline void copy_async_commit() { asm volatile("cp.async.commit_group;"); }
// Waits until at most kPending committed groups of this thread's copies are still in flight.
template <int kPending>
__device__ inline void copy_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(kPending)); }

}  // namespace dsv3::cuda
