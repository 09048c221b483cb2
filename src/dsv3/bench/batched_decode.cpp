#include "dsv3/bench/batched_decode.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace dsv3 {
namespace {

constexpr int64_t kPrefillChunks = 32;  // sequences whose tails are prefilled in one forward pass

// One greedy step of every sequence; next[i] becomes sequence i's next token.
void step(DeepseekModel& model, std::vector<CacheSequence>& sequences, std::vector<int32_t>& next) {
  std::vector<ForwardChunk> chunks;
  for (size_t i = 0; i < sequences.size(); ++i) chunks.push_back({&sequences[i], {&next[i], 1}});
  next = model.forward_greedy(chunks);
}

}  // namespace

double batched_decode_tokens_per_s(DeepseekModel& model, std::span<const int32_t> prompt, int64_t batch,
                                   int64_t steps) {
  std::vector<CacheSequence> sequences(static_cast<size_t>(batch));
  std::vector<int64_t> covered;
  for (CacheSequence& s : sequences) covered.push_back(model.pages().match_prefix(s, prompt));
  for (int64_t first = 0; first < batch; first += kPrefillChunks) {
    std::vector<ForwardChunk> tails;
    for (int64_t i = first; i < std::min(batch, first + kPrefillChunks); ++i)
      tails.push_back({&sequences[size_t(i)], prompt.subspan(size_t(covered[size_t(i)]))});
    model.forward(tails, false);
  }
  // Each sequence goes on from a token of its own (one of the prompt's), so that the batch's tokens,
  // and the experts they are routed to, differ as they do in real batches: identical sequences
  // would all send their tokens to the same few experts.
  std::vector<int32_t> next;
  for (int64_t i = 0; i < batch; ++i) next.push_back(prompt[size_t(i * 7919 % int64_t(prompt.size()))]);
  for (int i = 0; i < 2; ++i) step(model, sequences, next);  // the batch's graph is recorded here
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step(model, sequences, next);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (CacheSequence& s : sequences) model.release(s);
  return double(batch * steps) / seconds;
}

}  // namespace dsv3
