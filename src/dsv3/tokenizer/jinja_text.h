// Python `str` semantics over UTF-8 bytes, for the template interpreter: strings are indexed,
// counted and sliced by code point, and split()/strip()/lower() follow Python's rules, so a template
// renders here as it does under jinja2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::jinja {

// Decodes the code point at s[pos] and advances pos past it; throws dsv3::Error on invalid UTF-8.
char32_t next_code_point(std::string_view s, size_t& pos);
void append_utf8(std::string& out, char32_t cp);

// The string cut into one UTF-8 string per code point.
std::vector<std::string> code_points(std::string_view s);
size_t count_code_points(std::string_view s);

// str.isspace(): what Python's split() and strip() without arguments, and `\s` in jinja2's lexer,
// treat as whitespace (ASCII whitespace, U+001C..U+001F, U+0085, and the Unicode space separators).
bool is_python_space(char32_t cp);

// str.strip/lstrip/rstrip: removes code points in `chars`, or whitespace when it is absent.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);

// str.split / str.rsplit: on runs of whitespace when `sep` is absent, else on `sep` exactly;
// at most `max_split` cuts when it is not negative.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep,
                               int64_t max_split);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep,
                                int64_t max_split);

// str.replace: at most `count` replacements when it is not negative.
std::string replace(std::string_view s, std::string_view old_text, std::string_view new_text,
                    int64_t count);

// str.lower / str.upper / str.capitalize with Unicode's one-to-one case mappings, title case for
// capitalize's first letter and the Greek final sigma. Python also applies the few one-to-many
// rules of SpecialCasing.txt ("ß".upper() == "SS"); those are not reproduced.
std::string to_lower(std::string_view s);
std::string to_upper(std::string_view s);
std::string capitalize(std::string_view s);

}  // namespace dsv3::jinja
