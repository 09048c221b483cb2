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
  // The piece as a linked list of tokens, and a min-heap of the merges possible between
  // neighbours, ordered by (rank, position). A heap entry goes stale when one of its two tokens
  // has merged since it was pushed; it is then skipped.
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1: none
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t left_id, right_id, merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  const int32_t n = int32_t(piece.size());
  if (n == 0) return;
  symbols.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i)
    symbols[i] = {byte_ids_[uint8_t(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};

  auto push_candidate = [&](int32_t pos) {
    if (pos < 0 || symbols[pos].next < 0) return;
    const int32_t next = symbols[pos].next;
    if (const Merge* m = merges_.find(symbols[pos].id, symbols[next].id)) {
      heap.push_back({m->rank, pos, symbols[pos].id, symbols[next].id, m->merged_id});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_candidate(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.id != top.left_id || left.next < 0 || symbols[left.next].id != top.right_id) continue;
    const Symbol right = symbols[left.next];
    left.id = top.merged_id;
    symbols[left.next].id = -1;  // merged away: no candidate can match it again
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    push_candidate(left.prev);
    push_candidate(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace dsv3
