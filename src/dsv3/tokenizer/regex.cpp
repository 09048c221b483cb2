#include "dsv3/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "dsv3/tokenizer/utf8.h"
#include "dsv3/util/error.h"

namespace dsv3 {
namespace {

// Oniguruma's \s is the White_Space property; spell it out so PCRE2 matches the same set.
std::string translate_pattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size());
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    const char escaped = pattern[++i];
    if (escaped == 's') {
      out += "\\p{White_Space}";
    } else if (escaped == 'S') {
      out += "\\P{White_Space}";
    } else {
      out += '\\';
      out += escaped;
    }
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Per-thread match state: PCRE2 match data and a JIT stack large enough for long runs of one
// class (a 100 kB line of letters) are not shareable between threads.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);

  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, jit_stack); }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(data);
  }
};

MatchScratch& match_scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  bool can_match_empty = true;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(std::string_view pattern, bool literal, std::string_view where, bool hand_written)
    : pattern_(pattern) {
  const std::string source = literal ? std::string(pattern) : translate_pattern(pattern);
  const uint32_t options = literal ? (PCRE2_LITERAL | PCRE2_UTF) : (PCRE2_UTF | PCRE2_UCP);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  auto code = std::make_shared<Code>();
  code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options,
                             &error, &error_offset, nullptr);
  if (!code->code)
    fail(where, ": cannot compile regex '", pattern, "': ", pcre2_message(error), " at offset ",
         error_offset);
  code->jit = pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE) == 0;
  uint32_t match_empty = 1;
  pcre2_pattern_info(code->code, PCRE2_INFO_MATCHEMPTY, &match_empty);
  code->can_match_empty = match_empty != 0;
  code_ = std::move(code);
  if (hand_written && !literal) known_ = recognize_pattern(pattern);
}

bool Regex::search(std::string_view subject, size_t start, size_t& begin, size_t& end) const {
  if (known_ != KnownPattern::kNone) return search_known_pattern(known_, subject, start, begin, end);
  MatchScratch& scratch = match_scratch();
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const int rc = code_->jit ? pcre2_jit_match(code_->code, text, subject.size(), start, 0,
                                              scratch.data, scratch.context)
                            : pcre2_match(code_->code, text, subject.size(), start,
                                          PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  // rc == 0 only says the one-pair match data had no room for capture groups: still a match.
  if (rc < 0) fail("regex '", pattern_, "' failed: ", pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
  begin = ovector[0];
  end = ovector[1];
  return true;
}

bool Regex::can_match_empty() const { return code_->can_match_empty; }

size_t Regex::next_char_length(std::string_view subject, size_t pos) {
  if (pos >= subject.size()) return 1;
  size_t n = 0;
  decode_utf8(subject, pos, n);
  return n;
}

}  // namespace dsv3
