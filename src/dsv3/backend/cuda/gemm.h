// Matrix products through cuBLASLt (prefill and large batches, where tensor cores do the work) and
// cuBLAS's strided batched GEMM (attention over many heads). All outputs are float32.
#pragma once

#include <cstdint>
#include <map>
#include <tuple>

#include "dsv3/backend/cuda/cuda_check.h"

namespace dsv3::cuda {

class GemmRunner {
 public:
  explicit GemmRunner(cudaStream_t stream);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // y [M, N] (rows ldy floats apart) = x [M, K] . w [N, K]^T (+ y when accumulate), x and w
  // contiguous BF16.
  void bf16(const uint16_t* x, const uint16_t* w, int64_t M, int64_t N, int64_t K, float* y, int64_t ldy,
            bool accumulate);

  // y [M, N] (rows ldy floats apart) = alpha_beta[0] x [M, K] . w [N, K]^T, x and w contiguous FP16,
  // summed in float32; alpha_beta (device memory, read when the product runs) holds alpha and a zero.
  void f16(const uint16_t* x, const uint16_t* w, int64_t M, int64_t N, int64_t K, const float* alpha_beta, float* y,
           int64_t ldy);

  // y [M, N] (rows ldy floats apart) = x [M, K] (rows ldx floats apart) . w [N, K]^T, all float32 and
  // summed in float32 (no TF32): the router's logits of many rows (CudaBackend::moe_route).
  void f32(const float* x, int64_t ldx, const float* w, int64_t M, int64_t N, int64_t K, float* y, int64_t ldy);

  // DeepSeek's FP8 recipe on cuBLASLt's block-scaled modes: y [M, N] (rows ldy floats apart) =
  // x . w^T, x codes [M, K] with one float scale a row and 128 columns (x_scales[k_block * M + m],
  // CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F), w codes [N, K] with scale_inv [ceil(N/128),
  // ceil(K/128)] row-major (CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F), summed in float32.
  // Whether fp8_block_scaled has an algorithm for this shape. Besides cuBLASLt's choice: FP8 rows in
  // multiples of 16 bytes (K, N), y's rows 16 bytes apart, and so each scale tensor's rows
  // (M % 4, ceil(K/128) % 4), as PyTorch's scaled_mm asks of these modes.
  bool fp8_supported(int64_t M, int64_t N, int64_t K, int64_t ldy);
  void fp8_block_scaled(const uint8_t* x, const float* x_scales, const uint8_t* w, const float* w_scales, int64_t M,
                        int64_t N, int64_t K, float* y, int64_t ldy);

  cublasHandle_t blas() const { return blas_; }

 private:
  enum class Kind { Bf16, F16, F32, Fp8BlockScaled };
  // A plan for one (kind, M, N, K, ldx, ldy): descriptors and the algorithm cuBLASLt chose; `ok`
  // false when it found none.
  struct Plan {
    bool ok = false;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  bool find_algorithm(Plan& p);
  Plan& plan(Kind kind, int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldy);

  cudaStream_t stream_;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 64u << 20;
  std::map<std::tuple<Kind, int64_t, int64_t, int64_t, int64_t, int64_t>, Plan> plans_;
};

}  // namespace dsv3::cuda
