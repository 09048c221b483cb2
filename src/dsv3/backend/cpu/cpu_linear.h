// CPU kernels over linear weights in their stored format, converted to float32 on the fly:
// the work of a decode step is reading weights, so each weight byte is read once and widened in
// registers (AVX-512 where the build machine has it).
#pragma once

#include <cstdint>

#include "dsv3/backend/linear_weight.h"

namespace dsv3::cpu {

// dst[c] = W[row][c] as float32 (block scale applied for FP8), for c in [0, in_features).
void weight_row_to_f32(const LinearWeight& w, int64_t row, float* dst);

// W[row] . x over all in_features, in float32.
float weight_row_dot(const LinearWeight& w, int64_t row, const float* x);

// y[t][r] = W[r] . x[t] for t < n_tokens; x rows `x_stride` apart, y rows `y_stride` apart.
// Splits output rows over the global thread pool.
void linear_f32(const LinearWeight& w, const float* x, int64_t n_tokens, int64_t x_stride, float* y,
                int64_t y_stride);

float dot_f32(const float* a, const float* b, int64_t n);

// The most rows and tokens one block_dots call takes.
constexpr int kBlockRows = 4, kBlockTokens = 4;

// y[t][r] = rows[r] . x[t] over n columns, for r < n_rows <= kBlockRows and t < n_tokens <=
// kBlockTokens: rows `row_stride` floats apart, x's `x_stride`, y's `y_stride`.
void block_dots(const float* rows, int64_t row_stride, int n_rows, const float* x, int64_t x_stride, int n_tokens,
                int64_t n, float* y, int64_t y_stride);

}  // namespace dsv3::cpu
