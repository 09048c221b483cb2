// Every CUDA op against the CPU op on fresh random inputs (METHOD.md): float32 paths within 1e-5
// relative L2 (1e-4 where long sums are reordered), 16-bit tensor-core paths within what their
// roundings leave (1e-4 to 1e-2, each test says why), and the FP8 block-scaled product against the
// CPU product of the same quantised activations. Skipped where no GPU is visible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <tuple>

#include "dsv3/backend/cpu/cpu_backend.h"
#include "dsv3/backend/cuda/cuda_backend.h"
#include "dsv3/backend/cuda/mla_batch_products.h"
#include "dsv3/util/numeric.h"
#include "dsv3/util/token_draw.h"
#include "support/relative_l2.h"

namespace dsv3 {
namespace {

using testing::relative_l2;

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::device_present()) GTEST_SKIP() << "no CUDA device";
    gpu = std::make_unique<CudaBackend>();
  }

  std::vector<float> random(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
  }

  // A pair of activations with the same values, one a backend.
  struct Pair {
    ActBuffer host, device;
  };
  Pair activations(int64_t rows, int64_t cols, float scale = 1.0f) {
    const std::vector<float> v = random(size_t(rows * cols), scale);
    return {cpu.upload(v, rows, cols), gpu->upload(v, rows, cols)};
  }
  // Rows for the latent cache, rounded to BF16 already: the GPU's cache (BF16) and the CPU's
  // (float32) then hold the same values, and the ops that read them are compared alone.
  Pair cache_rows(int64_t rows, int64_t cols) {
    std::vector<float> v = random(size_t(rows * cols));
    for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
    return {cpu.upload(v, rows, cols), gpu->upload(v, rows, cols)};
  }
  // int32 values for an op on each backend: the host vector itself, and a device copy.
  struct IndexPair {
    std::vector<int32_t> values;
    Buffer copy;
    Indices host() const { return {values.data(), int64_t(values.size())}; }
    Indices device() const { return {static_cast<const int32_t*>(copy.data()), int64_t(values.size())}; }
  };
  IndexPair indices(std::vector<int32_t> values) {
    Buffer copy = gpu->to_device(std::span<const int32_t>(values));
    return {std::move(values), std::move(copy)};
  }
  std::vector<float> host_values(const Act& a) {
    std::vector<float> v(size_t(a.rows * a.cols));
    cpu.download(a, v.data());
    return v;
  }
  std::vector<float> device_values(const Act& a) {
    std::vector<float> v(size_t(a.rows * a.cols));
    gpu->download(a, v.data());
    return v;
  }

  // A weight [out, in] in `dtype` with random values (FP8: random codes and block scales), held on
  // the host and placed on the device.
  struct Weight {
    std::vector<uint8_t> bytes;
    std::vector<float> scales;
    LinearWeight host, device;
  };
  std::unique_ptr<Weight> weight(DType dtype, int64_t out, int64_t in) {
    auto w = std::make_unique<Weight>();
    const float limit = 1.0f / std::sqrt(float(in));
    const std::vector<float> values = random(size_t(out * in), limit);
    w->bytes.resize(size_t(out * in) * dtype_bytes(dtype));
    for (size_t i = 0; i < values.size(); ++i) {
      switch (dtype) {
        case DType::F32: reinterpret_cast<float*>(w->bytes.data())[i] = values[i]; break;
        case DType::BF16: reinterpret_cast<uint16_t*>(w->bytes.data())[i] = f32_to_bf16(values[i]); break;
        case DType::F16: reinterpret_cast<_Float16*>(w->bytes.data())[i] = static_cast<_Float16>(values[i]); break;
        case DType::F8_E4M3: w->bytes[i] = f32_to_fp8_e4m3(values[i] / limit * 100.0f); break;
      }
    }
    w->host.weight = {"w", dtype, {out, in}, w->bytes.data(), w->bytes.size()};
    if (dtype == DType::F8_E4M3) {
      const int64_t so = (out + 127) / 128, si = (in + 127) / 128;
      std::uniform_real_distribution<float> spread(0.5f, 1.5f);
      for (int64_t i = 0; i < so * si; ++i) w->scales.push_back(limit / 100.0f * spread(rng));
      w->host.scale_inv = {"w_scale_inv", DType::F32, {so, si}, reinterpret_cast<const uint8_t*>(w->scales.data()),
                           w->scales.size() * 4};
    }
    w->device = w->host;
    w->device.weight = gpu->place(w->host.weight);
    if (dtype == DType::F8_E4M3) w->device.scale_inv = gpu->place(w->host.scale_inv);
    return w;
  }

  // A MoE layer's FFNs in `dtype`, held on the host and placed on the device: n_experts routed ones
  // (gate and up [width, hidden], down [hidden, width]) and a shared one twice as wide, as
  // DeepSeek-V2-Lite and Moonlight have it (two shared experts).
  struct MoeLayer {
    std::vector<std::unique_ptr<Weight>> owned;
    std::vector<ExpertWeights> host_experts, device_experts;
    ExpertWeights host_shared, device_shared;
  };
  MoeLayer moe_layer(DType dtype, int64_t hidden, int64_t width, int64_t n_experts) {
    MoeLayer layer;
    auto add_ffn = [&](int64_t ffn_width) {
      for (const auto& [o, i] : std::vector<std::pair<int64_t, int64_t>>{{ffn_width, hidden}, {ffn_width, hidden}, {hidden, ffn_width}})
        layer.owned.push_back(weight(dtype, o, i));
      const size_t b = layer.owned.size() - 3;
      return std::pair{ExpertWeights{layer.owned[b]->host, layer.owned[b + 1]->host, layer.owned[b + 2]->host},
                       ExpertWeights{layer.owned[b]->device, layer.owned[b + 1]->device, layer.owned[b + 2]->device}};
    };
    for (int64_t e = 0; e < n_experts; ++e) {
      auto [host, device] = add_ffn(width);
      layer.host_experts.push_back(host), layer.device_experts.push_back(device);
    }
    std::tie(layer.host_shared, layer.device_shared) = add_ffn(2 * width);
    return layer;
  }

  // The CPU's choice of experts on the device, so that both backends run the same pairs.
  Routing on_device(const Routing& host) {
    const size_t pairs = size_t(host.n_tokens * host.top_k);
    return {gpu->to_device(std::span(static_cast<const int32_t*>(host.expert_ids.data()), pairs)),
            gpu->to_device(std::span(static_cast<const float*>(host.expert_weights.data()), pairs)), host.n_tokens,
            host.top_k, {}};
  }

  // The layer's experts (and its shared FFN) on x on both backends, both on the CPU's routing by
  // `gate`, so that what differs is the experts' products: the outputs.
  Pair experts_on_the_cpus_choice(const Pair& x, const Weight& gate, const MoeLayer& layer, const RouterParams& params) {
    const Routing host_routing = cpu.moe_route(x.host.view, gate.host, nullptr, params);
    const Routing same = on_device(host_routing);
    Pair out = activations(x.host.view.rows, x.host.view.cols);
    cpu.moe_experts(x.host.view, host_routing, layer.host_experts, &layer.host_shared, out.host.view);
    gpu->moe_experts(x.device.view, same, layer.device_experts, &layer.device_shared, out.device.view);
    return out;
  }

  // MLA decode and prefill of `shape` over a cache of a few sequences, against the CPU.
  void check_mla(const MlaShape& shape, const std::vector<int64_t>& lengths, double decode_tolerance);

  std::mt19937 rng{std::random_device{}()};
  CpuBackend cpu;
  std::unique_ptr<CudaBackend> gpu;
};

TEST_F(CudaOps, RowOpsMatchTheCpu) {
  // Rows of 9000 are wider than the norms keep in registers.
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 1000}, {7, 1000}, {130, 1000}, {3, 9000}}) {
    Pair x = activations(rows, cols), y = activations(rows, cols), w = activations(1, cols);
    cpu.rmsnorm(x.host.view, w.host.view, 1e-6f, y.host.view);
    gpu->rmsnorm(x.device.view, w.device.view, 1e-6f, y.device.view);
    EXPECT_LE(relative_l2(device_values(y.device.view), host_values(y.host.view)), 1e-5) << "rmsnorm " << rows;

    Pair residual = activations(rows, cols);
    cpu.add_rmsnorm(x.host.view, residual.host.view, w.host.view, 1e-6f, y.host.view);
    gpu->add_rmsnorm(x.device.view, residual.device.view, w.device.view, 1e-6f, y.device.view);
    EXPECT_LE(relative_l2(device_values(x.device.view), host_values(x.host.view)), 1e-6) << "add_rmsnorm sum " << rows;
    EXPECT_LE(relative_l2(device_values(y.device.view), host_values(y.host.view)), 1e-5) << "add_rmsnorm " << rows;

    cpu.add(x.host.view, y.host.view);
    gpu->add(x.device.view, y.device.view);
    EXPECT_LE(relative_l2(device_values(x.device.view), host_values(x.host.view)), 1e-6) << "add " << rows;

    Pair out = activations(rows, cols);
    cpu.silu_mul(x.host.view, y.host.view, out.host.view);
    gpu->silu_mul(x.device.view, y.device.view, out.device.view);
    // expf and std::exp differ in the last bits.
    EXPECT_LE(relative_l2(device_values(out.device.view), host_values(out.host.view)), 1e-5) << "silu_mul " << rows;

    std::vector<int32_t> picks;
    for (int64_t i = 0; i < rows; i += 2) picks.push_back(int32_t(rows - 1 - i));
    Pair picked = activations(int64_t(picks.size()), cols);
    const IndexPair pick_indices = indices(picks);
    cpu.gather_rows(x.host.view, pick_indices.host(), picked.host.view);
    gpu->gather_rows(x.device.view, pick_indices.device(), picked.device.view);
    EXPECT_LE(relative_l2(device_values(picked.device.view), host_values(picked.host.view)), 1e-6) << "gather_rows " << rows;
  }
}

TEST_F(CudaOps, PickTokensMatchesTheCpu) {
  // Rows of one span and of many, a vocabulary's width (Moonlight's), and odd ones; values drawn
  // from few levels so that rows hold ties, with NaN and -inf sprinkled in; greedy and drawn rows,
  // and with `cut`, rows cut by top_k, min_p and top_p beside them (another kernel).
  std::uniform_int_distribution<int> level(0, 40), special(0, 200);
  for (const bool cut : {false, true})
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 100}, {5, 8192}, {2, 8193}, {1, 163840}, {40, 12345}}) {
    std::vector<float> values(size_t(rows * cols));
    for (float& v : values) {
      const int s = special(rng);
      v = s == 0 ? std::nanf("") : s == 1 ? -INFINITY : float(level(rng)) * 0.25f;
    }
    if (rows > 1)  // a row with nothing above -inf: index 0
      for (int64_t c = 0; c < cols; ++c) values[size_t(cols + c)] = c % 2 ? -INFINITY : std::nanf("");
    std::vector<int32_t> packed;
    for (int64_t r = 0; r < rows; ++r) {
      TokenDraw draw = r % 2 ? TokenDraw::sampled(0.5f + float(r % 3), rng()) : TokenDraw::greedy();
      if (cut && r % 4 == 1) draw.top_p = 0.3f + 0.1f * float(r % 7);
      if (cut && r % 3 == 1) draw.min_p = 0.02f * float(r % 5);
      if (cut && r % 5 != 0) draw.top_k = int32_t(1 + r * 37 % 300);  // past the row's width in some
      const std::array<int32_t, TokenDraw::kPacked> p = draw.pack();
      packed.insert(packed.end(), p.begin(), p.end());
    }
    const IndexPair draws = indices(packed);
    const ActBuffer host = cpu.upload(values, rows, cols), device = gpu->upload(values, rows, cols);
    const ActBuffer host_out = cpu.alloc(rows, 1), device_out = gpu->alloc(rows, 1);
    cpu.pick_tokens(host.view, draws.host(), cut, host_out.view);
    gpu->pick_tokens(device.view, draws.device(), cut, device_out.view);
    EXPECT_EQ(device_values(device_out.view), host_values(host_out.view)) << rows << " x " << cols << (cut ? ", cut" : "");
  }
}

TEST_F(CudaOps, RopeAndEmbedMatchTheCpu) {
  const int64_t rows = 19, heads = 5, head_dim = 192, offset = 128, rope_dim = 64;
  std::vector<float> inv_freq(rope_dim / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * float(i) / rope_dim);
  RopeTable host_table{cpu.upload(inv_freq, 1, rope_dim / 2), 1.3f}, device_table{gpu->upload(inv_freq, 1, rope_dim / 2), 1.3f};
  std::vector<int32_t> positions;
  for (int64_t r = 0; r < rows; ++r) positions.push_back(int32_t(r * 977 % 30000));
  Pair x = activations(rows, heads * head_dim);
  const IndexPair position_indices = indices(positions);
  cpu.rope(x.host.view, head_dim, offset, host_table, position_indices.host());
  gpu->rope(x.device.view, head_dim, offset, device_table, position_indices.device());
  EXPECT_LE(relative_l2(device_values(x.device.view), host_values(x.host.view)), 1e-6);

  auto table = weight(DType::BF16, 300, 96);
  const IndexPair ids = indices({5, 0, 299, 17, 5});
  Pair out = activations(5, 96);
  cpu.embed(table->host.weight, ids.host(), Act{}, out.host.view);
  gpu->embed(table->device.weight, ids.device(), Act{}, out.device.view);
  EXPECT_EQ(device_values(out.device.view), host_values(out.host.view));
}

// A step given a replay key runs directly the first time, is recorded as a graph the second and
// replayed after that: every run must see its own inputs, including inputs that grow within their
// recorded room (block tables).
TEST_F(CudaOps, RecordedStepsReplayWithNewInputs) {
  auto table = weight(DType::BF16, 300, 96);
  const std::vector<float> inv_freq = random(16, 0.1f);
  const RopeTable host_rope{cpu.upload(inv_freq, 1, 16), 1.0f}, device_rope{gpu->upload(inv_freq, 1, 16), 1.0f};
  std::uniform_int_distribution<int32_t> id(0, 299);
  for (int run = 0; run < 5; ++run) {
    std::vector<std::vector<int32_t>> inputs(3);
    for (int i = 0; i < 6; ++i) inputs[0].push_back(id(rng));
    inputs[1] = {int32_t(run % 6), 5, 2};
    // Grows from run to run; rope reads its first three values as positions.
    for (int i = 0; i < 33 + run; ++i) inputs[2].push_back(id(rng) * 10);
    auto step = [&](Backend& be, const TensorView& weights, const RopeTable& rope) {
      return [&be, &weights, &rope](std::span<const Indices> in) {
        ActBuffer x = be.alloc(in[0].size, 96), picked = be.alloc(in[1].size, 96);
        be.embed(weights, in[0], Act{}, x.view);
        be.gather_rows(x.view, in[1], picked.view);
        be.rope(picked.view, 96, 64, rope, in[2]);
        return picked;
      };
    };
    std::vector<float> expected, got;
    cpu.run_step(std::nullopt, inputs, step(cpu, table->host.weight, host_rope), expected);
    gpu->run_step(7, inputs, step(*gpu, table->device.weight, device_rope), got);
    EXPECT_LE(relative_l2(got, expected), 1e-6) << "run " << run;
  }
}

TEST_F(CudaOps, WeightStreamingLinearMatchesTheCpu) {
  // Aligned shapes take the 16-byte path; odd ones (partial FP8 blocks, K % 16 != 0) the scalar one.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{384, 512}, {200, 136}, {33, 2048}, {4096, 256}};
  for (const DType dtype : {DType::BF16, DType::F8_E4M3, DType::F32, DType::F16})
    for (const auto& [out_features, in_features] : shapes)
      for (const int64_t rows : {1, 3, 8, 16, 37}) {
        auto w = weight(dtype, out_features, in_features);
        Pair x = activations(rows, in_features), y = activations(rows, out_features);
        cpu.linear(x.host.view, w->host, y.host.view);
        gpu->linear_with(CudaBackend::LinearPath::Small, x.device.view, w->device, y.device.view);
        EXPECT_LE(relative_l2(device_values(y.device.view), host_values(y.host.view)), 1e-5)
            << dtype_name(dtype) << " " << out_features << "x" << in_features << " rows " << rows;
      }
}

TEST_F(CudaOps, CublasLtLinearMatchesTheCpu) {
  for (const auto& [out_features, in_features] : std::vector<std::pair<int64_t, int64_t>>{{384, 512}, {200, 136}, {1536, 2048}})
    for (const int64_t rows : {17, 64, 304}) {
      for (const DType dtype : {DType::BF16, DType::F8_E4M3}) {
        auto w = weight(dtype, out_features, in_features);
        Pair x = activations(rows, in_features), y = activations(rows, out_features);
        cpu.linear(x.host.view, w->host, y.host.view);
        gpu->linear_with(CudaBackend::LinearPath::Gemm16, x.device.view, w->device, y.device.view);
        // BF16 weights against x in two BF16 parts: float32 accuracy; FP8 weights and x rounded to
        // FP16 (2^-12 an element on average).
        EXPECT_LE(relative_l2(device_values(y.device.view), host_values(y.host.view)),
                  dtype == DType::BF16 ? 1e-4 : 1e-3)
            << "16-bit product, " << dtype_name(dtype) << " " << out_features << "x" << in_features << " rows " << rows;
      }
      // The FP8 product quantises activations per row and 128 columns (scale = amax / 448), as
      // DeepSeek's inference does: the CPU reference gets the same quantised activations.
      auto w = weight(DType::F8_E4M3, out_features, in_features);
      std::vector<float> x = random(size_t(rows * in_features)), quantised = x;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < in_features; g += 128) {
          const int64_t end = std::min(in_features, g + 128);
          float amax = 0.0f;
          for (int64_t c = g; c < end; ++c) amax = std::max(amax, std::fabs(x[size_t(r * in_features + c)]));
          const float scale = std::max(amax, 1e-12f) / 448.0f;
          for (int64_t c = g; c < end; ++c) {
            float& v = quantised[size_t(r * in_features + c)];
            v = fp8_e4m3_to_f32(f32_to_fp8_e4m3(v / scale)) * scale;
          }
        }
      ActBuffer xh = cpu.upload(quantised, rows, in_features), yh = cpu.alloc(rows, out_features);
      ActBuffer xd = gpu->upload(x, rows, in_features), yd = gpu->alloc(rows, out_features);
      cpu.linear(xh.view, w->host, yh.view);
      gpu->linear_with(CudaBackend::LinearPath::Gemm, xd.view, w->device, yd.view);
      if (!gpu->fp8_gemm_available(yd.view, in_features)) {
        std::printf("no block-scaled FP8 product for %ldx%ldx%ld: FP16 on the dequantised weight\n", long(rows),
                    long(out_features), long(in_features));
        continue;  // the 16-bit path, checked above
      }
      EXPECT_LE(relative_l2(device_values(yd.view), host_values(yh.view)), 1e-3)
          << "fp8 product " << out_features << "x" << in_features << " rows " << rows;
    }
}

// A layer's query and latent KV projections of one input: one launch where both stream alike, two
// products where they differ (dtype) or take cuBLASLt (many rows).
TEST_F(CudaOps, LinearPairMatchesTheCpu) {
  const int64_t in_features = 512;
  for (const auto& [dtype_a, dtype_b] : std::vector<std::pair<DType, DType>>{
           {DType::F8_E4M3, DType::F8_E4M3}, {DType::BF16, DType::BF16}, {DType::F8_E4M3, DType::BF16}}) {
    auto w_a = weight(dtype_a, 384, in_features), w_b = weight(dtype_b, 200, in_features);
    for (const int64_t rows : {1, 3, 16, 40}) {
      Pair x = activations(rows, in_features), a = activations(rows, 384), b = activations(rows, 200);
      cpu.linear(x.host.view, w_a->host, a.host.view);
      cpu.linear(x.host.view, w_b->host, b.host.view);
      gpu->linear_pair(x.device.view, w_a->device, a.device.view, w_b->device, b.device.view);
      const double tolerance = rows <= 16 ? 1e-5 : 5e-3;  // streaming in float32; cuBLASLt beyond 16 rows
      EXPECT_LE(relative_l2(device_values(a.device.view), host_values(a.host.view)), tolerance)
          << dtype_name(dtype_a) << " first product, rows " << rows;
      EXPECT_LE(relative_l2(device_values(b.device.view), host_values(b.host.view)), tolerance)
          << dtype_name(dtype_b) << " second product, rows " << rows;
    }
  }
}

// A sublayer's last projection with the residual add and norm after it: in one launch for a lone row
// (the launch's last block does the norm), as two ops beyond. The launches follow one another on the
// one counter of finished blocks, which each leaves at zero: a stale count would skip the norm, and
// `normed` starts random.
TEST_F(CudaOps, LinearAddRmsnormMatchesTheCpu) {
  // Outputs as wide as the norm keeps in registers (2048) and wider (3000), and ragged ones.
  for (const auto& [out_features, in_features] : std::vector<std::pair<int64_t, int64_t>>{{2048, 512}, {200, 136}, {3000, 256}})
    for (const DType dtype : {DType::F32, DType::BF16, DType::F8_E4M3}) {
      auto w = weight(dtype, out_features, in_features);
      Pair norm = activations(1, out_features);
      for (const int64_t rows : {1, 3, 4, 5, 40}) {
        Pair x = activations(rows, in_features), out = activations(rows, out_features);
        Pair residual = activations(rows, out_features), normed = activations(rows, out_features);
        cpu.linear_add_rmsnorm(x.host.view, w->host, out.host.view,
                               {residual.host.view, norm.host.view, 1e-6f, normed.host.view});
        gpu->linear_add_rmsnorm(x.device.view, w->device, out.device.view,
                                {residual.device.view, norm.device.view, 1e-6f, normed.device.view});
        // Streaming in float32; cuBLASLt beyond 16 rows for the dtypes it takes.
        const double tolerance = rows <= 16 || dtype == DType::F32 ? 1e-5 : 5e-3;
        for (const auto& [name, pair] : {std::pair{"output", &out}, {"residual", &residual}, {"normed", &normed}})
          EXPECT_LE(relative_l2(device_values(pair->device.view), host_values(pair->host.view)), tolerance)
              << name << ", " << dtype_name(dtype) << " " << out_features << "x" << in_features << " rows " << rows;
      }
    }
}

TEST_F(CudaOps, GroupedTensorCoreLinearMatchesTheCpu) {
  // Rows few enough for grouped_few.cu's 16-row tiles (1, and 17 in two), and in whole and partial
  // 128-row tiles of grouped_wgmma.cu (64, 304), whose columns come in whole and partial 128-column
  // tiles; k of 320 (not whole 128-column stages) takes grouped_gemm.cu's 64-row tiles.
  for (const auto& [out_features, in_features] :
       std::vector<std::pair<int64_t, int64_t>>{{384, 512}, {200, 1408}, {1536, 2048}, {256, 320}})
    for (const int64_t rows : {1, 17, 64, 304})
      for (const DType dtype : {DType::BF16, DType::F8_E4M3}) {
        auto w = weight(dtype, out_features, in_features);
        Pair x = activations(rows, in_features), y = activations(rows, out_features);
        cpu.linear(x.host.view, w->host, y.host.view);
        gpu->linear_with(CudaBackend::LinearPath::Grouped, x.device.view, w->device, y.device.view);
        // BF16 weights against x in two BF16 parts: float32 accuracy. FP8 weights, exact on FP16
        // tensor cores: against x in two FP16 parts in the few-row tiles (float32 accuracy), in one
        // in the warpgroup tiles (2^-12 an element on average); rounded to BF16 once their scale is
        // applied (2^-9 an element) in the 64-row ones.
        const bool warpgroup_tiles = rows > 32 && in_features % 128 == 0;
        const double tolerance = dtype == DType::BF16 ? 1e-4 : rows <= 32 ? 2e-5 : warpgroup_tiles ? 1e-3 : 5e-3;
        EXPECT_LE(relative_l2(device_values(y.device.view), host_values(y.host.view)), tolerance)
            << dtype_name(dtype) << " " << out_features << "x" << in_features << " rows " << rows;
      }
}

// Dense products of 17 to 64 rows on grouped_few.cu's tiles, K split over blocks that add into y:
// one split (K of 320 in two stages), several (the others), ragged column tiles (200 rows).
TEST_F(CudaOps, FewRowLinearMatchesTheCpu) {
  for (const auto& [out_features, in_features] :
       std::vector<std::pair<int64_t, int64_t>>{{384, 512}, {200, 1408}, {1536, 2048}, {256, 320}})
    for (const int64_t rows : {17, 32, 40, 64})
      for (const DType dtype : {DType::BF16, DType::F8_E4M3}) {
        auto w = weight(dtype, out_features, in_features);
        Pair x = activations(rows, in_features), y = activations(rows, out_features);
        cpu.linear(x.host.view, w->host, y.host.view);
        gpu->linear_with(CudaBackend::LinearPath::Few, x.device.view, w->device, y.device.view);
        // Against the weights as stored, x in two 16-bit parts: float32 accuracy.
        const double tolerance = dtype == DType::BF16 ? 1e-4 : 2e-5;
        EXPECT_LE(relative_l2(device_values(y.device.view), host_values(y.host.view)), tolerance)
            << dtype_name(dtype) << " " << out_features << "x" << in_features << " rows " << rows;
      }
}

TEST_F(CudaOps, MlaRopeAndCacheMatchesTheCpu) {
  const MlaShape shape{16, 128, 64, 128, 512, 0.0721f};
  const LatentCacheLayout layout{2, 4, 64, 512, 64};
  const Buffer host_cache = cpu.alloc_cache(layout), device_cache = gpu->alloc_cache(layout);
  std::vector<float> inv_freq(size_t(shape.qk_rope_head_dim / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * float(i) / 64.0f);
  const RopeTable host_rope{cpu.upload(inv_freq, 1, 32), 1.2f}, device_rope{gpu->upload(inv_freq, 1, 32), 1.2f};
  Pair norm = activations(1, shape.kv_lora_rank);
  for (const int64_t n : {1, 7}) {
    Pair q = activations(n, shape.n_heads * shape.qk_head_dim());
    Pair kv = activations(n, layout.row_width(), 3.0f);
    std::vector<int32_t> positions, slots;
    for (int64_t r = 0; r < n; ++r) positions.push_back(int32_t(r * 1531 % 5000)), slots.push_back(int32_t(255 - 37 * r));
    const IndexPair position_indices = indices(positions), slot_indices = indices(slots);
    cpu.mla_rope_and_cache(shape, q.host.view, kv.host.view, norm.host.view, 1e-6f, host_rope, position_indices.host(),
                           host_cache, layout, 1, slot_indices.host());
    gpu->mla_rope_and_cache(shape, q.device.view, kv.device.view, norm.device.view, 1e-6f, device_rope,
                            position_indices.device(), device_cache, layout, 1, slot_indices.device());
    EXPECT_LE(relative_l2(device_values(q.device.view), host_values(q.host.view)), 1e-6) << "q, rows " << n;
    EXPECT_LE(relative_l2(device_values(kv.device.view), host_values(kv.host.view)), 1e-6) << "kv, rows " << n;
    gpu->synchronize();
    // The GPU caches BF16, rounded to nearest: against the CPU's float32 row rounded so, within what a
    // value or two on a rounding tie (the float32 values differ in their last bits) leave;
    // truncating would leave some 2e-3.
    static_assert(sizeof(cuda::CacheValue) == sizeof(uint16_t));
    std::vector<uint16_t> cached_bits(size_t(layout.row_width()));
    std::vector<float> cached(cached_bits.size()), host_row(cached.size());
    for (const int32_t slot : slots) {
      const size_t offset = size_t(layout.layer_elems() + int64_t(slot) * layout.row_width());
      DSV3_CUDA_CHECK(cudaMemcpy(cached_bits.data(), static_cast<const uint16_t*>(device_cache.data()) + offset,
                                 cached_bits.size() * 2, cudaMemcpyDeviceToHost));
      std::transform(cached_bits.begin(), cached_bits.end(), cached.begin(), bf16_to_f32);
      const float* host = static_cast<const float*>(host_cache.data()) + offset;
      std::transform(host, host + host_row.size(), host_row.begin(), [](float x) { return bf16_to_f32(f32_to_bf16(x)); });
      EXPECT_LE(relative_l2(cached, host_row), 5e-4) << "cache slot " << slot;
    }
  }
}

// A cache of `lengths` sequences with random rows, written through cache_write on both backends.
struct CachePair {
  LatentCacheLayout layout;
  Buffer host, device;
  std::vector<CacheSequence> sequences;
};

// Decode runs on tensor cores (queries and probabilities rounded to BF16, as the reference's
// attention rounds them: within 1e-2, METHOD.md's range for BF16 operands) where the latent and rope
// widths suit them, as every DeepSeek model's do, and the contexts fill the GPU (the long ones here;
// with 20 heads, a partial second group of 16), else on CUDA cores (float32: 1e-4); the cache's rows
// are BF16 values on both backends (cache_rows); ten short contexts
// make a batch of many one-tile items, and a lone 1K context a decode step of one sequence, its
// context split over dozens of blocks. A batch of 150 items fills the GPU with one split each
// (the attention writes its output without the merge) and is more than kMaxFewItems, so the absorb
// and unabsorb take the tiled products (mla_batch_products.cu).
TEST_F(CudaOps, MlaMatchesTheCpu) {
  struct Case {
    MlaShape shape;
    std::vector<int64_t> lengths;
    double decode_tolerance;
  };
  const std::vector<int64_t> short_contexts = {1, 5, 64, 70, 300}, long_contexts = {1, 70, 300, 5000};
  const std::vector<int64_t> many_contexts = {1, 2, 5, 9, 17, 33, 64, 65, 70, 129}, one_context = {1030};
  constexpr int64_t kBatchItems = 150;
  static_assert(kBatchItems > cuda::kMaxFewItems);
  std::vector<int64_t> batch_contexts;
  for (int64_t i = 0; i < kBatchItems; ++i) batch_contexts.push_back(1 + i * 37 % kBatchItems);
  const MlaShape deepseek{16, 128, 64, 128, 512, 0.0721f}, small{6, 64, 32, 48, 96, 0.1f};
  // qk 40 and v 24, not whole 16-column steps: prefill on the cuBLAS products, not the one-pass kernel.
  const MlaShape odd{4, 24, 16, 24, 64, 0.15f};
  for (const auto& [shape, lengths, decode_tolerance] :
       {Case{deepseek, short_contexts, 1e-4}, Case{deepseek, long_contexts, 1e-2}, Case{deepseek, many_contexts, 1e-4},
        Case{deepseek, one_context, 1e-4}, Case{deepseek, batch_contexts, 1e-2},
        Case{{20, 128, 64, 128, 512, 0.0721f}, long_contexts, 1e-2}, Case{small, long_contexts, 1e-4},
        Case{small, batch_contexts, 1e-4}, Case{odd, short_contexts, 1e-4}})
    check_mla(shape, lengths, decode_tolerance);
}

void CudaOps::check_mla(const MlaShape& shape, const std::vector<int64_t>& lengths, double decode_tolerance) {
  SCOPED_TRACE(::testing::Message() << shape.n_heads << " heads, latent " << shape.kv_lora_rank << ", longest context "
                                    << lengths.back());
  const int64_t width = shape.kv_lora_rank + shape.qk_rope_head_dim;
  int64_t pages = 0;
  for (const int64_t length : lengths) pages += (length + 63) / 64;
  CachePair c;
  c.layout = {2, std::max<int64_t>(128, pages), 64, shape.kv_lora_rank, shape.qk_rope_head_dim};
  c.host = cpu.alloc_cache(c.layout);
  c.device = gpu->alloc_cache(c.layout);
  auto next_page = int32_t(c.layout.n_pages - 1);  // pages handed out from the top, so tables are not the identity
  for (const int64_t length : lengths) {
    CacheSequence s;
    for (int64_t p = 0; p < (length + 63) / 64; ++p) s.block_table.push_back(next_page--);
    s.n_tokens = length;
    Pair rows = cache_rows(length, width);
    std::vector<int32_t> slots;
    for (int64_t position = 0; position < length; ++position) slots.push_back(cache_slot(c.layout, s.block_table, position));
    const IndexPair slot_indices = indices(slots);
    cpu.cache_write(c.host, c.layout, 1, slot_indices.host(), rows.host.view);
    gpu->cache_write(c.device, c.layout, 1, slot_indices.device(), rows.device.view);
    c.sequences.push_back(s);
  }
  for (const DType dtype : {DType::BF16, DType::F8_E4M3}) {
    auto kv_b = weight(dtype, shape.n_heads * (shape.qk_nope_head_dim + shape.v_head_dim), shape.kv_lora_rank);
    const int64_t n = int64_t(lengths.size());
    Pair q = activations(n + 3, shape.n_heads * shape.qk_head_dim());
    Pair out = activations(n + 3, shape.n_heads * shape.v_head_dim);
    std::vector<int32_t> items, tables;
    for (int64_t i = 0; i < n; ++i) {
      const CacheSequence& s = c.sequences[size_t(i)];
      items.insert(items.end(), {int32_t(i + 2), int32_t(lengths[size_t(i)]), int32_t(tables.size())});
      tables.insert(tables.end(), s.block_table.begin(), s.block_table.end());
    }
    const IndexPair item_indices = indices(items), table_indices = indices(tables);
    const DecodeBatch host_batch{item_indices.host(), table_indices.host(), n};
    const DecodeBatch device_batch{item_indices.device(), table_indices.device(), n};
    cpu.mla_decode(shape, q.host.view, kv_b->host, c.host, c.layout, 1, host_batch, out.host.view);
    gpu->mla_decode(shape, q.device.view, kv_b->device, c.device, c.layout, 1, device_batch, out.device.view);
    const Act written_host = out.host.view.rows_slice(2, n), written_device = out.device.view.rows_slice(2, n);
    EXPECT_LE(relative_l2(device_values(written_device), host_values(written_host)), decode_tolerance)
        << "decode " << dtype_name(dtype);

    // Prefill: the last 40 positions of the longest sequence after the rest already cached, and
    // whole 70- and 300-token ones where there are (300 rows: blocks of 128 rows of one-pass attention
    // that see different counts of key tiles, the last partial).
    std::vector<std::pair<size_t, int64_t>> prefills = {{lengths.size() - 1, lengths.back() - 40}};
    for (const int64_t whole : {70, 300})
      if (const auto of = std::find(lengths.begin(), lengths.end(), whole); of != lengths.end())
        prefills.emplace_back(size_t(of - lengths.begin()), 0);
    for (const auto& [index, start] : prefills) {
      const int64_t rows = lengths[index] - start;
      Pair pq = activations(rows, shape.n_heads * shape.qk_head_dim());
      Pair po = activations(rows, shape.n_heads * shape.v_head_dim);
      cpu.mla_prefill(shape, pq.host.view, kv_b->host, c.host, c.layout, 1, c.sequences[index], start, po.host.view);
      gpu->mla_prefill(shape, pq.device.view, kv_b->device, c.device, c.layout, 1, c.sequences[index], start,
                       po.device.view);
      // kv_b_proj expands the context on 16-bit tensor cores (FP8 weights rounded to FP16, x in FP16
      // at one power of two), and the attention's operands are FP16.
      EXPECT_LE(relative_l2(device_values(po.device.view), host_values(po.host.view)), 1e-2)
          << "prefill " << dtype_name(dtype) << " start " << start;
    }
  }
}

// How near a token's choice of experts is to another choice: the smallest gap in the selection key
// (score, plus the correction bias for V3) between the last expert chosen and the best one left out,
// and where groups are chosen first, between the last group chosen and the best one left out (V3: a
// group's two best keys summed; V2: its best score). Logits summed in another order can flip a choice
// only where this gap is within their rounding.
float choice_margin(std::span<const float> logits, const float* bias, const RouterParams& p) {
  std::vector<float> key(logits.begin(), logits.end());
  if (p.scoring_func == ScoringFunc::Sigmoid) {
    for (float& s : key) s = 1.0f / (1.0f + std::exp(-s));
  } else {
    const float max_logit = *std::max_element(key.begin(), key.end());
    float sum = 0.0f;
    for (float& s : key) sum += (s = std::exp(s - max_logit));
    for (float& s : key) s /= sum;
  }
  if (bias)
    for (size_t e = 0; e < key.size(); ++e) key[e] += bias[e];
  auto gap_after = [](std::vector<float> values, int64_t k) {
    std::sort(values.begin(), values.end(), std::greater<>());
    return size_t(k) < values.size() ? values[size_t(k) - 1] - values[size_t(k)] : INFINITY;
  };
  float margin = INFINITY;
  const bool grouped = p.n_group > 1 &&
                       (p.topk_method == TopkMethod::NoauxTc || p.topk_method == TopkMethod::GroupLimitedGreedy);
  if (grouped) {
    const size_t per_group = key.size() / size_t(p.n_group);
    std::vector<float> group_scores;
    for (size_t g = 0; g < size_t(p.n_group); ++g) {
      std::vector<float> members(key.begin() + ptrdiff_t(g * per_group), key.begin() + ptrdiff_t((g + 1) * per_group));
      std::sort(members.begin(), members.end(), std::greater<>());
      group_scores.push_back(p.topk_method == TopkMethod::NoauxTc ? members[0] + members[1] : members[0]);
    }
    margin = gap_after(group_scores, p.topk_group);
    // The final top-k only sees the chosen groups' experts.
    std::vector<size_t> order(group_scores.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return group_scores[a] > group_scores[b]; });
    std::vector<float> chosen_groups;
    for (int64_t g = 0; g < p.topk_group; ++g)
      chosen_groups.insert(chosen_groups.end(), key.begin() + ptrdiff_t(order[size_t(g)] * per_group),
                           key.begin() + ptrdiff_t((order[size_t(g)] + 1) * per_group));
    key = chosen_groups;
  }
  return std::min(margin, gap_after(key, p.top_k));
}

TEST_F(CudaOps, MoeRoutingAndExpertsMatchTheCpu) {
  const int64_t hidden = 512, width = 352, n_experts = 64;  // 352: rows of partial chunks and FP8 blocks
  const std::vector<RouterParams> routers = {
      {ScoringFunc::Sigmoid, TopkMethod::NoauxTc, 8, 3, 6, true, 2.5f},
      {ScoringFunc::Softmax, TopkMethod::GroupLimitedGreedy, 8, 3, 6, false, 16.0f},
      {ScoringFunc::Softmax, TopkMethod::Greedy, 1, 1, 6, false, 1.0f},
  };
  for (const DType dtype : {DType::BF16, DType::F8_E4M3}) {
    auto gate = weight(DType::BF16, n_experts, hidden);
    const MoeLayer layer = moe_layer(dtype, hidden, width, n_experts);
    const auto &host_experts = layer.host_experts, &device_experts = layer.device_experts;
    const ExpertWeights &host_shared = layer.host_shared, &device_shared = layer.device_shared;
    Pair bias = activations(1, n_experts, 0.05f);
    for (const RouterParams& params : routers)
      for (const int64_t n : {1, 3, 5, 16, 40, 300, 1500}) {
        Pair x = activations(n, hidden);
        const Act* host_bias = params.topk_method == TopkMethod::NoauxTc ? &bias.host.view : nullptr;
        const Act* device_bias = params.topk_method == TopkMethod::NoauxTc ? &bias.device.view : nullptr;
        const Routing host_routing = cpu.moe_route(x.host.view, gate->host, host_bias, params);
        const Routing device_routing = gpu->moe_route(x.device.view, gate->device, device_bias, params);
        gpu->synchronize();  // the copies below run on the legacy stream
        std::vector<int32_t> ids(size_t(n * params.top_k));
        std::vector<float> weights(ids.size());
        DSV3_CUDA_CHECK(cudaMemcpy(ids.data(), device_routing.expert_ids.data(), ids.size() * 4, cudaMemcpyDeviceToHost));
        DSV3_CUDA_CHECK(cudaMemcpy(weights.data(), device_routing.expert_weights.data(), ids.size() * 4, cudaMemcpyDeviceToHost));
        const auto* host_ids = static_cast<const int32_t*>(host_routing.expert_ids.data());
        const auto* host_weights = static_cast<const float*>(host_routing.expert_weights.data());
        // Float32 logits summed in another order can flip a near tie: a token may choose other
        // experts only where its choice_margin is within rounding (the sums differ by some 1e-7
        // relative; 1e-4 of margin leaves room, and holds 0.5-3% of these random tokens), and two
        // chosen ones in another order only where its chosen weights, sorted, still agree. Weights
        // are compared, sorted, for every token that chose the CPU's experts.
        ActBuffer logits = cpu.alloc(n, n_experts);
        cpu.linear(x.host.view, gate->host, logits.view);
        const std::vector<float> all_logits = host_values(logits.view);
        const float* bias_values = host_bias ? static_cast<const float*>(host_bias->data) : nullptr;
        std::vector<float> sorted, host_sorted;
        for (int64_t t = 0; t < n; ++t) {
          const size_t first = size_t(t * params.top_k), last = first + size_t(params.top_k);
          std::vector<int32_t> mine_ids(ids.begin() + first, ids.begin() + last), theirs_ids(host_ids + first, host_ids + last);
          std::sort(mine_ids.begin(), mine_ids.end());
          std::sort(theirs_ids.begin(), theirs_ids.end());
          if (mine_ids != theirs_ids) {
            const std::span<const float> row(all_logits.data() + t * n_experts, size_t(n_experts));
            EXPECT_LE(choice_margin(row, bias_values, params), 1e-4f)
                << "token " << t << " of " << n << " chose other experts without a near tie";
            continue;
          }
          std::vector<float> mine(weights.begin() + first, weights.begin() + last);
          std::vector<float> theirs(host_weights + first, host_weights + last);
          std::sort(mine.begin(), mine.end());
          std::sort(theirs.begin(), theirs.end());
          EXPECT_LE(relative_l2(mine, theirs), 1e-5) << "token " << t << " of " << n;
          sorted.insert(sorted.end(), mine.begin(), mine.end());
          host_sorted.insert(host_sorted.end(), theirs.begin(), theirs.end());
        }
        EXPECT_LE(relative_l2(sorted, host_sorted), 1e-5);

        // The experts on the CPU's choice, so that both run the same pairs.
        const Routing same = on_device(host_routing);
        // Where the GPU chose exactly as the CPU did, its own routing (with the plan its router may
        // have made alongside) feeds the experts too.
        const bool same_choice = std::equal(ids.begin(), ids.end(), host_ids);
        for (const bool with_shared : {false, true})
          for (const bool own_routing : {false, true}) {
            if (own_routing && !same_choice) continue;
            Pair out = activations(n, hidden);
            cpu.moe_experts(x.host.view, host_routing, host_experts, with_shared ? &host_shared : nullptr, out.host.view);
            gpu->moe_experts(x.device.view, own_routing ? device_routing : same, device_experts,
                             with_shared ? &device_shared : nullptr, out.device.view);
            // Every token count streams the weights here, the shared FFN in the same launches (352
            // columns are not whole 64-column slices of the grouped products, which
            // PrefillExpertsWithTheSharedFfnMatchTheCpu takes): BF16 on CUDA cores in float32, FP8 on
            // tensor cores with float32 sums (x split into two FP16 parts).
            const double tolerance = n <= 16 ? 1e-5 : dtype == DType::BF16 ? 1e-4 : 5e-3;
            EXPECT_LE(relative_l2(device_values(out.device.view), host_values(out.host.view)), tolerance)
                << dtype_name(dtype) << " tokens " << n << (with_shared ? " with shared experts" : "")
                << (own_routing ? " on the GPU's routing" : "");
            if (n > 40) continue;
            // The same with the residual add and norm after the FFN (in the combine's launch for a
            // lone token, where the shared FFN joins the routed experts' launches).
            out = activations(n, hidden);
            Pair residual = activations(n, hidden), normed = activations(n, hidden), norm = activations(1, hidden);
            cpu.moe_experts_add_rmsnorm(x.host.view, host_routing, host_experts, with_shared ? &host_shared : nullptr,
                                        out.host.view, {residual.host.view, norm.host.view, 1e-6f, normed.host.view});
            gpu->moe_experts_add_rmsnorm(x.device.view, own_routing ? device_routing : same, device_experts,
                                         with_shared ? &device_shared : nullptr, out.device.view,
                                         {residual.device.view, norm.device.view, 1e-6f, normed.device.view});
            for (const auto& [name, pair] : {std::pair{"output", &out}, {"residual", &residual}, {"normed", &normed}})
              EXPECT_LE(relative_l2(device_values(pair->device.view), host_values(pair->host.view)), tolerance)
                  << name << " after the FFN, " << dtype_name(dtype) << " tokens " << n
                  << (with_shared ? " with shared experts" : "") << (own_routing ? " on the GPU's routing" : "");
          }
      }
  }
}

// A token whose hidden state is NaN has NaN router logits. Its experts must still be in range (an
// index of none read past the scores, an illegal address that ends every later launch), and the
// other tokens keep the CPU's choice. Batches of 1 (the router's last block), 3 (the routing and plan
// launch) and 40 (a launch a token, then the plan); the experts then run on that routing.
TEST_F(CudaOps, MoeRoutingOfNanLogitsChoosesExpertsInRange) {
  const int64_t hidden = 256, width = 128, n_experts = 64;
  const std::vector<RouterParams> routers = {
      {ScoringFunc::Sigmoid, TopkMethod::NoauxTc, 8, 3, 6, true, 2.5f},
      {ScoringFunc::Softmax, TopkMethod::GroupLimitedGreedy, 8, 3, 6, false, 16.0f},
      {ScoringFunc::Softmax, TopkMethod::Greedy, 1, 1, 6, false, 1.0f},
  };
  auto gate = weight(DType::BF16, n_experts, hidden);
  const MoeLayer layer = moe_layer(DType::BF16, hidden, width, n_experts);
  Pair bias = activations(1, n_experts, 0.05f);
  for (const RouterParams& params : routers)
    for (const int64_t n : {1, 3, 40}) {
      std::vector<float> values = random(size_t(n * hidden));
      values[0] = std::nanf("");  // token 0's first value: every logit of it NaN
      ActBuffer x = gpu->upload(values, n, hidden);
      const Act* device_bias = params.topk_method == TopkMethod::NoauxTc ? &bias.device.view : nullptr;
      const Routing routing = gpu->moe_route(x.view, gate->device, device_bias, params);
      ActBuffer out = gpu->alloc(n, hidden);
      gpu->moe_experts(x.view, routing, layer.device_experts, &layer.device_shared, out.view);
      gpu->synchronize();  // an illegal address would fail here, and every call after it
      std::vector<int32_t> ids(size_t(n * params.top_k));
      std::vector<float> weights(ids.size());
      DSV3_CUDA_CHECK(cudaMemcpy(ids.data(), routing.expert_ids.data(), ids.size() * 4, cudaMemcpyDeviceToHost));
      DSV3_CUDA_CHECK(cudaMemcpy(weights.data(), routing.expert_weights.data(), ids.size() * 4, cudaMemcpyDeviceToHost));
      for (const int32_t id : ids) ASSERT_TRUE(id >= 0 && id < n_experts) << "expert " << id << " of " << n_experts;
      if (n == 1) continue;
      // The other tokens against the CPU's routing of them alone (its sorts are not for NaN).
      ActBuffer rest = cpu.upload(std::span(values).subspan(size_t(hidden)), n - 1, hidden);
      const Act* host_bias = params.topk_method == TopkMethod::NoauxTc ? &bias.host.view : nullptr;
      const Routing host_routing = cpu.moe_route(rest.view, gate->host, host_bias, params);
      // Each token's weights sorted: a near tie may order two experts otherwise (as in
      // MoeRoutingAndExpertsMatchTheCpu).
      const auto* host_weights = static_cast<const float*>(host_routing.expert_weights.data());
      std::vector<float> mine(weights.begin() + params.top_k, weights.end());
      std::vector<float> theirs(host_weights, host_weights + mine.size());
      for (size_t first = 0; first < mine.size(); first += size_t(params.top_k)) {
        std::sort(mine.begin() + first, mine.begin() + first + size_t(params.top_k));
        std::sort(theirs.begin() + first, theirs.begin() + first + size_t(params.top_k));
      }
      EXPECT_LE(relative_l2(mine, theirs), 1e-5) << "the other tokens' weights, batch " << n;
      const std::vector<float> outputs = device_values(out.view);
      EXPECT_TRUE(std::all_of(outputs.begin() + hidden, outputs.end(), [](float v) { return std::isfinite(v); }))
          << "the other tokens' outputs, batch " << n;
    }
}

// A lone token's whole MoE sublayer with FP8 experts, which it routes in the experts' launches
// (LoneRouting): the same outputs, residual and norm as the router's own launch feeding the experts
// (bit for bit: the same sums, its pairs in another order of slots), and the CPU's where the CPU
// chose the same experts. Moonlight's and DeepSeek-V3's routers (64 and 256 experts, 8 groups);
// with and without the shared FFN; a token of NaN gets experts in range.
TEST_F(CudaOps, MoeSublayerOfALoneTokenRoutedInItsExpertsMatches) {
  const int64_t hidden = 512, width = 352;
  const std::vector<std::pair<int64_t, RouterParams>> routers = {
      {64, {ScoringFunc::Sigmoid, TopkMethod::NoauxTc, 1, 1, 6, true, 2.446f}},
      {64, {ScoringFunc::Softmax, TopkMethod::GroupLimitedGreedy, 8, 3, 6, false, 16.0f}},
      {64, {ScoringFunc::Softmax, TopkMethod::Greedy, 1, 1, 6, false, 1.0f}},
      {256, {ScoringFunc::Sigmoid, TopkMethod::NoauxTc, 8, 4, 8, true, 2.5f}},
  };
  for (const auto& [n_experts, params] : routers) {
    auto gate = weight(DType::BF16, n_experts, hidden);
    const MoeLayer layer = moe_layer(DType::F8_E4M3, hidden, width, n_experts);
    Pair bias = activations(1, n_experts, 0.05f), norm = activations(1, hidden);
    const bool biased = params.topk_method == TopkMethod::NoauxTc;
    for (const bool with_shared : {false, true})
      for (const bool nan : {false, true}) {
        std::vector<float> values = random(size_t(hidden));
        if (nan) values[0] = std::nanf("");
        const Pair x{cpu.upload(values, 1, hidden), gpu->upload(values, 1, hidden)};
        const MoeSublayerWeights host{gate->host, biased ? &bias.host.view : nullptr, layer.host_experts,
                                      with_shared ? &layer.host_shared : nullptr};
        const MoeSublayerWeights device{gate->device, biased ? &bias.device.view : nullptr, layer.device_experts,
                                        with_shared ? &layer.device_shared : nullptr};
        ASSERT_TRUE(gpu->routes_in_experts(x.device.view, device, params));
        const std::vector<float> start = random(size_t(hidden));
        auto run = [&](Backend& be, const Act& in, const MoeSublayerWeights& moe, const Act& norm_weight, bool fused) {
          ActBuffer out = be.alloc(1, hidden), residual = be.upload(start, 1, hidden), normed = be.alloc(1, hidden);
          const ResidualNorm then{residual.view, norm_weight, 1e-6f, normed.view};
          if (fused) {
            be.moe_add_rmsnorm(in, moe, params, out.view, then);
          } else {
            const Routing routing = be.moe_route(in, moe.gate, moe.e_score_correction_bias, params);
            be.moe_experts_add_rmsnorm(in, routing, moe.experts, moe.shared, out.view, then);
          }
          std::vector<float> all(size_t(3 * hidden));
          for (int i = 0; i < 3; ++i) be.download((i == 0 ? out : i == 1 ? residual : normed).view, all.data() + i * hidden);
          return all;
        };
        const std::vector<float> fused = run(*gpu, x.device.view, device, norm.device.view, true);
        const std::string what = std::to_string(n_experts) + " experts" + (with_shared ? ", shared FFN" : "");
        if (nan) continue;  // run() synchronised: its routing read and wrote in range
        EXPECT_EQ(fused, run(*gpu, x.device.view, device, norm.device.view, false)) << what;
        const Routing host_routing = cpu.moe_route(x.host.view, gate->host, host.e_score_correction_bias, params);
        const Routing device_routing = gpu->moe_route(x.device.view, gate->device, device.e_score_correction_bias, params);
        std::vector<int32_t> ids(size_t(params.top_k));
        gpu->synchronize();  // the copy below runs on the legacy stream
        DSV3_CUDA_CHECK(cudaMemcpy(ids.data(), device_routing.expert_ids.data(), ids.size() * 4, cudaMemcpyDeviceToHost));
        // Near ties may choose otherwise (MoeRoutingAndExpertsMatchTheCpu); then the CPU is not compared.
        if (!std::equal(ids.begin(), ids.end(), static_cast<const int32_t*>(host_routing.expert_ids.data()))) continue;
        EXPECT_LE(relative_l2(fused, run(cpu, x.host.view, host, norm.host.view, true)), 1e-5) << what;
      }
  }
}

// A prefill's experts on the grouped tensor-core products, an FP8 shared FFN as one more group of
// them (every token in order, its output in the combine's shared slots; a BF16 one through
// cuBLASLt): 10 rows an expert on average at 40 tokens (grouped_few.cu; the shared FFN's 40 rows in
// the warpgroup tiles), 75 at 300 (grouped_wgmma.cu); with the residual add and norm after the FFN.
TEST_F(CudaOps, PrefillExpertsWithTheSharedFfnMatchTheCpu) {
  const int64_t hidden = 512, width = 384, n_experts = 16;
  const RouterParams params{ScoringFunc::Softmax, TopkMethod::Greedy, 1, 1, 4, false, 1.0f};
  for (const DType dtype : {DType::BF16, DType::F8_E4M3}) {
    auto gate = weight(DType::BF16, n_experts, hidden);
    const MoeLayer layer = moe_layer(dtype, hidden, width, n_experts);
    // BF16 weights against x in two BF16 parts: float32 accuracy; FP8 weights exact against x in one
    // FP16 part in the warpgroup tiles (2^-12 an element on average).
    const double tolerance = dtype == DType::BF16 ? 1e-4 : 1e-3;
    for (const int64_t n : {40, 300}) {
      Pair x = activations(n, hidden);
      const Routing host_routing = cpu.moe_route(x.host.view, gate->host, nullptr, params);
      const Routing same = on_device(host_routing);
      Pair out = activations(n, hidden);
      cpu.moe_experts(x.host.view, host_routing, layer.host_experts, &layer.host_shared, out.host.view);
      gpu->moe_experts(x.device.view, same, layer.device_experts, &layer.device_shared, out.device.view);
      EXPECT_LE(relative_l2(device_values(out.device.view), host_values(out.host.view)), tolerance)
          << dtype_name(dtype) << " tokens " << n;
      Pair residual = activations(n, hidden), normed = activations(n, hidden), norm = activations(1, hidden);
      cpu.moe_experts_add_rmsnorm(x.host.view, host_routing, layer.host_experts, &layer.host_shared, out.host.view,
                                  {residual.host.view, norm.host.view, 1e-6f, normed.host.view});
      gpu->moe_experts_add_rmsnorm(x.device.view, same, layer.device_experts, &layer.device_shared, out.device.view,
                                   {residual.device.view, norm.device.view, 1e-6f, normed.device.view});
      for (const auto& [name, pair] : {std::pair{"output", &out}, {"residual", &residual}, {"normed", &normed}})
        EXPECT_LE(relative_l2(device_values(pair->device.view), host_values(pair->host.view)), tolerance)
            << name << " after the FFN, " << dtype_name(dtype) << " tokens " << n;
    }
  }
}

// The FP8 experts' tensor-core path scales each token into FP16's range (moe_mma.cu): activations
// far beyond that range, and far below it, give what the CPU gives; zeros give zeros (the output
// starts as random values, so every element is written).
TEST_F(CudaOps, MoeExpertsTakeActivationsOfAnyMagnitude) {
  const int64_t hidden = 256, width = 384, n_experts = 8;
  const RouterParams params{ScoringFunc::Softmax, TopkMethod::Greedy, 1, 1, 2, false, 1.0f};
  auto gate = weight(DType::BF16, n_experts, hidden);
  const MoeLayer layer = moe_layer(DType::F8_E4M3, hidden, width, n_experts);
  for (const float magnitude : {0.0f, 1e-12f, 1.0f, 3e5f, 1e15f})
    for (const int64_t n : {1, 3}) {
      const std::vector<float> v =
          magnitude > 0.0f ? random(size_t(n * hidden), magnitude) : std::vector<float>(size_t(n * hidden), 0.0f);
      const Pair x{cpu.upload(v, n, hidden), gpu->upload(v, n, hidden)};
      const Pair out = experts_on_the_cpus_choice(x, *gate, layer, params);
      const std::vector<float> mine = device_values(out.device.view), theirs = host_values(out.host.view);
      ASSERT_TRUE(std::all_of(mine.begin(), mine.end(), [](float v) { return std::isfinite(v); })) << magnitude;
      if (magnitude == 0.0f)
        EXPECT_TRUE(std::all_of(mine.begin(), mine.end(), [](float v) { return v == 0.0f; }));
      else
        EXPECT_LE(relative_l2(mine, theirs), 1e-5) << "magnitude " << magnitude << ", tokens " << n;
    }
}

// FP8 experts whose width ends inside or at the end of a lane's first 128-column chunk, and a
// hidden size of Moonlight's: each lane's loads past its row or its part are not issued
// (weight_element.cuh's load_weight_vector). The compiler once issued them anyway, reading past the
// end of an expert's down weight: compute-sanitizer's memcheck on this test reports any such read,
// and without it one past mapped memory stops the kernel.
TEST_F(CudaOps, MoeExpertsOfNarrowWidthsReadOnlyTheirWeights) {
  const int64_t n_experts = 16;
  const RouterParams params{ScoringFunc::Softmax, TopkMethod::Greedy, 1, 1, 6, false, 1.0f};
  for (const auto& [hidden, width] : std::vector<std::pair<int64_t, int64_t>>{{2048, 128}, {2048, 256}, {512, 96}})
    for (const int64_t n : {1, 3}) {
      auto gate = weight(DType::BF16, n_experts, hidden);
      const MoeLayer layer = moe_layer(DType::F8_E4M3, hidden, width, n_experts);
      const Pair out = experts_on_the_cpus_choice(activations(n, hidden), *gate, layer, params);
      EXPECT_LE(relative_l2(device_values(out.device.view), host_values(out.host.view)), 1e-5)
          << "hidden " << hidden << ", width " << width << ", tokens " << n;
    }
}

}  // namespace
}  // namespace dsv3
