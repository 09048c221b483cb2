#include "dsv3/tokenizer/word_cache.h"

#include <algorithm>
#include <cstring>

namespace dsv3 {

WordCache::WordCache() : slots_(2 * kCapacity) {}

namespace {

uint64_t load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint32_t load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// memcmp(a, b, n) == 0, without a call for the short pieces that most are.
bool same_bytes(const char* a, const char* b, size_t n) {
  if (n >= 8 && n <= 16) return load64(a) == load64(b) && load64(a + n - 8) == load64(b + n - 8);
  if (n >= 4 && n < 8) return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
  if (n < 4) {
    for (size_t i = 0; i < n; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }
  return std::memcmp(a, b, n) == 0;
}

uint64_t mix(uint64_t h, uint64_t word) {
  h = (h ^ word) * 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 31);
}

}  // namespace

uint64_t WordCache::hash(std::string_view piece) {
  // Eight bytes at a time through splitmix64's mixer; a short tail (most pieces are short) is read
  // as two overlapping 4-byte words, or three single bytes, so no loop or copy is needed.
  const char* p = piece.data();
  size_t n = piece.size();
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  for (; n > 8; p += 8, n -= 8) h = mix(h, load64(p));
  uint64_t tail;
  if (n >= 4)
    tail = uint64_t(load32(p)) << 32 | load32(p + n - 4);
  else if (n > 0)
    tail = uint64_t(uint8_t(p[0])) << 16 | uint64_t(uint8_t(p[n / 2])) << 8 | uint8_t(p[n - 1]);
  else
    tail = 0;
  h = mix(h, tail) * 0x94D049BB133111EBull;
  return (h ^ (h >> 29)) | 1;
}

bool WordCache::find(std::string_view piece, uint64_t hash, std::span<const int32_t>& ids) const {
  for (size_t i = hash & mask();; i = (i + 1) & mask()) {
    const Slot& slot = slots_[i];
    if (slot.hash == 0) return false;
    if (slot.hash == hash && slot.piece_bytes == piece.size() &&
        same_bytes(pieces_.data() + slot.piece_offset, piece.data(), piece.size())) {
      ids = {ids_.data() + slot.ids_offset, slot.n_ids};
      return true;
    }
  }
}

void WordCache::insert(std::string_view piece, uint64_t hash, std::span<const int32_t> ids) {
  if (piece.size() > kMaxPieceBytes) return;
  if (size_ == kCapacity) clear();
  size_t i = hash & mask();
  while (slots_[i].hash != 0) i = (i + 1) & mask();
  slots_[i] = {hash, uint32_t(pieces_.size()), uint32_t(ids_.size()), uint16_t(piece.size()),
               uint16_t(ids.size())};
  pieces_.append(piece);
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  ++size_;
}

void WordCache::clear() {
  std::fill(slots_.begin(), slots_.end(), Slot{});
  pieces_.clear();
  ids_.clear();
  size_ = 0;
}

}  // namespace dsv3
