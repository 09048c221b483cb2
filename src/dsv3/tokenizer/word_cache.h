// A cache from a pre-tokenized piece (its bytes) to its BPE token ids. Text repeats its words, so
// most pieces of a document are found here and BPE runs once per distinct piece. Not thread-safe:
// each thread that encodes keeps its own (see Bpe::encode_piece), about 4 MB once full.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class WordCache {
 public:
  // Pieces longer than this are not cached: long runs rarely repeat.
  static constexpr size_t kMaxPieceBytes = 255;
  // When full, the cache empties and starts again.
  static constexpr size_t kCapacity = 1 << 16;

  WordCache();

  static uint64_t hash(std::string_view piece);

  // The cached ids of `piece` (whose hash() is `hash`), or false.
  bool find(std::string_view piece, uint64_t hash, std::span<const int32_t>& ids) const;
  void insert(std::string_view piece, uint64_t hash, std::span<const int32_t> ids);
  void clear();

 private:
  struct Slot {
    uint64_t hash = 0;  // 0: empty (hash() never returns 0)
    uint32_t piece_offset = 0, ids_offset = 0;
    uint16_t piece_bytes = 0, n_ids = 0;
  };
  size_t mask() const { return slots_.size() - 1; }

  std::vector<Slot> slots_;  // open addressing, linear probing, twice kCapacity
  std::string pieces_;       // the cached pieces' bytes, back to back
  std::vector<int32_t> ids_;
  size_t size_ = 0;
};

}  // namespace dsv3
