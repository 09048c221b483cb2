// Programmatic dependent launch (CUDA C++ Programming Guide, "Programmatic Dependent Launch and
// Synchronization"; sm_90): a kernel launched by launch_chained() may start while the kernel ahead
// of it in the stream is still running. A decode step is hundreds of short dependent kernels, and
// without this each one pays a launch, a ramp-up of its first blocks and the drain of the previous
// one; chained, the next kernel's blocks are already resident (its weights on their way into L2)
// when its inputs are ready. Graph capture keeps these edges.
//
// The rule that makes it safe: every chained kernel calls wait_for_inputs() in every block before it
// reads or writes memory that an earlier kernel may touch (activations, the cache, scratch), and
// before any early return. It waits for the previous kernel to finish and its writes to be visible;
// the previous kernel did the same for its own, so the whole stream order holds. Only stored weights,
// never written by kernels of a step, may be touched before it (prefetch_to_l2).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "dsv3/backend/cuda/cuda_check.h"

namespace dsv3::cuda {

// Waits until the kernel ahead in the stream has finished and its memory is visible, then lets the
// kernel behind start its blocks (they wait in turn). A no-op in a kernel launched plainly.
__device__ __forceinline__ void wait_for_inputs() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

// Asks L2 for bytes [data, data + n_bytes), spread over the block's threads, 128-byte lines.
__device__ __forceinline__ void prefetch_to_l2(const void* data, size_t n_bytes) {
  const char* base = static_cast<const char*>(data);
  for (size_t offset = size_t(threadIdx.x) * 128; offset < n_bytes; offset += size_t(blockDim.x) * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(base + offset));
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...), allowed to overlap the kernel before it.
template <typename... Params, typename... Args>
void launch_chained(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                    Args&&... args) {
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &overlap;
  config.numAttrs = 1;
  DSV3_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...));
}

}  // namespace dsv3::cuda
