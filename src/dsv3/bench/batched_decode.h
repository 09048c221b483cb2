// Decode throughput of many sequences at once, each with the same long context: the batch shares
// the prompt's cached pages (prefix reuse), so only each sequence's last page is prefilled.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv3/model/deepseek_model.h"

namespace dsv3 {

// `steps` greedy decode steps of every sequence, sequence i going on from next[i], as the engine
// runs them: each step is launched before the one ahead of it is collected, on the tokens that one
// picked (fed_token), so the host's launch of a step overlaps the device's work on the last.
// Returns the tokens the last step picked.
std::vector<int32_t> decode_greedy(DeepseekModel& model, std::span<CacheSequence> sequences, std::vector<int32_t> next,
                                   int64_t steps);

// `prompt` must already be in the cache, whole pages of it published (PageAllocator::publish).
// Runs `batch` sequences that continue it (each from a different token), two untimed steps and then
// `steps` timed greedy steps;
// returns the tokens decoded a second (batch * steps over the timed steps' time).
double batched_decode_tokens_per_s(DeepseekModel& model, std::span<const int32_t> prompt, int64_t batch,
                                   int64_t steps);

}  // namespace dsv3
