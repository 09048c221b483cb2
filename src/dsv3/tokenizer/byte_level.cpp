#include "dsv3/tokenizer/byte_level.h"

#include <array>

#include "dsv3/tokenizer/utf8.h"

namespace dsv3 {
namespace {

// Bytes that are printable in Latin-1 keep their own code point.
bool is_printable_latin1(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Alphabet {
  std::array<char32_t, 256> char_of_byte{};
  std::array<int16_t, 324> byte_of_char{};  // indexed by code point; -1: not in the alphabet

  Alphabet() {
    byte_of_char.fill(-1);
    char32_t next = 256;  // the others take U+0100 onwards, in byte order
    for (int b = 0; b < 256; ++b) {
      char_of_byte[b] = is_printable_latin1(b) ? char32_t(b) : next++;
      byte_of_char[char_of_byte[b]] = int16_t(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

std::string byte_level_char(uint8_t byte) {
  std::string out;
  append_utf8(out, alphabet().char_of_byte[byte]);
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view token) {
  const Alphabet& a = alphabet();
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t pos = 0; pos < token.size();) {
    size_t n = 0;
    const char32_t c = decode_utf8(token, pos, n);
    if (c >= a.byte_of_char.size() || a.byte_of_char[c] < 0) return std::nullopt;
    bytes += char(a.byte_of_char[c]);
    pos += n;
  }
  return bytes;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  for (char b : bytes) append_utf8(out, alphabet().char_of_byte[uint8_t(b)]);
  return out;
}

std::string byte_level_decode_token(std::string_view token) {
  std::optional<std::string> bytes = byte_level_to_bytes(token);
  return bytes ? *std::move(bytes) : std::string(token);
}

}  // namespace dsv3
