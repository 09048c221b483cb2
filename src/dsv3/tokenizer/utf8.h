// UTF-8 as the tokenizer meets it: validating input text, decoding one code point, the
// White_Space property, and the lossy conversion (invalid bytes to U+FFFD) that decoding ends with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

// Byte offset of the first byte that does not begin a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are ill-formed), or npos when all of `text` is valid.
size_t find_invalid_utf8(std::string_view text);

// The code point that starts at `text[pos]`, which must begin a well-formed sequence; `n_bytes`
// receives its length. (Inline: the pre-tokenizer decodes every character.)
inline char32_t decode_utf8(std::string_view text, size_t pos, size_t& n_bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data()) + pos;
  if (p[0] < 0x80) {
    n_bytes = 1;
    return p[0];
  }
  if (p[0] < 0xE0) {
    n_bytes = 2;
    return char32_t(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
  }
  if (p[0] < 0xF0) {
    n_bytes = 3;
    return char32_t(p[0] & 0x0F) << 12 | char32_t(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
  }
  n_bytes = 4;
  return char32_t(p[0] & 0x07) << 18 | char32_t(p[1] & 0x3F) << 12 | char32_t(p[2] & 0x3F) << 6 |
         (p[3] & 0x3F);
}

// The code point that ends at `text[end - 1]` in well-formed `text`; `n_bytes` receives its length.
char32_t decode_utf8_before(std::string_view text, size_t end, size_t& n_bytes);

void append_utf8(std::string& out, char32_t code_point);

// Unicode's White_Space property (what Rust's char::is_whitespace and regex \s test).
bool is_white_space(char32_t code_point);

// Appends `bytes` to `out` with every ill-formed part replaced by U+FFFD, one replacement for each
// maximal subpart of an ill-formed sequence (the Unicode recommendation that Rust's
// String::from_utf8_lossy, and so the `tokenizers` decoders, follow).
void append_utf8_lossy(std::string& out, std::string_view bytes);

// Length of the tail of `bytes` that is a proper prefix of a well-formed sequence: the start of a
// character that more bytes may still complete (0 to 3).
size_t incomplete_utf8_tail(std::string_view bytes);

}  // namespace dsv3
