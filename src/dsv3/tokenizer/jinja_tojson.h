// The `tojson` filter as Hugging Face's chat templates get it: Python's json.dumps with
// ensure_ascii=False by default (transformers replaces jinja2's HTML-escaping tojson), and its
// indent, separators and sort_keys options.
#pragma once

#include <optional>
#include <string>

#include "dsv3/tokenizer/jinja_value.h"

namespace dsv3::jinja {

struct JsonStyle {
  bool ensure_ascii = false;            // escape every non-ASCII code point as \uXXXX
  std::optional<std::string> indent;    // pretty-print with this per-level indent
  std::string item_separator = ", ";    // json.dumps's defaults; "," when indenting
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// json.dumps(v): throws for undefined and for values that are not data.
std::string to_json_text(const Value& v, const JsonStyle& style);

}  // namespace dsv3::jinja
