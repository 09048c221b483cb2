// Bytes and FLOPs: a decode step (one token) reads every weight byte once and does 2 FLOPs per
// weight, so it is bound by memory bandwidth; the kernels below widen BF16 (shift by 16) and FP8
// E4M3 (bit placement into float32, then a multiply by 2^120 to re-bias the exponent, exact for
// subnormals too) in registers and accumulate in float32, one 128-column block scale at a time.
// Several tokens (a prefill) do 2 FLOPs per weight per token: there the rows are widened once and
// multiplied in register blocks of rows by tokens, so that the FMAs, not the loads, set the pace.
#include "dsv3/backend/cpu/cpu_linear.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "dsv3/util/error.h"
#include "dsv3/util/numeric.h"
#include "dsv3/util/thread_pool.h"

namespace dsv3::cpu {
namespace {

constexpr float kTwoPow120 = 1.329228e36f;  // 2^120: E4M3 bias 7 to float32 bias 127

const float* block_scales_row(const LinearWeight& w, int64_t row) {
  const int64_t n_col_blocks = w.scale_inv.shape.at(1);
  return reinterpret_cast<const float*>(w.scale_inv.data) + (row / w.block_out) * n_col_blocks;
}

#if defined(__AVX512F__)
inline __m512 load_bf16(const uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// E4M3 to float32: sign-extending the byte and shifting it left by 20 puts the sign in bit 31 and
// exponent and mantissa in bits 20-26 (bits 27-30 get copies of the sign and are masked off).
inline __m512 load_fp8_e4m3(const uint8_t* p) {
  const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i bits = _mm512_and_si512(_mm512_slli_epi32(v, 20), _mm512_set1_epi32(int32_t(0x87f00000u)));
  return _mm512_mul_ps(_mm512_castsi512_ps(bits), _mm512_set1_ps(kTwoPow120));
}
#endif

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(load_bf16(w + i), _mm512_loadu_ps(x + i), acc0);
    acc1 = _mm512_fmadd_ps(load_bf16(w + i + 16), _mm512_loadu_ps(x + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load_bf16(w + i), _mm512_loadu_ps(x + i), acc0);
  sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i) sum += bf16_to_f32(w[i]) * x[i];
  return sum;
}

// Sum over a row of fp8 weights times x, each 128-column block's partial sum times its scale.
// Partial sums stay in vector registers; the row is reduced to a scalar once.
float dot_fp8_e4m3_row(const uint8_t* w, const float* scales, int64_t block, const float* x, int64_t n) {
  float sum = 0.0f;
  int64_t c = 0;
#if defined(__AVX512F__)
  if (block % 32 == 0) {
    __m512 acc = _mm512_setzero_ps();
    for (; c + block <= n; c += block) {
      __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
      for (int64_t i = c; i < c + block; i += 32) {
        b0 = _mm512_fmadd_ps(load_fp8_e4m3(w + i), _mm512_loadu_ps(x + i), b0);
        b1 = _mm512_fmadd_ps(load_fp8_e4m3(w + i + 16), _mm512_loadu_ps(x + i + 16), b1);
      }
      acc = _mm512_fmadd_ps(_mm512_add_ps(b0, b1), _mm512_set1_ps(scales[c / block]), acc);
    }
    sum = _mm512_reduce_add_ps(acc);
  }
#endif
  // The partial last block (and everything without AVX-512).
  for (; c < n; c += block) {
    float partial = 0.0f;
    for (int64_t i = c; i < std::min(n, c + block); ++i) partial += fp8_e4m3_to_f32(w[i]) * x[i];
    sum += partial * scales[c / block];
  }
  return sum;
}

// A block of block_dots: 4 x 4 float32 sums in 16 vector registers, each step of 16 columns loading 8
// vectors for 16 FMAs. One row dotted with one token at a time loads two vectors for each FMA, and the
// load ports, not the FMA ones, set its pace.
template <int kRows, int kTokens>
void block_dots_of(const float* rows, int64_t row_stride, const float* x, int64_t x_stride, int64_t n, float* y,
                   int64_t y_stride) {
  int64_t i = 0;
  float sums[kRows][kTokens] = {};
#if defined(__AVX512F__)
  __m512 acc[kRows][kTokens];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_ps();
  auto step = [&](int64_t at, __mmask16 mask) {
    __m512 xs[kTokens];
    for (int t = 0; t < kTokens; ++t) xs[t] = _mm512_maskz_loadu_ps(mask, x + t * x_stride + at);
    for (int r = 0; r < kRows; ++r) {
      const __m512 wr = _mm512_maskz_loadu_ps(mask, rows + r * row_stride + at);
      for (int t = 0; t < kTokens; ++t) acc[r][t] = _mm512_fmadd_ps(wr, xs[t], acc[r][t]);
    }
  };
  for (; i + 16 <= n; i += 16) step(i, __mmask16(0xffff));
  if (i < n) step(i, __mmask16((1u << (n - i)) - 1)), i = n;
  for (int r = 0; r < kRows; ++r)
    for (int t = 0; t < kTokens; ++t) sums[r][t] = _mm512_reduce_add_ps(acc[r][t]);
#endif
  for (; i < n; ++i)  // everything without AVX-512
    for (int r = 0; r < kRows; ++r)
      for (int t = 0; t < kTokens; ++t) sums[r][t] += rows[r * row_stride + i] * x[t * x_stride + i];
  for (int r = 0; r < kRows; ++r)
    for (int t = 0; t < kTokens; ++t) y[t * y_stride + r] = sums[r][t];
}

}  // namespace

void block_dots(const float* rows, int64_t row_stride, int n_rows, const float* x, int64_t x_stride, int n_tokens,
                int64_t n, float* y, int64_t y_stride) {
  using Dots = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
  static constexpr Dots kDots[kBlockRows][kBlockTokens] = {
      {block_dots_of<1, 1>, block_dots_of<1, 2>, block_dots_of<1, 3>, block_dots_of<1, 4>},
      {block_dots_of<2, 1>, block_dots_of<2, 2>, block_dots_of<2, 3>, block_dots_of<2, 4>},
      {block_dots_of<3, 1>, block_dots_of<3, 2>, block_dots_of<3, 3>, block_dots_of<3, 4>},
      {block_dots_of<4, 1>, block_dots_of<4, 2>, block_dots_of<4, 3>, block_dots_of<4, 4>}};
  kDots[n_rows - 1][n_tokens - 1](rows, row_stride, x, x_stride, n, y, y_stride);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void weight_row_to_f32(const LinearWeight& w, int64_t row, float* dst) {
  const int64_t n = w.in_features();
  switch (w.weight.dtype) {
    case DType::F32: {
      const float* src = reinterpret_cast<const float*>(w.weight.data) + row * n;
      std::copy(src, src + n, dst);
      break;
    }
    case DType::BF16: {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(w.weight.data) + row * n;
      int64_t i = 0;
#if defined(__AVX512F__)
      for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_bf16(src + i));
#endif
      for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
      break;
    }
    case DType::F16: {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(w.weight.data) + row * n;
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
      break;
    }
    case DType::F8_E4M3: {
      const uint8_t* src = w.weight.data + row * n;
      const float* scales = block_scales_row(w, row);
      for (int64_t c = 0; c < n; c += w.block_in) {
        const float scale = scales[c / w.block_in];
        const int64_t end = std::min(n, c + w.block_in);
        int64_t i = c;
#if defined(__AVX512F__)
        for (; i + 16 <= end; i += 16)
          _mm512_storeu_ps(dst + i, _mm512_mul_ps(load_fp8_e4m3(src + i), _mm512_set1_ps(scale)));
#endif
        for (; i < end; ++i) dst[i] = fp8_e4m3_to_f32(src[i]) * scale;
      }
      break;
    }
  }
}

float weight_row_dot(const LinearWeight& w, int64_t row, const float* x) {
  const int64_t n = w.in_features();
  switch (w.weight.dtype) {
    case DType::F32:
      return dot_f32(reinterpret_cast<const float*>(w.weight.data) + row * n, x, n);
    case DType::BF16:
      return dot_bf16(reinterpret_cast<const uint16_t*>(w.weight.data) + row * n, x, n);
    case DType::F16: {
      const uint16_t* src = reinterpret_cast<const uint16_t*>(w.weight.data) + row * n;
      float sum = 0.0f;
      for (int64_t i = 0; i < n; ++i) sum += f16_to_f32(src[i]) * x[i];
      return sum;
    }
    case DType::F8_E4M3: {
      return dot_fp8_e4m3_row(w.weight.data + row * n, block_scales_row(w, row), w.block_in, x, n);
    }
  }
  return 0.0f;
}

void linear_f32(const LinearWeight& w, const float* x, int64_t n_tokens, int64_t x_stride, float* y,
                int64_t y_stride) {
  const int64_t n_out = w.out_features();
  const int64_t n_in = w.in_features();
  if (n_tokens == 1) {
    ThreadPool::global().parallel_for(n_out, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) y[r] = weight_row_dot(w, r, x);
    }, 16);
    return;
  }
  // Several tokens: widen a block of kBlockRows weight rows once, then multiply it with the tokens
  // kBlockTokens at a time.
  ThreadPool::global().parallel_for((n_out + kBlockRows - 1) / kBlockRows, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(static_cast<size_t>(kBlockRows * n_in));
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r0 = b * kBlockRows, n_rows = std::min<int64_t>(kBlockRows, n_out - r0);
      for (int64_t i = 0; i < n_rows; ++i) weight_row_to_f32(w, r0 + i, rows.data() + i * n_in);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kBlockTokens)
        block_dots(rows.data(), n_in, int(n_rows), x + t0 * x_stride, x_stride,
                   int(std::min<int64_t>(kBlockTokens, n_tokens - t0)), n_in, y + t0 * y_stride + r0, y_stride);
    }
  });
}

}  // namespace dsv3::cpu
