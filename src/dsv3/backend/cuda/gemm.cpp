#include "dsv3/backend/cuda/gemm.h"

namespace dsv3::cuda {

// cuBLASLt is column-major. Row-major y [M, N] is column-major y^T [N, M] = W x^T: A is w stored
// [N, K] row-major, i.e. column-major K x N used transposed ("TN", the layout FP8 requires), and B
// is x, column-major K x M.
GemmRunner::GemmRunner(cudaStream_t stream) : stream_(stream) {
  DSV3_CUBLAS_CHECK(cublasLtCreate(&lt_));
  DSV3_CUBLAS_CHECK(cublasCreate(&blas_));
  DSV3_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
  DSV3_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  DSV3_CUBLAS_CHECK(cublasSetWorkspace(blas_, workspace_, workspace_bytes_));
}

GemmRunner::~GemmRunner() {
  for (auto& [key, p] : plans_) {
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.d) cublasLtMatrixLayoutDestroy(p.d);
  }
  cudaFree(workspace_);
  cublasDestroy(blas_);
  cublasLtDestroy(lt_);
}

bool GemmRunner::find_algorithm(Plan& p) {
  cublasLtMatmulPreference_t preference = nullptr;
  DSV3_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  DSV3_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes_, sizeof(workspace_bytes_)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.d, p.d, preference, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  p.ok = status == CUBLAS_STATUS_SUCCESS && found > 0;
  if (p.ok) p.algo = result.algo;
  return p.ok;
}

GemmRunner::Plan& GemmRunner::plan(Kind kind, int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldy) {
  auto [it, inserted] = plans_.try_emplace({kind, M, N, K, ldx, ldy});
  Plan& p = it->second;
  if (!inserted) return p;
  const cudaDataType_t in_type = kind == Kind::Bf16  ? CUDA_R_16BF
                                 : kind == Kind::F16 ? CUDA_R_16F
                                 : kind == Kind::F32 ? CUDA_R_32F
                                                     : CUDA_R_8F_E4M3;
  DSV3_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, plain = CUBLAS_OP_N;
  DSV3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  DSV3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &plain, sizeof(plain)));
  if (kind == Kind::F16) {
    const cublasLtPointerMode_t on_device = CUBLASLT_POINTER_MODE_DEVICE;
    DSV3_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_POINTER_MODE, &on_device, sizeof(on_device)));
  }
  if (kind == Kind::Fp8BlockScaled) {
    const int32_t w_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    const int32_t x_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    DSV3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &w_mode, sizeof(w_mode)));
    DSV3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &x_mode, sizeof(x_mode)));
    // cuBLASLt offers no block-scaled algorithm while the scale pointers are unset (cuBLASLt 13.1 on
    // an H100), so the query sees stand-ins; each product sets its own.
    for (const auto pointer : {CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER})
      DSV3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, pointer, &workspace_, sizeof(workspace_)));
  }
  // A = w (K x N, transposed), B = x (K x M): y^T [N, M] column-major is y row-major.
  DSV3_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, in_type, uint64_t(K), uint64_t(N), K));
  DSV3_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, in_type, uint64_t(K), uint64_t(M), ldx));
  DSV3_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, CUDA_R_32F, uint64_t(N), uint64_t(M), ldy));
  find_algorithm(p);
  return p;
}

void GemmRunner::bf16(const uint16_t* x, const uint16_t* w, int64_t M, int64_t N, int64_t K, float* y, int64_t ldy,
                      bool accumulate) {
  Plan& p = plan(Kind::Bf16, M, N, K, K, ldy);
  if (!p.ok) fail("cuBLASLt has no BF16 algorithm for a ", M, "x", N, "x", K, " product");
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  DSV3_CUBLAS_CHECK(cublasLtMatmul(lt_, p.desc, &one, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &p.algo, workspace_,
                                   workspace_bytes_, stream_));
}

void GemmRunner::f16(const uint16_t* x, const uint16_t* w, int64_t M, int64_t N, int64_t K, const float* alpha_beta,
                     float* y, int64_t ldy) {
  Plan& p = plan(Kind::F16, M, N, K, K, ldy);
  if (!p.ok) fail("cuBLASLt has no FP16 algorithm for a ", M, "x", N, "x", K, " product");
  DSV3_CUBLAS_CHECK(cublasLtMatmul(lt_, p.desc, alpha_beta, w, p.a, x, p.b, alpha_beta + 1, y, p.d, y, p.d, &p.algo,
                                   workspace_, workspace_bytes_, stream_));
}

void GemmRunner::f32(const float* x, int64_t ldx, const float* w, int64_t M, int64_t N, int64_t K, float* y,
                     int64_t ldy) {
  Plan& p = plan(Kind::F32, M, N, K, ldx, ldy);
  if (!p.ok) fail("cuBLASLt has no float32 algorithm for a ", M, "x", N, "x", K, " product");
  const float one = 1.0f, zero = 0.0f;
  DSV3_CUBLAS_CHECK(cublasLtMatmul(lt_, p.desc, &one, w, p.a, x, p.b, &zero, y, p.d, y, p.d, &p.algo, workspace_,
                                   workspace_bytes_, stream_));
}

bool GemmRunner::fp8_supported(int64_t M, int64_t N, int64_t K, int64_t ldy) {
  return M % 4 == 0 && (K + 127) / 128 % 4 == 0 && K % 16 == 0 && N % 16 == 0 && ldy % 4 == 0 &&
         plan(Kind::Fp8BlockScaled, M, N, K, K, ldy).ok;
}

void GemmRunner::fp8_block_scaled(const uint8_t* x, const float* x_scales, const uint8_t* w, const float* w_scales,
                                  int64_t M, int64_t N, int64_t K, float* y, int64_t ldy) {
  Plan& p = plan(Kind::Fp8BlockScaled, M, N, K, K, ldy);
  DSV3_ASSERT(p.ok);
  DSV3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scales, sizeof(w_scales)));
  DSV3_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scales, sizeof(x_scales)));
  const float one = 1.0f, zero = 0.0f;
  DSV3_CUBLAS_CHECK(cublasLtMatmul(lt_, p.desc, &one, w, p.a, x, p.b, &zero, y, p.d, y, p.d, &p.algo, workspace_,
                                   workspace_bytes_, stream_));
}

}  // namespace dsv3::cuda
