#include "dsv3/tokenizer/unicode_classes.h"

#include <map>
#include <string>

#include "dsv3/tokenizer/regex.h"
#include "dsv3/tokenizer/utf8.h"

namespace dsv3 {
namespace {

// Planes 4 to 13 are unassigned and 15 and 16 are private use: none of their code points is in
// these classes. Plane 14 holds tags and variation selectors (marks).
bool may_have_classes(char32_t c) { return c < 0x40000 || (c >= 0xE0000 && c < 0xF0000); }

}  // namespace

const UnicodeClasses& UnicodeClasses::get() {
  static const UnicodeClasses instance;
  return instance;
}

UnicodeClasses::UnicodeClasses() {
  // Every scalar value that may have a class, in order, as one UTF-8 text; each class's regex
  // then finds the runs of its code points.
  std::string all;
  all.reserve(1 << 20);
  for (char32_t c = 0; c <= 0x10FFFF; ++c)
    if (!(c >= 0xD800 && c <= 0xDFFF) && may_have_classes(c)) append_utf8(all, c);
  std::vector<uint8_t> classes(0x110000, 0);
  const std::pair<const char*, UnicodeClass> class_patterns[] = {
      {"\\p{L}+", kLetter}, {"\\p{M}+", kMark}, {"\\p{N}+", kNumber},
      {"\\p{P}+", kPunctuation}, {"\\p{S}+", kSymbol}};
  for (const auto& [pattern, bit] : class_patterns) {
    const Regex regex(pattern, false, "Unicode class table", /*hand_written=*/false);
    regex.for_each_match(all, [&](size_t begin, size_t end) {
      for (size_t pos = begin, n = 0; pos < end; pos += n) classes[decode_utf8(all, pos, n)] |= bit;
    });
  }
  for (char32_t c = 0; c <= 0x10FFFF; ++c)
    if (is_white_space(c)) classes[c] |= kWhiteSpace;

  for (char32_t c = 0; c < 128; ++c) ascii_[c] = classes[c];
  std::map<std::string, uint16_t> block_index;  // a block's bytes -> its index
  block_of_.resize(0x110000 >> kBlockBits);
  for (size_t b = 0; b < block_of_.size(); ++b) {
    const std::string block(classes.begin() + (b << kBlockBits),
                            classes.begin() + ((b + 1) << kBlockBits));
    auto [it, inserted] = block_index.emplace(block, uint16_t(block_index.size()));
    if (inserted) blocks_.insert(blocks_.end(), block.begin(), block.end());
    block_of_[b] = it->second;
  }
}

}  // namespace dsv3
