#include "dsv3/tokenizer/known_patterns.h"

#include "dsv3/tokenizer/unicode_classes.h"
#include "dsv3/tokenizer/utf8.h"

namespace dsv3 {
namespace {

constexpr std::string_view kDigitRunsPattern = R"(\p{N}{1,3})";
constexpr std::string_view kCjkKanaRunsPattern = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+";
constexpr std::string_view kDeepSeekWordsPattern =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

// A cursor over valid UTF-8: the character at `pos`, its length and its classes.
struct Char {
  char32_t code = 0;
  size_t length = 0;
  uint8_t classes = 0;
};

Char char_at(std::string_view s, size_t pos, const UnicodeClasses& unicode) {
  Char c;
  const uint8_t byte = uint8_t(s[pos]);
  if (byte < 0x80) {
    c.code = byte;
    c.length = 1;
  } else {
    c.code = decode_utf8(s, pos, c.length);
  }
  c.classes = unicode.of(c.code);
  return c;
}

// Where the run of characters that have one of `classes` and start at `pos` ends.
size_t run_end(std::string_view s, size_t pos, uint8_t classes, const UnicodeClasses& unicode) {
  while (pos < s.size()) {
    const Char c = char_at(s, pos, unicode);
    if (!(c.classes & classes)) break;
    pos += c.length;
  }
  return pos;
}

bool is_ascii_punctuation(char32_t c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
         (c >= '{' && c <= '~');
}

bool is_ascii_letter(char32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }

// The alternatives of kDeepSeekWordsPattern, tried in order at `pos`; the end of the first that
// matches, or 0 when none does (a match is never empty).
size_t deepseek_words_match_at(std::string_view s, size_t pos, const UnicodeClasses& unicode) {
  const Char c0 = char_at(s, pos, unicode);
  const size_t pos1 = pos + c0.length;
  const Char c1 = pos1 < s.size() ? char_at(s, pos1, unicode) : Char{};

  // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
  if (is_ascii_punctuation(c0.code) && is_ascii_letter(c1.code)) {
    size_t end = pos1;
    while (end < s.size() && is_ascii_letter(char32_t(uint8_t(s[end])))) ++end;
    return end;
  }
  // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
  const bool may_lead = !is_newline(c0.code) && !(c0.classes & (kLetter | kPunctuation | kSymbol));
  if (may_lead && (c1.classes & (kLetter | kMark))) return run_end(s, pos1, kLetter | kMark, unicode);
  if (c0.classes & (kLetter | kMark)) return run_end(s, pos, kLetter | kMark, unicode);
  // ' '?[\p{P}\p{S}]+[\r\n]*
  const bool space_then_punctuation = c0.code == ' ' && (c1.classes & (kPunctuation | kSymbol));
  if (space_then_punctuation || (c0.classes & (kPunctuation | kSymbol))) {
    size_t end = run_end(s, space_then_punctuation ? pos1 : pos, kPunctuation | kSymbol, unicode);
    while (end < s.size() && is_newline(char32_t(uint8_t(s[end])))) ++end;
    return end;
  }
  if (!(c0.classes & kWhiteSpace)) return 0;
  // The white space run, its last newline and its last character.
  size_t end = pos, after_last_newline = 0, last_char_start = pos;
  while (end < s.size()) {
    const Char c = char_at(s, end, unicode);
    if (!(c.classes & kWhiteSpace)) break;
    last_char_start = end;
    end += c.length;
    if (is_newline(c.code)) after_last_newline = end;
  }
  // \s*[\r\n]+ : the white space up to its last newline.
  if (after_last_newline) return after_last_newline;
  // \s+(?!\S) : all of it at the end of the text, else all but its last character...
  if (end == s.size()) return end;
  if (last_char_start > pos) return last_char_start;
  // \s+ : ...unless that leaves nothing.
  return end;
}

// Whether the character that starts with `byte` cannot be a digit (kDigitRuns) or a CJK or kana
// character (kCjkKanaRuns), known from that byte alone: lets the scan skip most text cheaply.
bool surely_not_a_start(KnownPattern pattern, uint8_t byte) {
  if (pattern == KnownPattern::kDigitRuns) return byte < 0x80 && (byte < '0' || byte > '9');
  if (pattern == KnownPattern::kCjkKanaRuns) return byte < 0xE3 || byte > 0xE9;  // U+3040..U+9FA5
  return false;
}

}  // namespace

KnownPattern recognize_pattern(std::string_view pattern) {
  if (pattern == kDigitRunsPattern) return KnownPattern::kDigitRuns;
  if (pattern == kCjkKanaRunsPattern) return KnownPattern::kCjkKanaRuns;
  if (pattern == kDeepSeekWordsPattern) return KnownPattern::kDeepSeekWords;
  return KnownPattern::kNone;
}

bool search_known_pattern(KnownPattern pattern, std::string_view s, size_t start, size_t& begin,
                          size_t& end) {
  const UnicodeClasses& unicode = UnicodeClasses::get();
  for (size_t pos = start; pos < s.size();) {
    if (surely_not_a_start(pattern, uint8_t(s[pos]))) {
      ++pos;
      while (pos < s.size() && (uint8_t(s[pos]) & 0xC0) == 0x80) ++pos;  // rest of the character
      continue;
    }
    const Char c = char_at(s, pos, unicode);
    switch (pattern) {
      case KnownPattern::kDigitRuns:
        if (c.classes & kNumber) {
          begin = pos;
          end = pos + c.length;
          for (int n = 1; n < 3 && end < s.size(); ++n) {
            const Char next = char_at(s, end, unicode);
            if (!(next.classes & kNumber)) break;
            end += next.length;
          }
          return true;
        }
        break;
      case KnownPattern::kCjkKanaRuns: {
        auto is_cjk_or_kana = [](char32_t code) {
          return (code >= 0x4E00 && code <= 0x9FA5) || (code >= 0x3040 && code <= 0x30FF);
        };
        if (is_cjk_or_kana(c.code)) {
          begin = pos;
          end = pos + c.length;
          while (end < s.size()) {
            const Char next = char_at(s, end, unicode);
            if (!is_cjk_or_kana(next.code)) break;
            end += next.length;
          }
          return true;
        }
        break;
      }
      case KnownPattern::kDeepSeekWords:
        if (const size_t match_end = deepseek_words_match_at(s, pos, unicode)) {
          begin = pos;
          end = match_end;
          return true;
        }
        break;
      case KnownPattern::kNone:
        return false;
    }
    pos += c.length;
  }
  return false;
}

}  // namespace dsv3
