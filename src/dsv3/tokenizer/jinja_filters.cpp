#include "dsv3/tokenizer/jinja_filters.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "dsv3/tokenizer/jinja_text.h"
#include "dsv3/tokenizer/jinja_tojson.h"
#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

using Filter = Value (*)(const Value& input, const CallArgs& args);
using Test = bool (*)(const Value& input, const CallArgs& args);

void no_arguments(std::string_view name, const CallArgs& args) { BoundArgs(name, args, {}); }

// Python's float(str): surrounding whitespace allowed, the whole rest must be the number.
std::optional<double> parse_float(const std::string& text) {
  const std::string s = strip(text, std::nullopt, true, true);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double x = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return x;
}

Value filter_abs(const Value& v, const CallArgs& args) {
  no_arguments("abs", args);
  if (v.is_integer() || v.is_bool()) return Json(std::abs(v.integer()));
  if (v.is_float()) return Json(std::fabs(v.number()));
  fail("bad operand type for abs(): '", type_name(v), "'");
}

Value filter_capitalize(const Value& v, const CallArgs& args) {
  no_arguments("capitalize", args);
  return Json(capitalize(to_str(v)));
}

Value filter_length(const Value& v, const CallArgs& args) {
  no_arguments("length", args);
  return Json(length(v));
}

Value filter_default(const Value& v, const CallArgs& args) {
  const BoundArgs bound("default", args, {"default_value", "boolean"});
  const bool use_default = v.is_undefined() || (bound.boolean(1, false) && !truthy(v));
  if (!use_default) return v;
  return bound.get(0) ? *bound.get(0) : Value(Json(""));
}

Value filter_first(const Value& v, const CallArgs& args) {
  no_arguments("first", args);
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("the first item of an empty sequence");
  return items.front();
}

Value filter_last(const Value& v, const CallArgs& args) {
  no_arguments("last", args);
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("the last item of an empty sequence");
  return items.back();
}

Value filter_float(const Value& v, const CallArgs& args) {
  const BoundArgs bound("float", args, {"default"});
  if (v.is_number()) return Json(v.number());
  if (v.is_string()) {
    if (const auto x = parse_float(v.string())) return Json(*x);
  }
  return bound.get(0) ? *bound.get(0) : Value(Json(0.0));
}

// jinja2's int filter: int(value, base) for strings, else int(value), and failing that
// int(float(value)), so "42.23"|int is 42.
Value filter_int(const Value& v, const CallArgs& args) {
  const BoundArgs bound("int", args, {"default", "base"});
  if (v.is_integer() || v.is_bool()) return Json(v.integer());
  if (v.is_float() && std::isfinite(v.number())) return Json(int64_t(std::trunc(v.number())));
  if (v.is_string()) {
    std::string digits;
    for (char c : strip(v.string(), std::nullopt, true, true)) {
      if (c != '_') digits += c;
    }
    char* end = nullptr;
    errno = 0;
    const int64_t n = std::strtoll(digits.c_str(), &end, int(bound.integer(1, 10)));
    if (!digits.empty() && end == digits.c_str() + digits.size() && errno == 0) return Json(n);
    if (const auto x = parse_float(v.string()); x && std::isfinite(*x)) return Json(int64_t(std::trunc(*x)));
  }
  return bound.get(0) ? *bound.get(0) : Value(Json(0));
}

Value filter_items(const Value& v, const CallArgs& args) {
  no_arguments("items", args);
  Json pairs = Json::array();
  if (v.is_undefined()) return pairs;
  if (!v.is_dict()) fail("items filter: can only get item pairs from a mapping, not ", type_name(v));
  for (const auto& [key, value] : v.json().items()) pairs.push_back(Json::array({key, value}));
  return pairs;
}

Value filter_join(const Value& v, const CallArgs& args) {
  const BoundArgs bound("join", args, {"d", "attribute"});
  if (bound.get(1)) fail("join(attribute=...) is not supported");
  const std::string separator = bound.get(0) ? to_str(*bound.get(0)) : "";
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += separator;
    out += to_str(item);
    first = false;
  }
  return Json(std::move(out));
}

Value filter_list(const Value& v, const CallArgs& args) {
  no_arguments("list", args);
  return make_list(iterate(v));
}

Value filter_lower(const Value& v, const CallArgs& args) {
  no_arguments("lower", args);
  return Json(to_lower(to_str(v)));
}

Value filter_upper(const Value& v, const CallArgs& args) {
  no_arguments("upper", args);
  return Json(to_upper(to_str(v)));
}

Value filter_replace(const Value& v, const CallArgs& args) {
  const BoundArgs bound("replace", args, {"old", "new", "count"});
  return Json(replace(to_str(v), to_str(bound.required(0)), to_str(bound.required(1)),
                      bound.integer(2, -1)));
}

Value filter_reverse(const Value& v, const CallArgs& args) {
  no_arguments("reverse", args);
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (!v.is_string()) return make_list(items);
  std::string out;
  for (const Value& cp : items) out += cp.string();
  return Json(std::move(out));
}

Value filter_safe(const Value& v, const CallArgs& args) {
  no_arguments("safe", args);  // nothing is autoescaped in a chat template
  return v;
}

Value filter_string(const Value& v, const CallArgs& args) {
  no_arguments("string", args);
  return Json(to_str(v));
}

Value filter_tojson(const Value& v, const CallArgs& args) {
  const BoundArgs bound("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle style;
  style.ensure_ascii = bound.boolean(0, false);
  if (const Value* indent = bound.get(1); indent && !indent->is_none()) {
    if (indent->is_string()) {
      style.indent = indent->string();
    } else {
      style.indent = std::string(size_t(std::max<int64_t>(0, bound.integer(1, 0))), ' ');
    }
    style.item_separator = ",";
  }
  if (const Value* separators = bound.get(2); separators && !separators->is_none()) {
    if (!separators->is_list() || separators->json().size() != 2 || !separators->json()[0].is_string() ||
        !separators->json()[1].is_string()) {
      fail("tojson: separators must be a pair of strings");
    }
    style.item_separator = separators->json()[0].get<std::string>();
    style.key_separator = separators->json()[1].get<std::string>();
  }
  style.sort_keys = bound.boolean(3, false);
  return Json(to_json_text(v, style));
}

Value filter_trim(const Value& v, const CallArgs& args) {
  const BoundArgs bound("trim", args, {"chars"});
  return Json(strip(to_str(v), bound.optional_string(0), true, true));
}

const std::unordered_map<std::string_view, Filter>& filters() {
  static const std::unordered_map<std::string_view, Filter> table = {
      {"abs", filter_abs},         {"capitalize", filter_capitalize}, {"count", filter_length},
      {"d", filter_default},       {"default", filter_default},       {"first", filter_first},
      {"float", filter_float},     {"int", filter_int},               {"items", filter_items},
      {"join", filter_join},       {"last", filter_last},             {"length", filter_length},
      {"list", filter_list},       {"lower", filter_lower},           {"replace", filter_replace},
      {"reverse", filter_reverse}, {"safe", filter_safe},             {"string", filter_string},
      {"tojson", filter_tojson},   {"trim", filter_trim},             {"upper", filter_upper},
  };
  return table;
}

// ---- tests ----

template <bool (*Predicate)(const Value&)>
bool simple_test(const Value& v, const CallArgs& args) {
  no_arguments("test", args);
  return Predicate(v);
}

bool is_defined(const Value& v) { return !v.is_undefined(); }
bool is_undefined_value(const Value& v) { return v.is_undefined(); }
bool is_none_value(const Value& v) { return v.is_none(); }
bool is_string_value(const Value& v) { return v.is_string(); }
bool is_number_value(const Value& v) { return v.is_number(); }
bool is_integer_value(const Value& v) { return v.is_integer(); }
bool is_float_value(const Value& v) { return v.is_float(); }
bool is_boolean_value(const Value& v) { return v.is_bool(); }
bool is_true_value(const Value& v) { return v.is_bool() && v.json().get<bool>(); }
bool is_false_value(const Value& v) { return v.is_bool() && !v.json().get<bool>(); }
bool is_mapping_value(const Value& v) { return v.is_dict(); }
// jinja2's Undefined is iterable (it iterates as empty) and has __len__ and __getitem__.
bool is_iterable_value(const Value& v) { return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict(); }
bool is_callable_value(const Value& v) { return v.kind() == Value::Kind::callable; }
bool is_lower_value(const Value& v) {
  const std::string s = to_str(v);
  return to_lower(s) == s && to_upper(s) != s;
}
bool is_upper_value(const Value& v) {
  const std::string s = to_str(v);
  return to_upper(s) == s && to_lower(s) != s;
}

int64_t integer_input(const Value& v, const char* test) {
  if (!v.is_integer() && !v.is_bool()) fail("the '", test, "' test needs an integer, not ", type_name(v));
  return v.integer();
}

bool test_even(const Value& v, const CallArgs& args) {
  no_arguments("even", args);
  return integer_input(v, "even") % 2 == 0;
}

bool test_odd(const Value& v, const CallArgs& args) {
  no_arguments("odd", args);
  return integer_input(v, "odd") % 2 != 0;
}

bool test_divisibleby(const Value& v, const CallArgs& args) {
  const BoundArgs bound("divisibleby", args, {"num"});
  const int64_t divisor = bound.integer(0, 0);
  if (divisor == 0) fail("divisibleby: division by zero");
  return integer_input(v, "divisibleby") % divisor == 0;
}

template <int Sign, bool OrEqual>
bool compare_test(const Value& v, const CallArgs& args) {
  const BoundArgs bound("comparison test", args, {"other"});
  const int c = compare(v, bound.required(0));
  return c * Sign > 0 || (OrEqual && c == 0);
}

bool test_eq(const Value& v, const CallArgs& args) {
  return equals(v, BoundArgs("eq", args, {"other"}).required(0));
}

bool test_ne(const Value& v, const CallArgs& args) {
  return !equals(v, BoundArgs("ne", args, {"other"}).required(0));
}

bool test_in(const Value& v, const CallArgs& args) {
  return contains(BoundArgs("in", args, {"seq"}).required(0), v);
}

const std::unordered_map<std::string_view, Test>& tests() {
  static const std::unordered_map<std::string_view, Test> table = {
      {"defined", simple_test<is_defined>},
      {"undefined", simple_test<is_undefined_value>},
      {"none", simple_test<is_none_value>},
      {"string", simple_test<is_string_value>},
      {"number", simple_test<is_number_value>},
      {"integer", simple_test<is_integer_value>},
      {"float", simple_test<is_float_value>},
      {"boolean", simple_test<is_boolean_value>},
      {"true", simple_test<is_true_value>},
      {"false", simple_test<is_false_value>},
      {"mapping", simple_test<is_mapping_value>},
      {"iterable", simple_test<is_iterable_value>},
      {"sequence", simple_test<is_iterable_value>},
      {"callable", simple_test<is_callable_value>},
      {"lower", simple_test<is_lower_value>},
      {"upper", simple_test<is_upper_value>},
      {"even", test_even},
      {"odd", test_odd},
      {"divisibleby", test_divisibleby},
      {"eq", test_eq},
      {"equalto", test_eq},
      {"ne", test_ne},
      {"lt", compare_test<-1, false>},
      {"lessthan", compare_test<-1, false>},
      {"le", compare_test<-1, true>},
      {"gt", compare_test<1, false>},
      {"greaterthan", compare_test<1, false>},
      {"ge", compare_test<1, true>},
      {"in", test_in},
  };
  return table;
}

}  // namespace

bool is_filter(std::string_view name) { return filters().count(name) > 0; }
bool is_test(std::string_view name) { return tests().count(name) > 0; }

Value apply_filter(const std::string& name, const Value& input, const CallArgs& args) {
  const auto it = filters().find(name);
  DSV3_ASSERT(it != filters().end(), "unknown filter ", name);
  return it->second(input, args);
}

bool apply_test(const std::string& name, const Value& input, const CallArgs& args) {
  const auto it = tests().find(name);
  DSV3_ASSERT(it != tests().end(), "unknown test ", name);
  return it->second(input, args);
}

}  // namespace dsv3::jinja
