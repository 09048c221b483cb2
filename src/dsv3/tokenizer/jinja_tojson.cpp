#include "dsv3/tokenizer/jinja_tojson.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "dsv3/tokenizer/jinja_text.h"
#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

void append_escaped_unit(std::string& out, unsigned unit) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "\\u%04x", unit);
  out += buffer;
}

// json.dumps string escaping: quote, backslash and control characters always; every non-ASCII
// code point too (as UTF-16 units) under ensure_ascii.
void append_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (size_t pos = 0; pos < s.size();) {
    const char32_t cp = next_code_point(s, pos);
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20) {
          append_escaped_unit(out, unsigned(cp));
        } else if (cp >= 0x80 && ensure_ascii) {
          if (cp >= 0x10000) {
            const char32_t v = cp - 0x10000;
            append_escaped_unit(out, unsigned(0xd800 + (v >> 10)));
            append_escaped_unit(out, unsigned(0xdc00 + (v & 0x3ff)));
          } else {
            append_escaped_unit(out, unsigned(cp));
          }
        } else {
          append_utf8(out, cp);
        }
    }
  }
  out += '"';
}

class Writer {
 public:
  explicit Writer(const JsonStyle& style) : style_(style) {}

  void write(const Json& j, size_t depth) {
    switch (j.type()) {
      case Json::value_t::null: out_ += "null"; break;
      case Json::value_t::boolean: out_ += j.get<bool>() ? "true" : "false"; break;
      case Json::value_t::number_integer: out_ += std::to_string(j.get<int64_t>()); break;
      case Json::value_t::number_unsigned: out_ += std::to_string(j.get<uint64_t>()); break;
      case Json::value_t::number_float: write_float(j.get<double>()); break;
      case Json::value_t::string: append_string(out_, j.get_ref<const std::string&>(), style_.ensure_ascii); break;
      case Json::value_t::array: write_array(j, depth); break;
      case Json::value_t::object: write_object(j, depth); break;
      default: fail("tojson: cannot serialize a JSON ", j.type_name());
    }
  }

  std::string take() { return std::move(out_); }

 private:
  void write_float(double x) {
    if (std::isnan(x)) {
      out_ += "NaN";
    } else if (std::isinf(x)) {
      out_ += x > 0 ? "Infinity" : "-Infinity";
    } else {
      out_ += format_float(x);
    }
  }

  // Before item `index` of a container at `depth`: the separator, then a newline and indent.
  void open_item(size_t index, size_t depth) {
    if (index > 0) out_ += style_.item_separator;
    newline(depth + 1);
  }

  void newline(size_t depth) {
    if (!style_.indent) return;
    out_ += '\n';
    for (size_t i = 0; i < depth; ++i) out_ += *style_.indent;
  }

  void write_array(const Json& j, size_t depth) {
    if (j.empty()) {
      out_ += "[]";
      return;
    }
    out_ += '[';
    for (size_t i = 0; i < j.size(); ++i) {
      open_item(i, depth);
      write(j[i], depth + 1);
    }
    newline(depth);
    out_ += ']';
  }

  void write_object(const Json& j, size_t depth) {
    if (j.empty()) {
      out_ += "{}";
      return;
    }
    std::vector<const std::string*> keys;
    for (const auto& [key, value] : j.items()) keys.push_back(&key);
    if (style_.sort_keys) {
      std::sort(keys.begin(), keys.end(), [](const auto* a, const auto* b) { return *a < *b; });
    }
    out_ += '{';
    for (size_t i = 0; i < keys.size(); ++i) {
      open_item(i, depth);
      append_string(out_, *keys[i], style_.ensure_ascii);
      out_ += style_.key_separator;
      write(j.at(*keys[i]), depth + 1);
    }
    newline(depth);
    out_ += '}';
  }

  const JsonStyle& style_;
  std::string out_;
};

}  // namespace

std::string to_json_text(const Value& v, const JsonStyle& style) {
  if (v.is_undefined()) fail("tojson: ", undefined_error(v));
  if (!v.is_data()) fail("tojson: object of type ", type_name(v), " is not JSON serializable");
  Writer writer(style);
  writer.write(v.json(), 0);
  return writer.take();
}

}  // namespace dsv3::jinja
