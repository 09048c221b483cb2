#include "dsv3/tokenizer/jinja_value.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "dsv3/tokenizer/jinja_text.h"
#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

bool is_numeric(const Json& j) { return j.is_number() || j.is_boolean(); }
bool is_integral(const Json& j) { return j.is_number_integer() || j.is_boolean(); }

int64_t json_integer(const Json& j) {
  if (j.is_boolean()) return j.get<bool>() ? 1 : 0;
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) fail("integer ", u, " is out of range");
    return int64_t(u);
  }
  return j.get<int64_t>();
}

double json_number(const Json& j) {
  return j.is_number_float() ? j.get<double>() : double(json_integer(j));
}

const char* json_type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "NoneType";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "int";
    case Json::value_t::number_float: return "float";
    case Json::value_t::string: return "str";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "dict";
    default: return "object";
  }
}

// Code points Python's str.isprintable() rejects beyond the C0/C1 controls: the space separators
// other than U+0020 and the common format characters. (Unassigned and private-use code points are
// also unprintable to Python; they are rare enough in chat text not to be tabled here.)
bool is_unprintable(char32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
         (cp >= 0x205f && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206f) || cp == 0x3000 ||
         cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) || (cp >= 0x600 && cp <= 0x605) ||
         cp == 0x61c || cp == 0x6dd || cp == 0x70f || cp == 0x180e;
}

// Python's repr(str): single quotes unless the text holds a single quote and no double quote.
std::string repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t pos = 0; pos < s.size();) {
    const char32_t cp = next_code_point(s, pos);
    char escape[16];
    if (cp == char32_t(quote) || cp == '\\') {
      out += '\\';
      out += char(cp);
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (is_unprintable(cp)) {
      const char* format = cp <= 0xff ? "\\x%02x" : cp <= 0xffff ? "\\u%04x" : "\\U%08x";
      std::snprintf(escape, sizeof escape, format, unsigned(cp));
      out += escape;
    } else {
      append_utf8(out, cp);
    }
  }
  out += quote;
  return out;
}

std::string repr_json(const Json& j);

std::string str_json(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "None";
    case Json::value_t::boolean: return j.get<bool>() ? "True" : "False";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return std::to_string(json_integer(j));
    case Json::value_t::number_float: return format_float(j.get<double>());
    case Json::value_t::string: return j.get<std::string>();
    case Json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + repr_json(j[i]);
      return out + "]";
    }
    case Json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, value] : j.items()) {
        out += (first ? "" : ", ") + repr_string(key) + ": " + repr_json(value);
        first = false;
      }
      return out + "}";
    }
    default: fail("cannot print a JSON value of type ", j.type_name());
  }
}

std::string repr_json(const Json& j) { return j.is_string() ? repr_string(j.get<std::string>()) : str_json(j); }

bool json_equals(const Json& a, const Json& b) {
  if (is_numeric(a) && is_numeric(b)) {
    if (is_integral(a) && is_integral(b)) return json_integer(a) == json_integer(b);
    return json_number(a) == json_number(b);
  }
  if (a.type() != b.type()) {
    return false;
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!json_equals(a[i], b[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [key, value] : a.items()) {
      const auto it = b.find(key);
      if (it == b.end() || !json_equals(value, *it)) return false;
    }
    return true;
  }
  return a == b;
}

int json_compare(const Json& a, const Json& b) {
  if (is_numeric(a) && is_numeric(b)) {
    if (is_integral(a) && is_integral(b)) {
      const int64_t x = json_integer(a), y = json_integer(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    const double x = json_number(a), y = json_number(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    // Byte order of UTF-8 is code point order, which is Python's.
    const int c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_array() && b.is_array()) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (!json_equals(a[i], b[i])) return json_compare(a[i], b[i]);
    }
    return a.size() < b.size() ? -1 : a.size() > b.size() ? 1 : 0;
  }
  fail("'<' not supported between instances of '", json_type_name(a), "' and '",
       json_type_name(b), "'");
}

}  // namespace

Value::Value(Json data) : storage_(std::make_shared<const Json>(std::move(data))) {}
Value::Value(std::shared_ptr<const Json> data) : storage_(std::move(data)) {}
Value::Value(std::shared_ptr<Namespace> ns) : storage_(std::move(ns)) {}
Value::Value(std::shared_ptr<const LoopState> loop) : storage_(std::move(loop)) {}
Value::Value(std::shared_ptr<const Callable> callable) : storage_(std::move(callable)) {}

Value Value::undefined(std::string what) {
  Value v;
  v.storage_ = std::move(what);
  return v;
}

const Json& Value::json() const {
  DSV3_ASSERT(is_data(), "a ", type_name(*this), " value is not data");
  return *std::get<std::shared_ptr<const Json>>(storage_);
}

int64_t Value::integer() const { return json_integer(json()); }
double Value::number() const { return json_number(json()); }

bool Value::same_object(const Value& other) const {
  if (storage_.index() != other.storage_.index()) return false;
  return std::visit(
      [&](const auto& mine) {
        using T = std::decay_t<decltype(mine)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return false;
        } else {
          return mine.get() == std::get<T>(other.storage_).get();
        }
      },
      storage_);
}

Value Value::element(const Json& child) const {
  return Value(std::shared_ptr<const Json>(std::get<std::shared_ptr<const Json>>(storage_), &child));
}

std::string undefined_error(const Value& v) {
  return v.undefined_what().empty() ? "a value is undefined" : v.undefined_what() + " is undefined";
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined: return "Undefined";
    case Value::Kind::data: return json_type_name(v.json());
    case Value::Kind::ns: return "Namespace";
    case Value::Kind::loop: return "LoopContext";
    case Value::Kind::callable: return "function";
  }
  return "object";
}

bool truthy(const Value& v) {
  if (!v.is_data()) return !v.is_undefined();
  const Json& j = v.json();
  switch (j.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return j.get<bool>();
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return json_integer(j) != 0;
    case Json::value_t::number_float: return j.get<double>() != 0.0;
    case Json::value_t::string: return !j.get_ref<const std::string&>().empty();
    default: return !j.empty();
  }
}

std::string to_str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined: return "";
    case Value::Kind::data: return str_json(v.json());
    case Value::Kind::ns: {
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& [name, value] : v.ns().attributes) {
        out += (first ? "" : ", ") + repr_string(name) + ": " + repr(value);
        first = false;
      }
      return out + "}>";
    }
    case Value::Kind::loop: {
      const LoopState& loop = v.loop();
      return str_cat("<LoopContext ", loop.index0 + 1, "/", loop.items->size(), ">");
    }
    case Value::Kind::callable: return "<function " + v.callable().name + ">";
  }
  return "";
}

std::string repr(const Value& v) {
  if (v.is_undefined()) return "Undefined";
  return v.is_data() ? repr_json(v.json()) : to_str(v);
}

std::string format_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0.0) return std::signbit(x) ? "-0.0" : "0.0";
  // to_chars without a precision gives the shortest round-trip digits: "d.ddde+XX".
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, x, std::chars_format::scientific);
  const std::string text(buffer, result.ptr);
  const size_t e = text.find('e');
  const bool negative = text[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i) {
    if (text[i] != '.') digits += text[i];
  }
  const int exponent = std::stoi(text.substr(e + 1));
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_text[16];
    std::snprintf(exp_text, sizeof exp_text, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp_text;
  }
  const int point = exponent + 1;  // digits before the decimal point
  if (point <= 0) return out + "0." + std::string(size_t(-point), '0') + digits;
  if (size_t(point) >= digits.size()) return out + digits + std::string(point - digits.size(), '0') + ".0";
  return out + digits.substr(0, point) + "." + digits.substr(point);
}

bool equals(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_data() && b.is_data()) return json_equals(a.json(), b.json());
  return a.same_object(b);
}

int compare(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) {
    fail(undefined_error(a.is_undefined() ? a : b));
  }
  if (!a.is_data() || !b.is_data()) {
    fail("'<' not supported between instances of '", type_name(a), "' and '", type_name(b), "'");
  }
  return json_compare(a.json(), b.json());
}

bool contains(const Value& container, const Value& item) {
  if (container.is_undefined()) return false;
  if (container.is_string()) {
    if (!item.is_string()) {
      fail("'in <string>' requires string as left operand, not ", type_name(item));
    }
    return container.string().find(item.string()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const Json& element : container.json()) {
      if (equals(container.element(element), item)) return true;
    }
    return false;
  }
  if (container.is_dict()) return item.is_string() && container.json().contains(item.string());
  fail("argument of type '", type_name(container), "' is not iterable");
}

int64_t length(const Value& v) {
  if (v.is_undefined()) return 0;
  if (v.is_string()) return int64_t(count_code_points(v.string()));
  if (v.is_list() || v.is_dict()) return int64_t(v.json().size());
  if (v.kind() == Value::Kind::ns) return int64_t(v.ns().attributes.size());
  fail("object of type '", type_name(v), "' has no len()");
}

std::vector<Value> iterate(const Value& v) {
  std::vector<Value> items;
  if (v.is_undefined()) return items;
  if (v.is_list()) {
    for (const Json& child : v.json()) items.push_back(v.element(child));
  } else if (v.is_dict()) {
    for (const auto& [key, value] : v.json().items()) items.emplace_back(Json(key));
  } else if (v.is_string()) {
    for (std::string& cp : code_points(v.string())) items.emplace_back(Json(std::move(cp)));
  } else {
    fail("'", type_name(v), "' object is not iterable");
  }
  return items;
}

const Json& as_data(const Value& v) {
  if (v.is_undefined()) fail(undefined_error(v));
  if (!v.is_data()) fail("a ", type_name(v), " cannot be stored in a list or dict");
  return v.json();
}

Value make_list(const std::vector<Value>& items) {
  Json list = Json::array();
  for (const Value& item : items) list.push_back(as_data(item));
  return Value(std::move(list));
}

}  // namespace dsv3::jinja
