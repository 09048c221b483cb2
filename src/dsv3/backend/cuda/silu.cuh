// SwiGLU's gate, silu(x) = x / (1 + e^-x) (REFERENCE.md's FFN), for every kernel that ends an FFN's
// first half.
#pragma once

namespace dsv3::cuda {

// The quotient by __fdividef (x times an approximate reciprocal, 2 ulp). An IEEE division's range
// check calls a slow path once 1 + e^-x passes 2^126 (x below about -87), in the middle of a
// kernel's epilogue; there __fdividef gives silu's limit, 0.
__device__ inline float silu(float x) { return __fdividef(x, 1.0f + expf(-x)); }

}  // namespace dsv3::cuda
