// MLA attention on the CPU over the paged latent cache (REFERENCE.md, MLA).
// Prefill expands the cache through kv_b_proj into per-head k_nope and v and runs causal attention;
// decode keeps the cache latent: q_nope is absorbed through W_uk into the d_c space, attention runs
// as MQA over (c_kv, k_pe), and the latent output is mapped back through W_uv.
#include <algorithm>
#include <cmath>
#include <vector>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/cpu/cpu_linear.h"
#include "dsv3/util/error.h"
#include "dsv3/util/thread_pool.h"

namespace dsv3 {
namespace {

using cpu::row_ptr;

// In place: scores -> softmax(scores), in float32 with the max subtracted.
void softmax_inplace(float* scores, int64_t n) {
  const float max_score = *std::max_element(scores, scores + n);
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  for (int64_t j = 0; j < n; ++j) scores[j] /= sum;
}

}  // namespace

void CpuBackend::mla_prefill(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj,
                             const Buffer& cache, const LatentCacheLayout& layout, int64_t layer,
                             const CacheSequence& sequence, int64_t start, const Act& out) {
  const int64_t n = q.rows, context = start + n;
  const int64_t d_c = shape.kv_lora_rank, rope = shape.qk_rope_head_dim;
  const int64_t nope = shape.qk_nope_head_dim, v_dim = shape.v_head_dim, qk = shape.qk_head_dim();
  const int64_t kv_width = nope + v_dim;  // per head: k_nope then v

  // The context's latent rows, contiguous, then expanded: kv [context, n_heads * (nope + v)].
  std::vector<float> latent(static_cast<size_t>(context * layout.row_width()));
  for (int64_t j = 0; j < context; ++j)
    std::copy_n(cpu::cache_row(cache, layout, layer, cache_slot(layout, sequence.block_table, j)), layout.row_width(),
                latent.begin() + j * layout.row_width());
  std::vector<float> kv(static_cast<size_t>(context * shape.n_heads * kv_width));
  cpu::linear_f32(kv_b_proj, latent.data(), context, layout.row_width(), kv.data(), shape.n_heads * kv_width);

  ThreadPool::global().parallel_for(shape.n_heads * n, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(context));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / n, i = task % n;
      const float* q_head = row_ptr(q, i) + h * qk;
      const int64_t visible = start + i + 1;  // causal: positions 0..start+i
      for (int64_t j = 0; j < visible; ++j) {
        const float* k_nope = kv.data() + (j * shape.n_heads + h) * kv_width;
        const float* k_pe = latent.data() + j * layout.row_width() + d_c;
        scores[size_t(j)] =
            (cpu::dot_f32(q_head, k_nope, nope) + cpu::dot_f32(q_head + nope, k_pe, rope)) * shape.softmax_scale;
      }
      softmax_inplace(scores.data(), visible);
      float* o = row_ptr(out, i) + h * v_dim;
      std::fill_n(o, v_dim, 0.0f);
      for (int64_t j = 0; j < visible; ++j) {
        const float* v = kv.data() + (j * shape.n_heads + h) * kv_width + nope;
        const float p = scores[size_t(j)];
        for (int64_t c = 0; c < v_dim; ++c) o[c] += p * v[c];
      }
    }
  });
}

void CpuBackend::mla_decode(const MlaShape& shape, const Act& q, const LinearWeight& kv_b_proj,
                            const Buffer& cache, const LatentCacheLayout& layout, int64_t layer,
                            const DecodeBatch& batch, const Act& out) {
  const int64_t d_c = shape.kv_lora_rank, rope = shape.qk_rope_head_dim;
  const int64_t nope = shape.qk_nope_head_dim, v_dim = shape.v_head_dim, qk = shape.qk_head_dim();
  const int64_t kv_width = nope + v_dim;
  const int64_t n_items = batch.n_items;

  ThreadPool::global().parallel_for(n_items * shape.n_heads, [&](int64_t begin, int64_t end) {
    std::vector<float> w_row(static_cast<size_t>(d_c)), q_latent(static_cast<size_t>(d_c));
    std::vector<float> o_latent(static_cast<size_t>(d_c)), scores;
    for (int64_t task = begin; task < end; ++task) {
      const int32_t* item = batch.items.data + 3 * (task / shape.n_heads);
      const int64_t q_row = item[0], context_len = item[1];
      const std::span<const int32_t> block_table(batch.tables.data + item[2], size_t(batch.tables.size - item[2]));
      const int64_t h = task % shape.n_heads;
      const float* q_head = row_ptr(q, q_row) + h * qk;

      // q_latent = W_uk^T q_nope: W_uk is rows [h*kv_width, h*kv_width + nope) of kv_b_proj.
      std::fill(q_latent.begin(), q_latent.end(), 0.0f);
      for (int64_t r = 0; r < nope; ++r) {
        cpu::weight_row_to_f32(kv_b_proj, h * kv_width + r, w_row.data());
        const float qr = q_head[r];
        for (int64_t c = 0; c < d_c; ++c) q_latent[size_t(c)] += qr * w_row[size_t(c)];
      }

      scores.resize(size_t(context_len));
      for (int64_t j = 0; j < context_len; ++j) {
        const float* row = cpu::cache_row(cache, layout, layer, cache_slot(layout, block_table, j));
        scores[size_t(j)] =
            (cpu::dot_f32(q_latent.data(), row, d_c) + cpu::dot_f32(q_head + nope, row + d_c, rope)) *
            shape.softmax_scale;
      }
      softmax_inplace(scores.data(), context_len);
      std::fill(o_latent.begin(), o_latent.end(), 0.0f);
      for (int64_t j = 0; j < context_len; ++j) {
        const float* c_kv = cpu::cache_row(cache, layout, layer, cache_slot(layout, block_table, j));
        const float p = scores[size_t(j)];
        for (int64_t c = 0; c < d_c; ++c) o_latent[size_t(c)] += p * c_kv[c];
      }

      // o = W_uv o_latent: W_uv is rows [h*kv_width + nope, (h+1)*kv_width) of kv_b_proj.
      float* o = row_ptr(out, q_row) + h * v_dim;
      for (int64_t r = 0; r < v_dim; ++r) o[r] = cpu::weight_row_dot(kv_b_proj, h * kv_width + nope + r, o_latent.data());
    }
  });
}

}  // namespace dsv3
