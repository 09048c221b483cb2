// Decode throughput of many sequences at once, each with the same long context: the batch shares
// the prompt's cached pages (prefix reuse), so only each sequence's last page is prefilled.
#pragma once

#include <cstdint>
#include <span>

#include "dsv3/model/deepseek_model.h"

namespace dsv3 {

// `prompt` must already be in the cache, whole pages of it published (PageAllocator::publish).
// Runs `batch` sequences that continue it (each from a different token), two untimed steps and then
// `steps` timed greedy steps;
// returns the tokens decoded a second (batch * steps over the timed steps' time).
double batched_decode_tokens_per_s(DeepseekModel& model, std::span<const int32_t> prompt, int64_t batch,
                                   int64_t steps);

}  // namespace dsv3
