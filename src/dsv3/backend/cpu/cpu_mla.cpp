// MLA attention on the CPU over the paged latent cache (REFERENCE.md, MLA).
// Prefill expands the cache through kv_b_proj into per-head k_nope and v and runs causal attention;
// decode keeps the cache latent: q_nope is absorbed through W_uk into the d_c space, attention runs
// as MQA over (c_kv, k_pe), and the latent output is mapped back through W_uv.
#include <immintrin.h>

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

// o[t] = sum over j < n_keys of p[t][j] * v[j], for t < n_queries (at most cpu::kBlockTokens): p's
// rows p_stride apart, v's rows v_stride apart and `width` wide, o's rows o_stride apart. Each value
// row is loaded once for all the queries.
void weighted_values(const float* p, int64_t p_stride, int n_queries, int64_t n_keys, const float* v, int64_t v_stride,
                     int64_t width, float* o, int64_t o_stride) {
  int64_t c = 0;
#if defined(__AVX512F__)
  for (; c < width; c += 16) {
    const __mmask16 mask = width - c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (width - c)) - 1);
    __m512 acc[cpu::kBlockTokens];
    for (int t = 0; t < n_queries; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n_keys; ++j) {
      const __m512 value = _mm512_maskz_loadu_ps(mask, v + j * v_stride + c);
      for (int t = 0; t < n_queries; ++t) acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(p[t * p_stride + j]), value, acc[t]);
    }
    for (int t = 0; t < n_queries; ++t) _mm512_mask_storeu_ps(o + t * o_stride + c, mask, acc[t]);
  }
#endif
  for (; c < width; ++c)  // everything without AVX-512
    for (int t = 0; t < n_queries; ++t) {
      float sum = 0.0f;
      for (int64_t j = 0; j < n_keys; ++j) sum += p[t * p_stride + j] * v[j * v_stride + c];
      o[t * o_stride + c] = sum;
    }
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

  // Each head's keys contiguous, keys [context, n_heads, qk] = (the head's k_nope, the shared k_pe),
  // so that block_dots takes 4 keys against 4 queries at a time.
  std::vector<float> keys(static_cast<size_t>(context * shape.n_heads * qk));
  ThreadPool::global().parallel_for(context, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j)
      for (int64_t h = 0; h < shape.n_heads; ++h) {
        float* key = keys.data() + (j * shape.n_heads + h) * qk;
        std::copy_n(kv.data() + (j * shape.n_heads + h) * kv_width, nope, key);
        std::copy_n(latent.data() + j * layout.row_width() + d_c, rope, key + nope);
      }
  });

  // A task: one head's queries i0 .. i0 + kBlockTokens - 1, which see keys 0 .. start + i; scores and
  // then probabilities in a row a query, zero past what the query sees.
  constexpr int kQueries = cpu::kBlockTokens;
  const int64_t n_blocks = (n + kQueries - 1) / kQueries;
  ThreadPool::global().parallel_for(shape.n_heads * n_blocks, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(kQueries * context));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / n_blocks, i0 = task % n_blocks * kQueries;
      const int queries = int(std::min<int64_t>(kQueries, n - i0));
      const int64_t seen = start + i0 + queries;  // keys the block's last query sees
      for (int64_t j0 = 0; j0 < seen; j0 += cpu::kBlockRows)
        cpu::block_dots(keys.data() + (j0 * shape.n_heads + h) * qk, shape.n_heads * qk,
                        int(std::min<int64_t>(cpu::kBlockRows, seen - j0)), row_ptr(q, i0) + h * qk, q.stride,
                        queries, qk, scores.data() + j0, context);
      for (int t = 0; t < queries; ++t) {
        float* row = scores.data() + t * context;
        const int64_t visible = start + i0 + t + 1;  // causal: positions 0..start+i
        for (int64_t j = 0; j < visible; ++j) row[j] *= shape.softmax_scale;
        softmax_inplace(row, visible);
        std::fill(row + visible, row + seen, 0.0f);
      }
      weighted_values(scores.data(), context, queries, seen, kv.data() + h * kv_width + nope, shape.n_heads * kv_width,
                      v_dim, row_ptr(out, i0) + h * v_dim, out.stride);
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
