// How the blocks of an expert-product launch (moe.cu, moe_mma.cu) share out the FFNs of a MoE layer:
// grid (row blocks of a routed expert, max_active + shared_parts), block_rows weight rows a block.
#pragma once

#include <algorithm>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3::cuda {

// What a row of blocks (blockIdx.y) serves: the passes first_pass, first_pass + pass_step, ... over
// an active FFN's slots (-1: none), from weight row row_offset on. The last shared_parts rows of the
// grid serve the shared FFN, one routed width of its rows each (it is n_shared_experts times as wide);
// the others the routed experts. Each of those has its own expert while there are as many active ones
// as rows (decode); where routing sends many tokens to few experts, the spare rows share out the
// passes of expert y % n_active instead of idling while one row makes them all.
struct BlockPasses {
  int expert, first_pass, pass_step;
  int64_t row_offset;
};

__device__ inline BlockPasses block_passes(const MoePlan& plan, int n_ffns, int shared_parts, int64_t block_rows) {
  const int y = int(blockIdx.y), rows = int(gridDim.y) - shared_parts;
  if (y >= rows) return {n_ffns - 1, 0, 1, int64_t(y - rows) * gridDim.x * block_rows};
  // Read from L2 (a kernel may read the plan before its wait: chained_launch.cuh). Both loads at
  // once; the shared entry is last.
  const int n_active = __ldcg(plan.active + n_ffns) - 1, own = __ldcg(plan.active + y);
  if (n_active == 0) return {-1, 0, 1, 0};
  const int j = y % n_active;
  return {y < n_active ? own : __ldcg(plan.active + j), y / n_active, (rows - 1 - j) / n_active + 1, 0};
}

// Host side: the rows of blocks that the shared FFN's gate_up product takes, one for each span of
// a routed row of blocks (row_blocks of block_rows weight rows) its width (max_width) needs; 0
// without one.
inline int shared_gate_up_parts(const MoeFfns& ffns, int64_t row_blocks, int64_t block_rows) {
  const int64_t span = row_blocks * block_rows;
  return ffns.shared ? int((ffns.max_width + span - 1) / span) : 0;
}

// Host side: the routed widths that the shared FFN's down weight spans (its columns, max_width:
// n_shared_experts routed widths), 0 without one. Every FFN's down weight has the hidden size's rows.
inline int64_t shared_down_widths(const MoeFfns& ffns) {
  const int64_t routed = ffns.down_shape.cols;
  return ffns.shared ? (std::max(routed, ffns.max_width) + routed - 1) / routed : 0;
}

// Host side: the rows of blocks that the shared FFN's down product takes, its weight shared_widths
// routed widths wide: a power of two up to that, each part's tiles spread over that many times the
// routed tiles' wpr warps (at most max_warps, a block's), so that its warps carry a routed warp's
// share of the columns instead of the whole FFN waiting on the shared one's.
inline int shared_down_parts(int64_t shared_widths, int wpr, int max_warps) {
  if (shared_widths == 0) return 0;
  int parts = 1;
  while (2 * parts <= shared_widths && wpr * 2 * parts <= max_warps) parts *= 2;
  return parts;
}

}  // namespace dsv3::cuda
