#include "dsv3/tokenizer/jinja_text.h"

#include <locale.h>
#include <wctype.h>

#include <algorithm>

#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) out.push_back(next_code_point(s, pos));
  return out;
}

std::string encode(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) append_utf8(out, cp);
  return out;
}

// glibc's built-in C.UTF-8 locale carries Unicode's simple case mappings; a private locale object
// keeps the process-wide locale untouched.
locale_t unicode_locale() {
  static const locale_t locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(0));
  DSV3_ASSERT(locale != locale_t(0), "the C.UTF-8 locale is needed for case mapping");
  return locale;
}

template <typename Map>
std::string map_code_points(std::string_view s, Map map) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) append_utf8(out, map(next_code_point(s, pos)));
  return out;
}

char32_t lower_cp(char32_t cp) { return char32_t(towlower_l(wint_t(cp), unicode_locale())); }
char32_t upper_cp(char32_t cp) { return char32_t(towupper_l(wint_t(cp), unicode_locale())); }
bool is_cased(char32_t cp) { return lower_cp(cp) != cp || upper_cp(cp) != cp; }

// Title case differs from upper case only for the four Latin digraphs (Ǆ ǅ ǆ -> ǅ, ...).
char32_t title_cp(char32_t cp) {
  if (cp >= 0x1c4 && cp <= 0x1cc) return 0x1c5 + 3 * ((cp - 0x1c4) / 3);
  if (cp >= 0x1f1 && cp <= 0x1f3) return 0x1f2;
  return upper_cp(cp);
}

constexpr char32_t kCapitalSigma = 0x3a3, kFinalSigma = 0x3c2;

}  // namespace

char32_t next_code_point(std::string_view s, size_t& pos) {
  const auto byte = [&](size_t i) { return uint8_t(s[i]); };
  const uint8_t lead = byte(pos);
  size_t length;
  char32_t cp;
  if (lead < 0x80) {
    ++pos;
    return lead;
  } else if ((lead & 0xe0) == 0xc0) {
    length = 2;
    cp = lead & 0x1f;
  } else if ((lead & 0xf0) == 0xe0) {
    length = 3;
    cp = lead & 0x0f;
  } else if ((lead & 0xf8) == 0xf0) {
    length = 4;
    cp = lead & 0x07;
  } else {
    fail("invalid UTF-8 byte 0x", std::hex, int(lead), " at offset ", std::dec, pos);
  }
  if (pos + length > s.size()) fail("truncated UTF-8 sequence at offset ", pos);
  for (size_t i = 1; i < length; ++i) {
    if ((byte(pos + i) & 0xc0) != 0x80) fail("invalid UTF-8 continuation at offset ", pos + i);
    cp = (cp << 6) | (byte(pos + i) & 0x3f);
  }
  static constexpr char32_t min_for_length[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_for_length[length] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    fail("invalid UTF-8 sequence at offset ", pos);
  }
  pos += length;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

std::vector<std::string> code_points(std::string_view s) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < s.size();) {
    const size_t start = pos;
    next_code_point(s, pos);
    out.emplace_back(s.substr(start, pos - start));
  }
  return out;
}

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  for (size_t pos = 0; pos < s.size(); ++n) next_code_point(s, pos);
  return n;
}

bool is_python_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right) {
  const std::u32string text = decode(s);
  const std::u32string set = chars ? decode(*chars) : std::u32string();
  const auto strippable = [&](char32_t cp) {
    return chars ? set.find(cp) != std::u32string::npos : is_python_space(cp);
  };
  size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end && strippable(text[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strippable(text[end - 1])) --end;
  }
  return encode(std::u32string_view(text).substr(begin, end - begin));
}

// The two loops follow CPython's split_whitespace / rsplit_whitespace, including what is left of
// the string once `max_split` cuts are made.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep,
                               int64_t max_split) {
  std::vector<std::string> parts;
  int64_t cuts_left = max_split < 0 ? INT64_MAX : max_split;
  if (sep) {
    if (sep->empty()) fail("split(): empty separator");
    size_t start = 0;
    for (size_t at; cuts_left > 0 && (at = s.find(*sep, start)) != std::string_view::npos;
         --cuts_left) {
      parts.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    parts.emplace_back(s.substr(start));
    return parts;
  }
  const std::u32string text = decode(s);
  const size_t n = text.size();
  size_t i = 0;
  while (cuts_left-- > 0) {
    while (i < n && is_python_space(text[i])) ++i;
    if (i == n) break;
    const size_t j = i;
    while (i < n && !is_python_space(text[i])) ++i;
    parts.push_back(encode(std::u32string_view(text).substr(j, i - j)));
  }
  while (i < n && is_python_space(text[i])) ++i;
  if (i < n) parts.push_back(encode(std::u32string_view(text).substr(i)));
  return parts;
}

std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep,
                                int64_t max_split) {
  std::vector<std::string> parts;
  int64_t cuts_left = max_split < 0 ? INT64_MAX : max_split;
  if (sep) {
    if (sep->empty()) fail("rsplit(): empty separator");
    size_t end = s.size();
    while (cuts_left > 0 && end >= sep->size()) {
      const size_t at = s.substr(0, end).rfind(*sep);
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
      --cuts_left;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  const std::u32string text = decode(s);
  size_t i = text.size();  // one past the next code point to look at
  while (cuts_left-- > 0) {
    while (i > 0 && is_python_space(text[i - 1])) --i;
    if (i == 0) break;
    const size_t j = i;
    while (i > 0 && !is_python_space(text[i - 1])) --i;
    parts.push_back(encode(std::u32string_view(text).substr(i, j - i)));
  }
  while (i > 0 && is_python_space(text[i - 1])) --i;
  if (i > 0) parts.push_back(encode(std::u32string_view(text).substr(0, i)));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::string replace(std::string_view s, std::string_view old_text, std::string_view new_text,
                    int64_t count) {
  std::string out;
  int64_t left = count < 0 ? INT64_MAX : count;
  if (old_text.empty()) {
    // Python inserts `new_text` before every code point and at the end.
    size_t pos = 0;
    while (true) {
      if (left > 0) {
        out += new_text;
        --left;
      }
      if (pos == s.size()) break;
      const size_t start = pos;
      next_code_point(s, pos);
      out += s.substr(start, pos - start);
    }
    return out;
  }
  size_t start = 0;
  for (size_t at; left > 0 && (at = s.find(old_text, start)) != std::string_view::npos; --left) {
    out += s.substr(start, at - start);
    out += new_text;
    start = at + old_text.size();
  }
  out += s.substr(start);
  return out;
}

// Python lowers Σ to the final ς after a cased letter when no cased letter follows.
std::string to_lower(std::string_view s) {
  const std::u32string text = decode(s);
  std::u32string out(text.size(), 0);
  for (size_t i = 0; i < text.size(); ++i) {
    const bool final_sigma = text[i] == kCapitalSigma && i > 0 && is_cased(text[i - 1]) &&
                             (i + 1 == text.size() || !is_cased(text[i + 1]));
    out[i] = final_sigma ? kFinalSigma : lower_cp(text[i]);
  }
  return encode(out);
}

std::string to_upper(std::string_view s) { return map_code_points(s, upper_cp); }

std::string capitalize(std::string_view s) {
  if (s.empty()) return "";
  size_t first_end = 0;
  const char32_t first = next_code_point(s, first_end);
  std::string out;
  append_utf8(out, title_cp(first));
  const std::string lowered = to_lower(s);
  size_t lowered_first_end = 0;
  next_code_point(lowered, lowered_first_end);
  return out + lowered.substr(lowered_first_end);
}

}  // namespace dsv3::jinja
