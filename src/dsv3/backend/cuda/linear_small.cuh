// linear_small's kernel (the weight-streaming product for a few rows, linear.cu), with what the
// block that finishes a launch last does after it: nothing, the residual norm after a sublayer
// (linear.cu), or the router's choice after its gate (moe.cu).
//
// A block's lane groups each own kRows output rows (row_dots.cuh) and multiply them into up to
// kTokens input rows at once, so that the weight crosses the memory bus once per kTokens rows.
#pragma once

#include "dsv3/backend/cuda/chained_launch.cuh"
#include "dsv3/backend/cuda/kernels.h"
#include "dsv3/backend/cuda/last_block.cuh"
#include "dsv3/backend/cuda/row_dots.cuh"

namespace dsv3::cuda {
namespace {

// Weight rows of a lane group, and the vectors of each a lane loads before using them: more rows
// share each activation load as tokens grow (up to 8; 16 tokens' sums leave registers for 2 rows),
// and a single token gets more loads in flight instead.
template <int kTokens>
struct LinearTile {
  static constexpr int kRows = kTokens == 1 ? 2 : kTokens <= 8 ? 4 : 2;
  static constexpr int kUnroll = kTokens == 1 ? 4 : kTokens <= 4 ? 2 : 1;
  static constexpr int kWarpRows = kRowLanes * kRows;
};

// One or two products of the same input rows in one launch: the blocks of `products[0]` first, then
// those of `products[1]` (a decode step's q and kv_a projections of one hidden state: one dependent
// step of the chain fewer). Each product has its own split of rows over warps (wpr).
struct StreamedProduct {
  DeviceWeight w;
  DeviceMatrix y;
  int wpr = 1;
  int blocks = 0;
};
struct StreamedProducts {
  StreamedProduct product[2];
};

// What a launch does after its product, in the block that finishes last (last_block.cuh), with y
// and x's rows: for Then::kLastBlock, then.early(y's columns) runs in every block before its wait
// (the weights the work will need: stored, so read early) and then.run(early, y, rows) in the last
// block, which needs one product and all rows of x in one row of blocks. A kernel of its own for
// each: inlined into every kernel, such work changed how the compiler allocates the product's
// registers.
struct NothingAfter {
  static constexpr bool kLastBlock = false;
  struct Early {};
  unsigned* blocks_done = nullptr;
  __device__ Early early(int64_t) const { return {}; }
  __device__ void run(const Early&, const DeviceMatrix&, int64_t) const {}
};

template <DType D, bool kVector, int kTokens, class Then>
__global__ void __launch_bounds__(kRowWarps * 32) linear_small_kernel(StreamedProducts products, DeviceMatrix x, Then then) {
  using Tile = LinearTile<kTokens>;
  const bool second = int(blockIdx.x) >= products.product[0].blocks;
  const StreamedProduct& p = products.product[second ? 1 : 0];
  const DeviceWeight& w = p.w;
  const int wpr = p.wpr;
  const int64_t block = int64_t(blockIdx.x) - (second ? products.product[0].blocks : 0);
  const int warp = threadIdx.x / 32, part = warp % wpr;
  const int64_t row0 = (block * (kRowWarps / wpr) + warp / wpr) * Tile::kWarpRows + threadIdx.x % 32 / kKLanes * Tile::kRows;
  const int64_t t0 = int64_t(blockIdx.y) * kTokens;
  const int n_tokens = int(min(int64_t(kTokens), x.rows - t0));
  const float* x_rows[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) x_rows[t] = x.data + (t0 + min(t, n_tokens - 1)) * x.stride;
  LaneRows<Tile::kRows> rows;
#pragma unroll
  for (int r = 0; r < Tile::kRows; ++r)
    rows.data[r] = w.data, rows.scale_inv[r] = w.scale_inv, rows.row[r] = min(row0 + r, w.rows - 1);
  float acc[Tile::kRows][kTokens] = {};
  const typename Then::Early early = then.early(w.rows);
  // The weight's first chunk is asked for while the kernel ahead finishes (chained_launch.cuh).
  auto inputs_ready = [] { wait_for_inputs(); };
  if (row0 < w.rows)
    rows_dot<D, kVector, Tile::kUnroll>(w, rows, part, wpr, x_rows, n_tokens, acc, inputs_ready);
  else
    inputs_ready();
  if (reduce_rows(acc, part, wpr)) {
#pragma unroll
    for (int r = 0; r < Tile::kRows; ++r)
#pragma unroll
      for (int t = 0; t < kTokens; ++t)
        if (stores_total<kTokens>(r, t) && t < n_tokens && row0 + r < w.rows)
          p.y.data[(t0 + t) * p.y.stride + row0 + r] = acc[r][t];
  }
  if constexpr (Then::kLastBlock)
    if (last_block_done(then.blocks_done)) then.run(early, p.y, x.rows);
}

template <int kTokens, class Then>
struct LinearSmallKernels {
  template <DType D, bool kVector>
  static auto get() { return linear_small_kernel<D, kVector, kTokens, Then>; }
};

// Enough warps to keep every SM streaming: the rows' columns split over up to 8 warps when rows are
// few, counting the rows of every product of the launch.
template <int kTokens>
StreamedProduct streamed_product(const DeviceWeight& w, DeviceMatrix y, int64_t launch_rows) {
  using Tile = LinearTile<kTokens>;
  const int wpr =
      warps_per_tile((launch_rows + Tile::kWarpRows - 1) / Tile::kWarpRows, row_vectors(w), kKLanes * Tile::kUnroll);
  const int64_t block_rows = kRowWarps / wpr * Tile::kWarpRows;
  return {w, y, wpr, int((w.rows + block_rows - 1) / block_rows)};
}

// y = x W^T (and y2 = x W2^T where w2 is given) for up to kTokens rows of x a row of blocks, then
// `then` (shared_bytes: the dynamic shared memory its run needs).
template <int kTokens, class Then>
void launch_tokens(const DeviceWeight& w, DeviceMatrix x, DeviceMatrix y, const DeviceWeight* w2, DeviceMatrix y2,
                   const Then& then, size_t shared_bytes, cudaStream_t stream) {
  const int64_t launch_rows = w.rows + (w2 ? w2->rows : 0);
  StreamedProducts products{{streamed_product<kTokens>(w, y, launch_rows), {}}};
  if (w2) products.product[1] = streamed_product<kTokens>(*w2, y2, launch_rows);
  const dim3 grid(unsigned(products.product[0].blocks + products.product[1].blocks),
                  unsigned((x.rows + kTokens - 1) / kTokens));
  const auto kernel = kernel_for<LinearSmallKernels<kTokens, Then>>(w.dtype, vector_rows_ok(w, x.data, x.stride));
  launch_chained(kernel, grid, kRowWarps * 32, shared_bytes, stream, products, x, then);
}

}  // namespace
}  // namespace dsv3::cuda
