#include "dsv3/tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <bit>

#include "dsv3/tokenizer/byte_level.h"
#include "dsv3/tokenizer/word_cache.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

// A cache per thread serves the Bpe that last used it there; another Bpe empties it first.
WordCache& thread_word_cache(uint64_t instance) {
  thread_local struct {
    uint64_t owner = 0;
    WordCache cache;
  } slot;
  if (slot.owner != instance) {
    slot.cache.clear();
    slot.owner = instance;
  }
  return slot.cache;
}

uint64_t next_instance() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

bool is_null_or_empty(const nlohmann::json& model, const char* field) {
  return !model.contains(field) || model[field].is_null() ||
         (model[field].is_string() && model[field].get<std::string>().empty());
}

// The merges list as (left, right) token strings in rank order.
std::vector<std::pair<std::string, std::string>> parse_merges(const nlohmann::json& merges) {
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (const nlohmann::json& merge : merges) {
    if (merge.is_array()) {
      if (merge.size() != 2) fail("model.merges[", pairs.size(), "] is not a pair of tokens");
      pairs.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      continue;
    }
    const std::string line = merge.get<std::string>();
    if (line.starts_with("#version")) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
      fail("model.merges[", pairs.size(), "] '", line, "' is not two tokens separated by one space");
    pairs.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return pairs;
}

}  // namespace

bool Bpe::merges_are_ordered(const std::vector<std::pair<uint64_t, Merge>>& merges) {
  std::unordered_map<int32_t, uint32_t> made_at;  // token -> highest rank of a merge making it
  made_at.reserve(merges.size());
  for (const auto& [pair_key, merge] : merges) {
    uint32_t& rank = made_at[merge.merged_id];
    rank = std::max(rank, merge.rank);
  }
  for (const auto& [pair_key, merge] : merges)
    for (int32_t operand : {int32_t(pair_key >> 32), int32_t(uint32_t(pair_key))})
      if (auto it = made_at.find(operand); it != made_at.end() && it->second >= merge.rank) return false;
  return true;
}

void Bpe::MergeTable::build(const std::vector<std::pair<uint64_t, Merge>>& merges) {
  const size_t capacity = std::bit_ceil(std::max<size_t>(2 * merges.size(), 16));
  slots_.assign(capacity, Slot{});
  shift_ = 64 - std::countr_zero(capacity);
  for (const auto& [pair_key, merge] : merges) {
    size_t i = (pair_key * 0x9E3779B97F4A7C15ull) >> shift_;
    while (slots_[i].key != ~0ull && slots_[i].key != pair_key) i = (i + 1) & (capacity - 1);
    slots_[i] = {pair_key, merge};  // a pair listed twice keeps its last rank, as in `tokenizers`
  }
}

const Bpe::Merge* Bpe::MergeTable::find(int32_t left, int32_t right) const {
  const uint64_t k = key(left, right);
  for (size_t i = (k * 0x9E3779B97F4A7C15ull) >> shift_;; i = (i + 1) & (slots_.size() - 1)) {
    if (slots_[i].key == k) return &slots_[i].merge;
    if (slots_[i].key == ~0ull) return nullptr;
  }
}

Bpe Bpe::from_json(const nlohmann::json& model) {
  if (model.value("type", "BPE") != "BPE")
    fail("model type '", model.value("type", ""), "' is not supported (supported: BPE)");
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() > 0)
    fail("model.dropout is set; dsv3 encodes deterministically and does not support BPE dropout");
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!is_null_or_empty(model, field))
      fail("model.", field, " is set; dsv3 supports byte-level BPE without it");

  Bpe bpe;
  bpe.instance_ = next_instance();
  bpe.ignore_merges_ = model.value("ignore_merges", false);
  bpe.vocab_ = model.at("vocab").get<std::unordered_map<std::string, int32_t>>();
  for (int b = 0; b < 256; ++b) {
    const std::string token = byte_level_char(uint8_t(b));
    auto it = bpe.vocab_.find(token);
    if (it == bpe.vocab_.end())
      fail("model.vocab has no token for byte ", b, " ('", token, "'): not a byte-level BPE vocab");
    bpe.byte_ids_[b] = it->second;
  }

  const auto pairs = parse_merges(model.at("merges"));
  std::vector<std::pair<uint64_t, Merge>> merges;
  merges.reserve(pairs.size());
  auto id_of = [&](const std::string& token, size_t rank) {
    auto it = bpe.vocab_.find(token);
    if (it == bpe.vocab_.end()) fail("model.merges[", rank, "]: token '", token, "' is not in model.vocab");
    return it->second;
  };
  for (size_t rank = 0; rank < pairs.size(); ++rank) {
    const auto& [left, right] = pairs[rank];
    const int32_t left_id = id_of(left, rank), right_id = id_of(right, rank);
    const int32_t merged_id = id_of(left + right, rank);
    merges.push_back({MergeTable::key(left_id, right_id), Merge{uint32_t(rank), merged_id}});
  }
  bpe.merges_.build(merges);
  bpe.merges_ordered_ = merges_are_ordered(merges);
  return bpe;
}

void Bpe::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.size() > WordCache::kMaxPieceBytes) {
    merge_piece(piece, ids);
    return;
  }
  WordCache& cache = thread_word_cache(instance_);
  const uint64_t hash = WordCache::hash(piece);
  std::span<const int32_t> cached;
  if (cache.find(piece, hash, cached)) {
    ids.insert(ids.end(), cached.begin(), cached.end());
    return;
  }
  const size_t first = ids.size();
  merge_piece(piece, ids);
  cache.insert(piece, hash, std::span<const int32_t>(ids).subspan(first));
}

void Bpe::merge_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    auto it = vocab_.find(bytes_to_byte_level(piece));
    if (it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> tokens;
  tokens.resize(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) tokens[i] = byte_ids_[uint8_t(piece[i])];
  const bool done = merges_ordered_ && tokens.size() >= kMinSweepTokens && merge_by_sweeps(tokens);
  if (!done) merge_by_queue(tokens);
  ids.insert(ids.end(), tokens.begin(), tokens.end());
}

bool Bpe::merge_by_sweeps(std::vector<int32_t>& tokens) const {
  for (;;) {
    // The lowest rank among neighbouring pairs...
    uint32_t lowest = UINT32_MAX;
    for (size_t i = 0; i + 1 < tokens.size(); ++i)
      if (const Merge* m = merges_.find(tokens[i], tokens[i + 1])) lowest = std::min(lowest, m->rank);
    if (lowest == UINT32_MAX) return true;
    // ...is merged wherever it occurs, left to right.
    size_t out = 0;
    for (size_t i = 0; i < tokens.size();) {
      const Merge* m = i + 1 < tokens.size() ? merges_.find(tokens[i], tokens[i + 1]) : nullptr;
      if (m && m->rank == lowest) {
        tokens[out++] = m->merged_id;
        i += 2;
      } else {
        tokens[out++] = tokens[i++];
      }
    }
    const size_t merged = tokens.size() - out;
    tokens.resize(out);
    // A sweep that merged little says the rest is better done one merge at a time.
    if (merged * kSweepMinShare < out) return false;
  }
}

void Bpe::merge_by_queue(std::vector<int32_t>& tokens) const {
  // The tokens as a linked list, and a min-heap of the merges possible between neighbours keyed
  // by (rank, position): lowest rank first, leftmost among equals. An entry goes stale when one
  // of its two tokens has merged since; the pair at its position then no longer has its rank (a
  // rank names one pair), and it is skipped.
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1: none
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<uint64_t> heap;
  const int32_t n = int32_t(tokens.size());
  if (n < 2) return;
  symbols.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) symbols[i] = {tokens[i], i - 1, i + 1 < n ? i + 1 : -1};

  auto merge_at = [&](int32_t pos) -> const Merge* {
    if (pos < 0 || symbols[pos].next < 0) return nullptr;
    return merges_.find(symbols[pos].id, symbols[symbols[pos].next].id);
  };
  auto key = [](uint32_t rank, int32_t pos) { return uint64_t(rank) << 32 | uint32_t(pos); };
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const Merge* m = merge_at(i)) heap.push_back(key(m->rank, i));
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  auto push = [&](int32_t pos) {
    if (const Merge* m = merge_at(pos)) {
      heap.push_back(key(m->rank, pos));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const int32_t pos = int32_t(uint32_t(top));
    const Merge* m = symbols[pos].id >= 0 ? merge_at(pos) : nullptr;
    if (!m || m->rank != uint32_t(top >> 32)) continue;
    Symbol& left = symbols[pos];
    Symbol& right = symbols[left.next];
    left.id = m->merged_id;
    right.id = -1;  // merged away
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = pos;
    push(left.prev);
    push(pos);
  }
  tokens.clear();
  for (int32_t i = 0; i >= 0; i = symbols[i].next) tokens.push_back(symbols[i].id);
}

}  // namespace dsv3
