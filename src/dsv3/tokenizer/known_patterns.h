// Hand-written matchers for the three regexes of DeepSeek-V3's pre-tokenizer. They give exactly
// PCRE2's (and Oniguruma's) leftmost-first matches for these patterns, at several times the speed:
// most of encoding time went to starting one PCRE2 match per word. Regex uses them when a pattern
// is one of these, character for character; any other pattern runs on PCRE2.
#pragma once

#include <cstddef>
#include <string_view>

namespace dsv3 {

enum class KnownPattern {
  kNone,
  kDigitRuns,      // \p{N}{1,3}
  kCjkKanaRuns,    // [\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+
  kDeepSeekWords,  // ASCII punctuation + letters | word | punctuation run | newlines | spaces
};

// Which known pattern `pattern` (as written in tokenizer.json) is, if any.
KnownPattern recognize_pattern(std::string_view pattern);

// The first match of `pattern` in valid UTF-8 `subject` that starts at or after `start`, as in
// Regex::search.
bool search_known_pattern(KnownPattern pattern, std::string_view subject, size_t start,
                          size_t& begin, size_t& end);

}  // namespace dsv3
