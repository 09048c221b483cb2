#include "dsv3/tokenizer/utf8.h"

#include <cstring>

namespace dsv3 {
namespace {

// Length of the well-formed prefix of a sequence starting at `p` (at most `n` bytes available)
// and the length the full sequence needs. A prefix shorter than `needed` is either cut by the end
// (prefix == n) or broken by a bad byte. Ranges follow Unicode Table 3-7.
struct SequenceCheck {
  size_t prefix;
  size_t needed;
};

SequenceCheck check_sequence(const uint8_t* p, size_t n) {
  const uint8_t lead = p[0];
  if (lead < 0x80) return {1, 1};
  size_t needed = 0;
  uint8_t second_lo = 0x80, second_hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    needed = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    needed = 3;
    if (lead == 0xE0) second_lo = 0xA0;  // no overlong forms
    if (lead == 0xED) second_hi = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    needed = 4;
    if (lead == 0xF0) second_lo = 0x90;  // no overlong forms
    if (lead == 0xF4) second_hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {0, 1};  // a continuation byte or C0, C1, F5..FF never begin a character
  }
  size_t prefix = 1;
  while (prefix < needed && prefix < n) {
    const uint8_t b = p[prefix];
    const bool ok = prefix == 1 ? (b >= second_lo && b <= second_hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++prefix;
  }
  return {prefix, needed};
}

}  // namespace

size_t find_invalid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Most text is ASCII: skip eight bytes at a time while no high bit is set.
    if (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const SequenceCheck check = check_sequence(p + i, n - i);
    if (check.prefix != check.needed) return i;
    i += check.needed;
  }
  return std::string_view::npos;
}

char32_t decode_utf8_before(std::string_view text, size_t end, size_t& n_bytes) {
  size_t start = end - 1;
  while (start > 0 && (uint8_t(text[start]) & 0xC0) == 0x80) --start;
  return decode_utf8(text, start, n_bytes);
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

bool is_white_space(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

void append_utf8_lossy(std::string& out, std::string_view bytes) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t valid_from = 0, i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const SequenceCheck check = check_sequence(p + i, n - i);
    if (check.prefix == check.needed) {
      i += check.needed;
      continue;
    }
    out.append(bytes.data() + valid_from, i - valid_from);
    out += kReplacement;
    i += check.prefix == 0 ? 1 : check.prefix;
    valid_from = i;
  }
  out.append(bytes.data() + valid_from, n - valid_from);
}

size_t incomplete_utf8_tail(std::string_view bytes) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  // A character starts at most three bytes before the end; look for its lead byte.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const uint8_t b = p[n - back];
    if ((b & 0xC0) == 0x80) continue;
    const SequenceCheck check = check_sequence(p + n - back, back);
    return check.prefix == back && check.needed > back ? back : 0;
  }
  return 0;
}

}  // namespace dsv3
