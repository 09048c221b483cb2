// MLA prefill's keys and values in the expanded form (REFERENCE.md, MLA), as the prefill kernels pack
// them: head h's key of context row j is its k_nope (kv_b_proj's output) followed by the rotated k_pe
// all heads share (the latent row's last rope columns); its value is the v part of kv_b_proj's output.
#pragma once

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// Element d (< qk) of head h's key for context row j.
__device__ inline float expanded_key(const MlaDims& dims, const DeviceMatrix& kv, const DeviceMatrix& latent,
                                     int64_t j, int h, int d) {
  return d < dims.nope ? kv.data[j * kv.stride + h * dims.kv_width() + d]
                       : latent.data[j * latent.stride + dims.d_c + d - dims.nope];
}

// Element d (< v_dim) of head h's value for context row j.
__device__ inline float expanded_value(const MlaDims& dims, const DeviceMatrix& kv, int64_t j, int h, int d) {
  return kv.data[j * kv.stride + h * dims.kv_width() + dims.nope + d];
}

}  // namespace dsv3::cuda
