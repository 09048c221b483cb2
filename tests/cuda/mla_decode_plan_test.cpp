// plan_mla_decode, the host's choice of MLA decode kernel and context splits: no GPU needed.
#include <gtest/gtest.h>

#include <cstdint>

#include "dsv3/backend/cuda/kernels.h"

namespace dsv3 {
namespace {

// An item as long as the bound (whole pages of 64 rows) has rows in every split, and the splits
// cover its context in order: a split with none would be a block that only writes an empty part
// for the merge to read.
TEST(MlaDecodePlan, EverySplitOfTheLongestContextHasRows) {
  const cuda::MlaDims moonlight{16, 128, 64, 128, 512, 0.0721f}, deepseek_v3{128, 128, 64, 128, 512, 0.0721f};
  for (const cuda::MlaDims& dims : {moonlight, deepseek_v3})
    for (const int n_items : {1, 2, 4, 16, 64})
      for (int pages = 1; pages <= 600; pages = pages * 5 / 4 + 1) {
        const int bound = 64 * pages;
        const cuda::MlaDecodePlan plan = cuda::plan_mla_decode(dims, n_items, bound, 132);
        SCOPED_TRACE(::testing::Message() << dims.n_heads << " heads, " << n_items << " items, bound " << bound
                                          << ": " << plan.n_splits << " splits of " << plan.tile_rows << "-row tiles");
        ASSERT_GE(plan.n_splits, 1);
        int covered = 0;
        for (int split = 0; split < plan.n_splits; ++split) {
          int begin = 0, end = 0;
          cuda::split_rows(bound, split, plan.n_splits, plan.tile_rows, begin, end);
          EXPECT_EQ(begin, covered) << "split " << split;
          EXPECT_LT(begin, end) << "split " << split;
          covered = end;
        }
        EXPECT_EQ(covered, bound);
      }
}

}  // namespace
}  // namespace dsv3
