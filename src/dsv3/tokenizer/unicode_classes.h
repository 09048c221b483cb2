// The Unicode classes the pre-tokenizer regexes test (\p{L}, \p{M}, \p{N}, \p{P}, \p{S} and
// White_Space), per code point, for the hand-written matchers of known_patterns.h. The table is
// read out of PCRE2's own Unicode tables once per process, so the hand-written matchers and
// PCRE2 classify every character alike.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv3 {

enum UnicodeClass : uint8_t {
  kLetter = 1,       // \p{L}
  kMark = 2,         // \p{M}
  kNumber = 4,       // \p{N}
  kPunctuation = 8,  // \p{P}
  kSymbol = 16,      // \p{S}
  kWhiteSpace = 32,  // White_Space (what \s means in Oniguruma)
};

class UnicodeClasses {
 public:
  static const UnicodeClasses& get();

  uint8_t of(char32_t c) const {
    if (c < 128) return ascii_[c];
    if (c > 0x10FFFF) return 0;
    return blocks_[size_t(block_of_[c >> kBlockBits]) << kBlockBits | (c & kBlockMask)];
  }

 private:
  static constexpr int kBlockBits = 8;
  static constexpr char32_t kBlockMask = (1u << kBlockBits) - 1;

  UnicodeClasses();

  std::array<uint8_t, 128> ascii_{};
  std::vector<uint16_t> block_of_;  // code point >> kBlockBits -> index of its block in blocks_
  std::vector<uint8_t> blocks_;     // distinct blocks of 256 class bytes
};

}  // namespace dsv3
