// Programmatic dependent launch (CUDA C++ Programming Guide, "Programmatic Dependent Launch and
// Synchronization"; sm_90): a kernel launched by launch_chained() may start while the kernel ahead
// of it in the stream is still running. A decode step is hundreds of short dependent kernels, and
// without this each one pays a launch, a ramp-up of its first blocks and the drain of the previous
// one; chained, the next kernel's blocks are already resident, and may have read their weights into
// registers, when its inputs are ready. Graph capture keeps these edges. (Moonlight FP8 batch-1
// decode on an H200: 257 tok/s launched plainly, 270 chained. Asking L2 for each block's weight rows
// before the wait, with prefetch.global.L2, cost 3%: 279 tok/s without.)
//
// The rule that makes it safe: every chained kernel calls wait_for_inputs() in every block before it
// reads or writes memory that an earlier kernel may touch (activations, the cache, scratch), and
// before any early return. It waits for the previous kernel to finish and its writes to be visible;
// the previous kernel did the same for its own, so the whole stream order holds. Before it, a kernel
// may read stored weights, never written by kernels of a step, and what the kernel two launches
// ahead wrote: this kernel's blocks start only once every block of the one ahead has passed its own
// wait, which that kernel's end came before (read through L2, `__ldcg`: this SM's L1 may hold older
// lines). Asking for weights there hides their latency behind the kernel ahead (Moonlight FP8
// batch-1 decode on an H200, the weight-streaming products so: 340 -> 359 tok/s). Those loads must
// be coherent ones (plain ld.global): ptxas schedules griddepcontrol.wait ahead of independent
// ld.global.nc (__ldg) loads, so that they were issued only after the wait (cuobjdump -sass: the
// wait, ACQBULK, first in the absorb and in the BF16 linear_small kernels).
#pragma once

#include <cuda_runtime.h>

#include "dsv3/backend/cuda/cuda_check.h"

namespace dsv3::cuda {

// Waits until the kernel ahead in the stream has finished and its memory is visible, then lets the
// kernel behind start its blocks (they wait in turn). A no-op in a kernel launched plainly.
__device__ __forceinline__ void wait_for_inputs() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
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
