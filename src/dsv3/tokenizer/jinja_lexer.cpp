#include "dsv3/tokenizer/jinja_lexer.h"

#include <cerrno>
#include <cstdlib>

#include "dsv3/tokenizer/jinja_text.h"
#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// \r\n and \r become \n, and one trailing newline goes, as jinja2's lexer does before anything else.
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize_newlines(source)) {}

  std::vector<Token> run() {
    bool line_starting = true;  // whether the last tag's end (with what it trimmed) ended a line
    while (pos_ < src_.size()) {
      const size_t tag = find_tag_start();
      if (tag == std::string::npos) {
        emit_text(src_.substr(pos_));
        break;
      }
      std::string text = src_.substr(pos_, tag - pos_);
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      size_t after = tag + 2;
      const char modifier = after < src_.size() && (src_[after] == '-' || src_[after] == '+')
                                ? src_[after++]
                                : 0;
      if (modifier == '-') {
        text = strip(text, std::nullopt, false, true);
      } else if (modifier != '+' && kind != '{') {
        lstrip_block(text, line_starting);
      }
      emit_text(std::move(text));
      count_lines(pos_, tag);
      pos_ = after;
      const size_t end_start = pos_;
      if (kind == '#') {
        skip_comment();
      } else {
        lex_tag(kind == '%' ? TokenType::block_begin : TokenType::variable_begin);
      }
      line_starting = pos_ > end_start && src_[pos_ - 1] == '\n';
    }
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(const std::string& message) const {
    fail("chat template line ", line_, ": ", message);
  }

  size_t find_tag_start() const {
    for (size_t i = src_.find('{', pos_); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  // lstrip_blocks: the spaces and tabs between a line start and {% or {# go.
  static void lstrip_block(std::string& text, bool line_starting) {
    const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (line_start == 0 && !line_starting) return;
    if (text.find_first_not_of(" \t", line_start) == std::string::npos) text.resize(line_start);
  }

  void count_lines(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) line_ += src_[i] == '\n';
  }

  void emit_text(std::string text) {
    if (text.empty()) return;
    tokens_.push_back({TokenType::text, std::move(text), 0, 0, line_});
  }

  void emit(TokenType type, std::string text = {}) { tokens_.push_back({type, std::move(text), 0, 0, line_}); }

  // After `-%}`, `-}}` or `-#}`: all whitespace, newlines included.
  void skip_whitespace_after_tag() {
    while (pos_ < src_.size()) {
      size_t next = pos_;
      if (!is_python_space(next_code_point(src_, next))) break;
      count_lines(pos_, next);
      pos_ = next;
    }
  }

  // trim_blocks: one newline right after %} or #}.
  void trim_newline_after_tag() {
    if (pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
    }
  }

  void skip_comment() {
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) error("missing end of comment tag #}");
    const char modifier = end > pos_ ? src_[end - 1] : 0;
    count_lines(pos_, end + 2);
    pos_ = end + 2;
    if (modifier == '-') {
      skip_whitespace_after_tag();
    } else if (modifier != '+') {
      trim_newline_after_tag();
    }
  }

  // Tokens of one {% ... %} or {{ ... }}, up to and including its end delimiter. An end delimiter
  // inside brackets belongs to the expression (`{{ {'a': {'b': 1}} }}`), as in jinja2.
  void lex_tag(TokenType begin) {
    const bool block = begin == TokenType::block_begin;
    const std::string end = block ? "%}" : "}}";
    emit(begin);
    std::string open_brackets;
    while (true) {
      while (pos_ < src_.size() && is_ascii_space(src_[pos_])) line_ += src_[pos_++] == '\n';
      if (pos_ >= src_.size()) error("unexpected end of template, expected '" + end + "'");
      if (open_brackets.empty()) {
        if (src_.compare(pos_, 3, "-" + end) == 0) {
          pos_ += 3;
          emit(block ? TokenType::block_end : TokenType::variable_end);
          skip_whitespace_after_tag();
          return;
        }
        if (block && src_.compare(pos_, 3, "+%}") == 0) {
          pos_ += 3;
          emit(TokenType::block_end);
          return;
        }
        if (src_.compare(pos_, 2, end) == 0) {
          pos_ += 2;
          emit(block ? TokenType::block_end : TokenType::variable_end);
          if (block) trim_newline_after_tag();
          return;
        }
      }
      const char c = src_[pos_];
      if (c == '\'' || c == '"') {
        lex_string();
      } else if (is_digit(c)) {
        lex_number();
      } else if (is_name_start(c)) {
        const size_t start = pos_;
        while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
        emit(TokenType::name, src_.substr(start, pos_ - start));
      } else {
        lex_operator(open_brackets);
      }
    }
  }

  void lex_operator(std::string& open_brackets) {
    static const char* const two_char[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const char* op : two_char) {
      if (src_.compare(pos_, 2, op) == 0) {
        emit(TokenType::op, op);
        pos_ += 2;
        return;
      }
    }
    const char c = src_[pos_];
    if (std::string_view("+-*/%~[](){}<>=.:|,;").find(c) == std::string_view::npos) {
      size_t next = pos_;
      std::string shown;
      append_utf8(shown, next_code_point(src_, next));
      error("unexpected character '" + shown + "'");
    }
    if (c == '(' || c == '[' || c == '{') {
      open_brackets += c == '(' ? ')' : c == '[' ? ']' : '}';
    } else if (c == ')' || c == ']' || c == '}') {
      if (open_brackets.empty()) error(std::string("unexpected '") + c + "'");
      if (open_brackets.back() != c) {
        error(std::string("unexpected '") + c + "', expected '" + open_brackets.back() + "'");
      }
      open_brackets.pop_back();
    }
    emit(TokenType::op, std::string(1, c));
    ++pos_;
  }

  // Integers and floats as jinja2 reads them: digits with `_` separators, a fraction needs digits
  // after the point, and no float starts right after a '.' (so `x.0.1` is two subscripts).
  void lex_number() {
    const auto digits = [&] {
      while (pos_ < src_.size() && (is_digit(src_[pos_]) || (src_[pos_] == '_' && pos_ + 1 < src_.size() && is_digit(src_[pos_ + 1])))) {
        ++pos_;
      }
    };
    const size_t start = pos_;
    digits();
    bool is_float = false;
    const bool after_dot = start > 0 && src_[start - 1] == '.';
    if (!after_dot && pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
      ++pos_;
      digits();
      is_float = true;
    }
    if (!after_dot && pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t exp = pos_ + 1;
      if (exp < src_.size() && (src_[exp] == '+' || src_[exp] == '-')) ++exp;
      if (exp < src_.size() && is_digit(src_[exp])) {
        pos_ = exp;
        digits();
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    Token token{is_float ? TokenType::floating : TokenType::integer, text, 0, 0, line_};
    if (is_float) {
      token.floating = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      token.integer = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) error("integer literal " + text + " is out of range");
    }
    tokens_.push_back(std::move(token));
  }

  // A quoted literal with Python's escapes (\n, \t, \\, \', \xhh, \uXXXX, \UXXXXXXXX, octal, ...);
  // an unknown escape keeps its backslash, as Python's does.
  void lex_string() {
    const char quote = src_[pos_++];
    const int start_line = line_;
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) {
        line_ = start_line;
        error("unterminated string literal");
      }
      const char c = src_[pos_++];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= src_.size()) continue;
      const char e = src_[pos_++];
      switch (e) {
        case '\n': ++line_; break;  // a line continuation
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x': append_utf8(value, hex_escape(2, "\\x")); break;
        case 'u': append_utf8(value, hex_escape(4, "\\u")); break;
        case 'U': append_utf8(value, hex_escape(8, "\\U")); break;
        case 'N': error("the \\N{...} escape is not supported");
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = char32_t(e - '0');
            for (int i = 0; i < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7'; ++i) {
              cp = cp * 8 + char32_t(src_[pos_++] - '0');
            }
            append_utf8(value, cp);
          } else {
            value += '\\';
            value += e;
          }
      }
    }
    tokens_.push_back({TokenType::string, std::move(value), 0, 0, start_line});
  }

  char32_t hex_escape(int digits, const char* name) {
    char32_t cp = 0;
    for (int i = 0; i < digits; ++i) {
      const int h = pos_ < src_.size() ? hex_value(src_[pos_]) : -1;
      if (h < 0) error(std::string("truncated ") + name + " escape in a string literal");
      cp = cp * 16 + char32_t(h);
      ++pos_;
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      error(std::string(name) + " escape in a string literal is not a Unicode scalar value");
    }
    return cp;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace dsv3::jinja
