// Template source to tokens, with jinja2's whitespace control as Hugging Face configures it for
// chat templates: trim_blocks (a newline right after %} or #} is dropped), lstrip_blocks (spaces
// and tabs before {% or {# on their own line are dropped), `-` in a delimiter strips all
// whitespace on that side, `+` turns the block options off, newlines are normalised to \n and one
// trailing newline of the template is dropped (keep_trailing_newline off).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::jinja {

enum class TokenType {
  text,            // literal template text, whitespace control already applied
  variable_begin,  // {{
  variable_end,    // }}
  block_begin,     // {%
  block_end,       // %}
  name,            // identifiers and keywords (if, in, not, true, none, ...)
  string,          // a string literal, escapes decoded
  integer,
  floating,
  op,              // an operator or bracket: + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { }
};

struct Token {
  TokenType type;
  std::string text;  // the text, name, decoded string or operator
  int64_t integer = 0;
  double floating = 0;
  int line = 1;
};

// Throws dsv3::Error "chat template line N: ..." for unterminated tags, comments and strings and for
// characters that belong to no token.
std::vector<Token> tokenize(std::string_view source);

}  // namespace dsv3::jinja
