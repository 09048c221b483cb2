#include "dsv3/tokenizer/jinja_functions.h"

#include <algorithm>
#include <memory>

#include "dsv3/tokenizer/jinja_text.h"
#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

// jinja2's sandbox refuses larger ranges.
constexpr int64_t kMaxRange = 100000;

constexpr std::string_view kGlobals[] = {"namespace", "raise_exception", "range"};
constexpr std::string_view kStringMethods[] = {"split",    "rsplit",     "strip", "lstrip",
                                               "rstrip",   "startswith", "endswith", "lower",
                                               "upper",    "capitalize", "replace", "find",
                                               "join"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get"};

template <size_t N>
bool listed(const std::string_view (&names)[N], const std::string& name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

Value list_of_strings(const std::vector<std::string>& parts) {
  Json list = Json::array();
  for (const std::string& part : parts) list.push_back(part);
  return list;
}

Value call_namespace(const CallArgs& args) {
  auto ns = std::make_shared<Namespace>();
  const auto set = [&](const std::string& name, const Value& value) {
    const auto it = std::find_if(ns->attributes.begin(), ns->attributes.end(),
                                 [&](const auto& a) { return a.first == name; });
    if (it != ns->attributes.end()) {
      it->second = value;
    } else {
      ns->attributes.emplace_back(name, value);
    }
  };
  if (args.positional.size() > 1) fail("namespace() takes at most one positional argument");
  if (!args.positional.empty()) {
    const Value& initial = args.positional[0];
    if (!initial.is_dict()) fail("namespace() takes a dict as its positional argument, not ", type_name(initial));
    for (const auto& [key, value] : initial.json().items()) set(key, initial.element(value));
  }
  for (const auto& [name, value] : args.keyword) set(name, value);
  return Value(std::move(ns));
}

Value call_range(const CallArgs& args) {
  const BoundArgs bound("range", args, {"start", "stop", "step"});
  int64_t start = 0, stop, step = bound.integer(2, 1);
  if (bound.get(1)) {
    start = bound.integer(0, 0);
    stop = bound.integer(1, 0);
  } else {
    stop = bound.integer(0, 0);
  }
  if (step == 0) fail("range() arg 3 must not be zero");
  Json items = Json::array();
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (int64_t(items.size()) >= kMaxRange) fail("range() is too big: at most ", kMaxRange, " items");
    items.push_back(i);
  }
  return items;
}

// str.startswith / str.endswith: the affix may be a string or a tuple of strings.
bool has_affix(const std::string& s, const Value& affix, bool at_start, const char* method) {
  const auto matches = [&](const Value& a) {
    if (!a.is_string()) fail(method, "() takes a string or a tuple of strings, not ", type_name(a));
    const std::string& t = a.string();
    if (t.size() > s.size()) return false;
    return at_start ? s.compare(0, t.size(), t) == 0 : s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  if (!affix.is_list()) return matches(affix);
  for (const Value& a : iterate(affix)) {
    if (matches(a)) return true;
  }
  return false;
}

Value call_string_method(const std::string& name, const std::string& s, const CallArgs& args) {
  if (name == "split" || name == "rsplit") {
    const BoundArgs bound(name, args, {"sep", "maxsplit"});
    const auto parts = name == "split" ? split(s, bound.optional_string(0), bound.integer(1, -1))
                                       : rsplit(s, bound.optional_string(0), bound.integer(1, -1));
    return list_of_strings(parts);
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const BoundArgs bound(name, args, {"chars"});
    return Json(strip(s, bound.optional_string(0), name != "rstrip", name != "lstrip"));
  }
  if (name == "startswith" || name == "endswith") {
    const BoundArgs bound(name, args, {"prefix"});
    return Json(has_affix(s, bound.required(0), name == "startswith", name.c_str()));
  }
  if (name == "lower" || name == "upper" || name == "capitalize") {
    BoundArgs(name, args, {});
    return Json(name == "lower" ? to_lower(s) : name == "upper" ? to_upper(s) : capitalize(s));
  }
  if (name == "replace") {
    const BoundArgs bound(name, args, {"old", "new", "count"});
    return Json(replace(s, bound.string(0), bound.string(1), bound.integer(2, -1)));
  }
  if (name == "find") {
    const BoundArgs bound(name, args, {"sub"});
    const size_t at = s.find(bound.string(0));
    return Json(at == std::string::npos ? int64_t(-1) : int64_t(count_code_points(s.substr(0, at))));
  }
  DSV3_ASSERT(name == "join", "unhandled string method ", name);
  const BoundArgs bound(name, args, {"iterable"});
  std::string out;
  size_t index = 0;
  for (const Value& item : iterate(bound.required(0))) {
    if (!item.is_string()) {
      fail("sequence item ", index, ": expected str instance, ", type_name(item), " found");
    }
    out += (index++ ? s : "") + item.string();
  }
  return Json(std::move(out));
}

Value call_dict_method(const std::string& name, const Value& self, const CallArgs& args) {
  if (name == "get") {
    const BoundArgs bound(name, args, {"key", "default"});
    const Value& key = bound.required(0);
    if (key.is_string()) {
      const auto it = self.json().find(key.string());
      if (it != self.json().end()) return self.element(*it);
    }
    return bound.get(1) ? *bound.get(1) : Value(Json(nullptr));
  }
  BoundArgs(name, args, {});
  Json out = Json::array();
  for (const auto& [key, value] : self.json().items()) {
    if (name == "items") {
      out.push_back(Json::array({key, value}));
    } else if (name == "keys") {
      out.push_back(key);
    } else {
      out.push_back(value);
    }
  }
  return out;
}

Value call_loop_cycle(const LoopState& loop, const CallArgs& args) {
  if (!args.keyword.empty()) fail("loop.cycle() takes no keyword arguments");
  if (args.positional.empty()) fail("loop.cycle() needs at least one argument");
  return args.positional[size_t(loop.index0) % args.positional.size()];
}

}  // namespace

Value global_function(const std::string& name) {
  if (!listed(kGlobals, name)) return Value::undefined("'" + name + "'");
  return Value(std::make_shared<const Callable>(Callable{name, Value()}));
}

bool has_method(const Value& self, const std::string& name) {
  if (self.is_string()) return listed(kStringMethods, name);
  if (self.is_dict()) return listed(kDictMethods, name);
  return self.kind() == Value::Kind::loop && name == "cycle";
}

Value call_function(const Callable& function, const CallArgs& args) {
  const Value& self = function.self;
  const std::string& name = function.name;
  if (self.is_string()) return call_string_method(name, self.string(), args);
  if (self.is_dict()) return call_dict_method(name, self, args);
  if (self.kind() == Value::Kind::loop) return call_loop_cycle(self.loop(), args);
  if (name == "namespace") return call_namespace(args);
  if (name == "range") return call_range(args);
  DSV3_ASSERT(name == "raise_exception", "unknown function ", name);
  fail("raise_exception: ", to_str(BoundArgs(name, args, {"message"}).required(0)));
}

}  // namespace dsv3::jinja
