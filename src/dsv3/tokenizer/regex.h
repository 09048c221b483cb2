// A compiled PCRE2 pattern (UTF and Unicode-property mode, JIT when available) for the regexes of
// tokenizer.json. `tokenizers` runs them with Oniguruma; PCRE2 agrees on the syntax they use
// (\p{..} classes, look-ahead, alternation order) once \s and \S are given Oniguruma's meaning,
// the White_Space property (PCRE2 10.42's \s also takes U+180E). The patterns of DeepSeek-V3's
// pre-tokenizer run on hand-written matchers with the same results (known_patterns.h).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "dsv3/tokenizer/known_patterns.h"

namespace dsv3 {

class Regex {
 public:
  // Compiles `pattern`, a regex or (with `literal`) a plain string to find; throws dsv3::Error
  // quoting the pattern and `where` (the tokenizer.json field it came from). With `hand_written`
  // false, a known pattern runs on PCRE2 too (to test the hand-written matcher against it).
  Regex(std::string_view pattern, bool literal, std::string_view where, bool hand_written = true);

  // The first match in `subject` that starts at or after byte `start`, as [begin, end); false when
  // there is none. Look-arounds see all of `subject`. `subject` must be valid UTF-8.
  bool search(std::string_view subject, size_t start, size_t& begin, size_t& end) const;

  // Calls on_match(begin, end) for each successive non-overlapping match, as `tokenizers` walks
  // them (Oniguruma's find_iter): an empty match that touches the previous match is skipped, and
  // the search then moves on by one character.
  template <typename OnMatch>
  void for_each_match(std::string_view subject, OnMatch&& on_match) const {
    size_t search_from = 0, begin = 0, end = 0, last_match_end = std::string_view::npos;
    while (search_from < subject.size() || (search_from == subject.size() && can_match_empty())) {
      if (!search(subject, search_from, begin, end)) break;
      if (begin == end && end == last_match_end) {
        search_from += next_char_length(subject, search_from);
        continue;
      }
      on_match(begin, end);
      search_from = end;
      last_match_end = end;
    }
  }

  // Whether some subject has an empty match (when not, a search at the end is known to fail).
  bool can_match_empty() const;

 private:
  // Bytes of the character at `pos` (1 at the end of `subject`).
  static size_t next_char_length(std::string_view subject, size_t pos);

  struct Code;
  std::shared_ptr<const Code> code_;  // shared: a Tokenizer copy reuses the compiled pattern
  std::string pattern_;
  KnownPattern known_ = KnownPattern::kNone;
};

}  // namespace dsv3
