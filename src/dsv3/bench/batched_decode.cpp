#include "dsv3/bench/batched_decode.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace dsv3 {
namespace {

constexpr int64_t kPrefillChunks = 32;  // sequences whose tails are prefilled in one forward pass

}  // namespace

std::vector<int32_t> decode_greedy(DeepseekModel& model, std::span<CacheSequence> sequences, std::vector<int32_t> next,
                                   int64_t steps) {
  const std::vector<TokenDraw> greedy(sequences.size());
  std::vector<int32_t> fed;
  for (size_t i = 0; i < sequences.size(); ++i) fed.push_back(fed_token(int64_t(i)));
  auto launch = [&](const std::vector<int32_t>& tokens) {
    std::vector<ForwardChunk> chunks;
    for (size_t i = 0; i < sequences.size(); ++i) chunks.push_back({&sequences[i], {&tokens[i], 1}});
    model.launch_picking(chunks, greedy, false);
  };
  if (steps <= 0) return next;
  launch(next);
  for (int64_t i = 1; i < steps; ++i) {
    launch(fed);
    model.collect_picked();
  }
  return model.collect_picked().tokens;
}

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
  next = decode_greedy(model, sequences, next, 2);  // the batch's graph is recorded here
  const auto start = std::chrono::steady_clock::now();
  decode_greedy(model, sequences, next, steps);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (CacheSequence& s : sequences) model.release(s);
  return double(batch * steps) / seconds;
}

}  // namespace dsv3
