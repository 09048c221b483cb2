// Which rows a block of a grouped product works on (grouped_gemm.cu, grouped_few.cu): the grid has a
// row of blocks for every tile of `tile_rows` rows the groups could need, and each block finds its
// own from the group offsets on the device, so the host never learns how many rows a group has.
#pragma once

#include <algorithm>
#include <cstdint>

namespace dsv3::cuda {

// Rows of blocks that `rows` rows in n_groups groups can need: each group's last tile may be
// partial, at most one tile a group beyond the rows' own.
inline int64_t grouped_row_tiles(int64_t rows, int n_groups, int tile_rows) {
  return std::min((rows + tile_rows - 1) / tile_rows + (n_groups - 1), rows);
}

// The rows [begin, end) of a block's tile and its group (-1: no tile).
struct TileRows {
  int group;
  int64_t begin, end;
};

// Tile `tile` of the groups' row offsets (null: one group of total_rows rows). Tiles are numbered
// group by group, ceil(rows / BM) a group; one warp scans 32 groups at a time. Every thread of the
// block calls it.
template <int BM>
__device__ TileRows find_tile(const int32_t* offsets, int n_groups, int64_t total_rows, int tile) {
  __shared__ TileRows found;
  if (offsets == nullptr) {
    const int64_t begin = int64_t(tile) * BM;
    return {begin < total_rows ? 0 : -1, begin, total_rows};
  }
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    if (lane == 0) found.group = -1;
    __syncwarp();
    int before = 0;  // tiles of the groups already scanned
    for (int g0 = 0; g0 < n_groups && before <= tile; g0 += 32) {
      const int g = g0 + lane;
      const int begin = g < n_groups ? offsets[g] : 0, end = g < n_groups ? offsets[g + 1] : 0;
      const int tiles = (end - begin + BM - 1) / BM;
      int through = tiles;  // inclusive scan over the lanes
      for (int offset = 1; offset < 32; offset *= 2) {
        const int other = __shfl_up_sync(0xffffffffu, through, offset);
        if (lane >= offset) through += other;
      }
      const int first = before + through - tiles;
      if (tile >= first && tile < before + through) found = {g, begin + int64_t(tile - first) * BM, end};
      before += __shfl_sync(0xffffffffu, through, 31);
    }
  }
  __syncthreads();
  return found;
}

}  // namespace dsv3::cuda
