// The vectorised weight kernels equal a plain float32 reference built from the decoded weights,
// for every stored dtype, with partial 128-column blocks and partial 128-row blocks.
#include "dsv3/backend/cpu/cpu_linear.h"

#include <gtest/gtest.h>

#include <random>

#include "dsv3/util/numeric.h"

namespace dsv3 {
namespace {

struct StoredWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  LinearWeight linear;
};

StoredWeight random_weight(DType dtype, int64_t out, int64_t in, std::mt19937& rng) {
  StoredWeight w;
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  w.bytes.resize(size_t(out * in) * dtype_bytes(dtype));
  for (int64_t i = 0; i < out * in; ++i) {
    switch (dtype) {
      case DType::F32: reinterpret_cast<float*>(w.bytes.data())[i] = value(rng); break;
      case DType::BF16: reinterpret_cast<uint16_t*>(w.bytes.data())[i] = f32_to_bf16(value(rng)); break;
      case DType::F16: reinterpret_cast<uint16_t*>(w.bytes.data())[i] = uint16_t(0x3000 + byte(rng)); break;
      case DType::F8_E4M3: w.bytes[size_t(i)] = uint8_t(byte(rng) & 0xf7); break;  // never the NaN code
    }
  }
  w.linear.weight = {"w", dtype, {out, in}, w.bytes.data(), w.bytes.size()};
  if (dtype == DType::F8_E4M3) {
    const int64_t rows = (out + 127) / 128, cols = (in + 127) / 128;
    for (int64_t i = 0; i < rows * cols; ++i) w.scales.push_back(0.001f * float(1 + byte(rng)));
    w.linear.scale_inv = {"w_scale_inv", DType::F32, {rows, cols}, reinterpret_cast<const uint8_t*>(w.scales.data()),
                          w.scales.size() * 4};
  }
  return w;
}

class WeightKernels : public ::testing::TestWithParam<DType> {};

TEST_P(WeightKernels, RowDotAndLinearMatchDecodedReference) {
  std::mt19937 rng(1);
  // 2x3 blocks of 128, the last ones partial; the several-token product's blocks of 4 rows and 4
  // tokens partial too (203 rows, 7 tokens), and its 16-column steps (300 columns).
  const int64_t out = 203, in = 300, tokens = 7;
  StoredWeight w = random_weight(GetParam(), out, in, rng);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> x(tokens * in);
  for (float& v : x) v = value(rng);

  std::vector<float> row(in), y(tokens * out);
  cpu::linear_f32(w.linear, x.data(), tokens, in, y.data(), out);
  for (int64_t r = 0; r < out; ++r) {
    cpu::weight_row_to_f32(w.linear, r, row.data());
    for (int64_t t = 0; t < tokens; ++t) {
      double ref = 0.0;
      for (int64_t c = 0; c < in; ++c) ref += double(row[c]) * x[t * in + c];
      EXPECT_NEAR(y[t * out + r], ref, 1e-4 * (1.0 + std::abs(ref))) << "row " << r << " token " << t;
      if (t == 0) {
        EXPECT_NEAR(cpu::weight_row_dot(w.linear, r, x.data()), ref, 1e-4 * (1.0 + std::abs(ref)));
      }
    }
  }
}

TEST(WeightKernels, Fp8RowAppliesTheScaleOfItsBlock) {
  std::mt19937 rng(2);
  StoredWeight w = random_weight(DType::F8_E4M3, 130, 260, rng);
  std::vector<float> row(260);
  cpu::weight_row_to_f32(w.linear, 129, row.data());  // second row block
  for (int64_t c : {0, 127, 128, 255, 256, 259})
    EXPECT_EQ(row[c], fp8_e4m3_to_f32(w.bytes[129 * 260 + c]) * w.scales[3 + c / 128]) << "column " << c;
}

INSTANTIATE_TEST_SUITE_P(Dtypes, WeightKernels, ::testing::Values(DType::F32, DType::BF16, DType::F16, DType::F8_E4M3));

}  // namespace
}  // namespace dsv3
