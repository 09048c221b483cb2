// MLA on the GPU over the paged latent cache. Prefill expands the context through kv_b_proj and runs
// causal attention in one pass over the keys (mla_prefill_flash.cu: FP16 operands, 10 bits of
// mantissa, float32 sums); head widths that kernel does not take run as two cuBLAS batched products
// (one batch entry a head) around a softmax kernel, a chunk of query rows at a time so that the
// scores stay within a memory budget, on TF32 tensor cores (10 bits as well). BF16 operands (7 bits)
// cost the fixtures 3e-2 of their tolerance. Decode stays in the latent space (mla_decode.cu).
#include <algorithm>

#include "dsv3/backend/cuda/cuda_backend.h"

namespace dsv3 {
namespace {

constexpr size_t kScoreBudgetBytes = size_t(1) << 30;  // float32 scores of one prefill chunk

cuda::MlaDims dims_of(const MlaShape& s) {
  return {int(s.n_heads), int(s.qk_nope_head_dim), int(s.qk_rope_head_dim), int(s.v_head_dim), int(s.kv_lora_rank),
          s.softmax_scale};
}

cuda::DeviceCacheLayer cache_layer(const Buffer& cache, const LatentCacheLayout& layout, int64_t layer) {
  return {static_cast<cuda::CacheValue*>(cache.data()) + layer * layout.layer_elems(), layout.page_size,
          layout.row_width()};
}

}  // namespace

using cuda::matrix;

void CudaBackend::cache_write(const Buffer& cache, const LatentCacheLayout& layout, int64_t layer,
                              const Indices& slots, const Act& rows) {
  DSV3_ASSERT(rows.cols == layout.row_width() && slots.size == rows.rows);
  cuda::launch_cache_write(cache_layer(cache, layout, layer), slots.data, matrix(rows), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::mla_rope_and_cache(const MlaShape& shape, const Act& q, const Act& kv, const Act& kv_norm, float eps,
                                     const RopeTable& rope, const Indices& positions, const Buffer& cache,
                                     const LatentCacheLayout& layout, int64_t layer, const Indices& slots) {
  DSV3_ASSERT(kv.cols == layout.row_width() && slots.size == kv.rows && q.rows == kv.rows &&
              rope.inv_freq.view.cols * 2 == shape.qk_rope_head_dim);
  if (shape.qk_rope_head_dim > 2 * cuda::kMaxRopePairs)
    fail("--device cuda: MLA takes qk_rope_head_dim <= ", 2 * cuda::kMaxRopePairs, " (the model has ",
         shape.qk_rope_head_dim, ")");
  cuda::launch_mla_rope_and_cache(dims_of(shape), matrix(q), matrix(kv), static_cast<const float*>(kv_norm.data), eps,
                                  static_cast<const float*>(rope.inv_freq.view.data), rope.attention_factor,
                                  positions.data, cache_layer(cache, layout, layer), slots.data, stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

void CudaBackend::mla_prefill(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj, const Buffer& cache,
                              const LatentCacheLayout& layout, int64_t layer, const CacheSequence& sequence,
                              int64_t start, const Act& out) {
  const cuda::MlaDims d = dims_of(shape);
  const int64_t n = q.rows, context = start + n, H = d.n_heads;
  Buffer table = to_device(std::span<const int32_t>(sequence.block_table));
  ActBuffer latent = alloc(context, layout.row_width());
  cuda::launch_cache_gather(cache_layer(cache, layout, layer), static_cast<const int32_t*>(table.data()),
                            matrix(latent.view), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
  ActBuffer kv = alloc(context, H * d.kv_width());
  linear(latent.view.cols_slice(0, d.d_c), kv_b_proj, kv.view);
  if (cuda::mla_prefill_flash_ok(d)) {
    const Buffer operands = scratch(cuda::mla_prefill_flash_scratch_bytes(d, context));
    cuda::launch_mla_prefill_flash(d, matrix(q), matrix(kv.view), matrix(latent.view), start, operands.data(),
                                   matrix(out), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    return;
  }

  Buffer q_packed = scratch(size_t(n * H * d.qk()) * 4);
  Buffer k = scratch(size_t(context * H * d.qk()) * 4), v = scratch(size_t(context * H * d.v_dim) * 4);
  cuda::launch_mla_pack_q(d, matrix(q), static_cast<float*>(q_packed.data()), stream_);
  cuda::launch_mla_pack_kv(d, matrix(kv.view), matrix(latent.view), static_cast<float*>(k.data()),
                           static_cast<float*>(v.data()), stream_);
  DSV3_CUDA_CHECK_LAUNCH();

  const auto* qp = static_cast<const float*>(q_packed.data());
  const int64_t chunk_rows = std::clamp<int64_t>(int64_t(kScoreBudgetBytes / (size_t(H * context) * 4)), 1, n);
  const float one = 1.0f, zero = 0.0f;
  for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, n - r0), keys = start + r0 + rows;
    Buffer scores = scratch(size_t(H * rows * keys) * 4), probs = scratch(size_t(H * rows * keys) * 4);
    // scores_h [rows, keys] (column-major keys x rows) = K_h Q_h^T.
    DSV3_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        gemm_->blas(), CUBLAS_OP_T, CUBLAS_OP_N, int(keys), int(rows), d.qk(), &one, k.data(), CUDA_R_32F,
        int(H * d.qk()), d.qk(), qp + r0 * H * d.qk(), CUDA_R_32F, int(H * d.qk()), d.qk(), &zero, scores.data(),
        CUDA_R_32F, int(keys), rows * keys, int(H), CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    cuda::launch_mla_causal_softmax(static_cast<const float*>(scores.data()), int(H), rows, keys, start + r0,
                                    d.softmax_scale, static_cast<float*>(probs.data()), stream_);
    DSV3_CUDA_CHECK_LAUNCH();
    // out_h [rows, v_dim] (column-major v_dim x rows, ld = out.stride) = V_h^T P_h^T.
    DSV3_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        gemm_->blas(), CUBLAS_OP_N, CUBLAS_OP_N, d.v_dim, int(rows), int(keys), &one, v.data(), CUDA_R_32F,
        int(H * d.v_dim), d.v_dim, probs.data(), CUDA_R_32F, int(keys), rows * keys, &zero,
        static_cast<float*>(out.data) + r0 * out.stride, CUDA_R_32F, int(out.stride), d.v_dim, int(H),
        CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  }
}

cuda::DeviceWeight CudaBackend::decode_kv_b(const LinearWeight& w, const cuda::MlaDims& dims) {
  const cuda::DeviceWeight stored = cuda::weight(w);
  if (cuda::decode_kv_b_as_stored(stored, dims)) return stored;
  return {float_weight(w), DType::F32, stored.rows, stored.cols, nullptr};
}

// The batch's items are laid out as cuda::MlaItem (DecodeBatch's three values an item).
static_assert(sizeof(cuda::MlaItem) == 3 * sizeof(int32_t));

void CudaBackend::mla_decode(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj, const Buffer& cache,
                             const LatentCacheLayout& layout, int64_t layer, const DecodeBatch& batch,
                             const Act& out) {
  const cuda::MlaDims d = dims_of(shape);
  if (d.d_c > cuda::kMaxDecodeLatent || d.rope > cuda::kMaxDecodeRope || d.nope > cuda::kMaxDecodeNope)
    fail("--device cuda: MLA decode takes kv_lora_rank <= ", cuda::kMaxDecodeLatent, ", qk_rope_head_dim <= ",
         cuda::kMaxDecodeRope, " and qk_nope_head_dim <= ", cuda::kMaxDecodeNope, " (the model has ", d.d_c, ", ",
         d.rope, " and ", d.nope, ")");
  const int n_items = int(batch.n_items);
  const auto* items_ptr = reinterpret_cast<const cuda::MlaItem*>(batch.items.data);
  // No context is longer than all the items' pages together, in this step or in a replay of it (a
  // plan for the pages at recording left a graph recorded at 17 pages, 1088 rows, to be replayed up
  // to 32, its splits up to twice as long as planned).
  const int64_t table_values = std::max(batch.tables.size, batch.tables.room);
  const int64_t context_bound = std::max<int64_t>(1, table_values * layout.page_size);

  Buffer q_latent = scratch(size_t(n_items) * size_t(d.n_heads * d.d_c) * 4);
  const cuda::DeviceWeight w = decode_kv_b(kv_b_proj, d);
  cuda::launch_mla_absorb(d, matrix(q), items_ptr, n_items, w, static_cast<float*>(q_latent.data()), stream_);
  DSV3_CUDA_CHECK_LAUNCH();

  const cuda::MlaDecodePlan plan = cuda::plan_mla_decode(d, n_items, context_bound, sm_count_);
  // The splits' parts for the merge; with one split the attention writes o_latent and needs none.
  const Buffer partial =
      plan.n_splits > 1 ? scratch(size_t(n_items) * plan.n_splits * d.n_heads * (d.d_c + 2) * 4) : Buffer{};
  Buffer o_latent = scratch(size_t(n_items) * size_t(d.n_heads * d.d_c) * 4);
  cuda::launch_mla_decode_attention(d, matrix(q), static_cast<const float*>(q_latent.data()), items_ptr, n_items,
                                    batch.tables.data, cache_layer(cache, layout, layer),
                                    plan, static_cast<float*>(partial.data()), static_cast<float*>(o_latent.data()),
                                    stream_);
  DSV3_CUDA_CHECK_LAUNCH();
  cuda::launch_mla_unabsorb(d, static_cast<const float*>(o_latent.data()), items_ptr, n_items, w, matrix(out), stream_);
  DSV3_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv3
