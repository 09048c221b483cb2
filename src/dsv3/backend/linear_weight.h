// A linear layer's weight as stored: W [out, in] in BF16, F16, F32 or FP8 E4M3; for FP8 the float32
// block scales `scale_inv` [ceil(out/128), ceil(in/128)]: the real weight is fp8 * scale_inv of its
// 128x128 block (REFERENCE.md, checkpoint format). y = x W^T.
#pragma once

#include <cstdint>

#include "dsv3/model/tensor.h"

namespace dsv3 {

struct LinearWeight {
  TensorView weight;     // [out, in]
  TensorView scale_inv;  // F32 block scales when weight is F8_E4M3, else empty
  int64_t block_out = 128;
  int64_t block_in = 128;

  int64_t out_features() const { return weight.shape.at(0); }
  int64_t in_features() const { return weight.shape.at(1); }
  bool is_fp8() const { return weight.dtype == DType::F8_E4M3; }
  size_t n_bytes() const { return weight.n_bytes + scale_inv.n_bytes; }
};

}  // namespace dsv3
