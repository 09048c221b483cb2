#include "dsv3/backend/cpu/cpu_backend.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "dsv3/backend/cpu/cpu_linear.h"
#include "dsv3/util/token_draw.h"
#include "dsv3/util/error.h"
#include "dsv3/util/numeric.h"
#include "dsv3/util/thread_pool.h"

namespace dsv3 {
namespace cpu {

Buffer host_alloc(size_t n_bytes) {
  constexpr size_t kAlign = 64;
  const size_t rounded = std::max<size_t>(kAlign, (n_bytes + kAlign - 1) / kAlign * kAlign);
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p) fail("out of host memory allocating ", n_bytes, " bytes");
  return Buffer(p, n_bytes, [](void* q) { std::free(q); });
}

}  // namespace cpu

using cpu::row_ptr;

ActBuffer CpuBackend::alloc(int64_t rows, int64_t cols) {
  Buffer memory = cpu::host_alloc(size_t(rows * cols) * sizeof(float));
  Act view{memory.data(), rows, cols, cols, 4};
  return {std::move(memory), view};
}

ActBuffer CpuBackend::upload(std::span<const float> values, int64_t rows, int64_t cols) {
  DSV3_ASSERT(int64_t(values.size()) == rows * cols);
  ActBuffer b = alloc(rows, cols);
  std::memcpy(b.view.data, values.data(), values.size() * sizeof(float));
  return b;
}

void CpuBackend::download(const Act& src, float* dst) {
  for (int64_t r = 0; r < src.rows; ++r) std::memcpy(dst + r * src.cols, row_ptr(src, r), size_t(src.cols) * 4);
}

Buffer CpuBackend::alloc_cache(const LatentCacheLayout& layout) {
  return cpu::host_alloc(size_t(layout.n_layers * layout.layer_elems() * cache_value_bytes()));
}

void CpuBackend::embed(const TensorView& table, const Indices& indices, const Act& fed, const Act& out) {
  const std::span<const int32_t> ids = cpu::host_values(indices);
  const int64_t vocab = table.shape.at(0);
  const LinearWeight as_rows{table, {}, 128, 128};
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t id = ids[i];
    if (id < 0 && -1 - id < fed.rows) id = int64_t(*row_ptr(fed, -1 - id));
    if (id < 0 || id >= vocab) fail("token id ", id, " is outside the vocabulary (", vocab, ")");
    cpu::weight_row_to_f32(as_rows, id, row_ptr(out, int64_t(i)));
  }
}

void CpuBackend::gather_rows(const Act& x, const Indices& indices, const Act& out) {
  const std::span<const int32_t> rows = cpu::host_values(indices);
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(row_ptr(out, int64_t(i)), row_ptr(x, rows[i]), size_t(x.cols) * 4);
}

void CpuBackend::pick_tokens(const Act& logits, const Indices& draws, bool, const Act& out) {
  const std::span<const int32_t> d = cpu::host_values(draws);
  for (int64_t r = 0; r < logits.rows; ++r) {
    const TokenDraw draw = TokenDraw::unpack(d.subspan(size_t(TokenDraw::kPacked * r), TokenDraw::kPacked));
    *row_ptr(out, r) = float(pick_token({row_ptr(logits, r), size_t(logits.cols)}, draw));
  }
}

void CpuBackend::rmsnorm(const Act& x, const Act& weight, float eps, const Act& out) {
  const float* w = row_ptr(weight, 0);
  ThreadPool::global().parallel_for(x.rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = row_ptr(x, r);
      float* yr = row_ptr(out, r);
      const float mean_square = cpu::dot_f32(xr, xr, x.cols) / float(x.cols);
      const float inv_rms = 1.0f / std::sqrt(mean_square + eps);
      for (int64_t c = 0; c < x.cols; ++c) yr[c] = w[c] * (xr[c] * inv_rms);
    }
  });
}

void CpuBackend::linear(const Act& x, const LinearWeight& w, const Act& out) {
  DSV3_ASSERT(x.cols == w.in_features() && out.cols == w.out_features() && x.rows == out.rows,
              "linear ", w.weight.name);
  cpu::linear_f32(w, static_cast<const float*>(x.data), x.rows, x.stride, static_cast<float*>(out.data),
                  out.stride);
}

void CpuBackend::add(const Act& x, const Act& y) {
  for (int64_t r = 0; r < x.rows; ++r) {
    float* xr = row_ptr(x, r);
    const float* yr = row_ptr(y, r);
    for (int64_t c = 0; c < x.cols; ++c) xr[c] += yr[c];
  }
}

void CpuBackend::silu_mul(const Act& gate, const Act& up, const Act& out) {
  for (int64_t r = 0; r < gate.rows; ++r) {
    const float* g = row_ptr(gate, r);
    const float* u = row_ptr(up, r);
    float* o = row_ptr(out, r);
    for (int64_t c = 0; c < gate.cols; ++c) o[c] = g[c] / (1.0f + std::exp(-g[c])) * u[c];
  }
}

void CpuBackend::rope(const Act& x, int64_t head_dim, int64_t offset, const RopeTable& table,
                      const Indices& indices) {
  const std::span<const int32_t> positions = cpu::host_values(indices);
  const float* inv_freq = row_ptr(table.inv_freq.view, 0);
  const int64_t n_pairs = table.inv_freq.view.cols;
  const int64_t n_heads = x.cols / head_dim;
  for (int64_t r = 0; r < x.rows; ++r) {
    float* xr = row_ptr(x, r);
    for (int64_t i = 0; i < n_pairs; ++i) {
      // The angle in float32, as transformers computes inv_freq @ position.
      const float angle = float(positions[size_t(r)]) * inv_freq[i];
      const float cos_a = float(std::cos(double(angle))) * table.attention_factor;
      const float sin_a = float(std::sin(double(angle))) * table.attention_factor;
      for (int64_t h = 0; h < n_heads; ++h) {
        float* pair = xr + h * head_dim + offset + 2 * i;
        const float a = pair[0], b = pair[1];
        pair[0] = a * cos_a - b * sin_a;
        pair[1] = b * cos_a + a * sin_a;
      }
    }
  }
}

void CpuBackend::cache_write(const Buffer& cache, const LatentCacheLayout& layout, int64_t layer,
                             const Indices& slots, const Act& rows) {
  DSV3_ASSERT(rows.cols == layout.row_width() && slots.size == rows.rows);
  for (int64_t i = 0; i < rows.rows; ++i)
    std::memcpy(cpu::cache_row(cache, layout, layer, slots.data[i]), row_ptr(rows, i), size_t(rows.cols) * 4);
}

}  // namespace dsv3
