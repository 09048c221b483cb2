// Arguments of a call, filter or test, and their binding to parameter names the way Python binds
// them (positional first, then by keyword), so `replace('a', 'b', count=1)` and `tojson(indent=2)`
// work as in jinja2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsv3/tokenizer/jinja_value.h"

namespace dsv3::jinja {

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class BoundArgs {
 public:
  // Throws dsv3::Error naming `function` for surplus, unknown or repeated arguments.
  BoundArgs(std::string_view function, const CallArgs& args, std::vector<std::string_view> params);

  // The argument of parameter i, or null when it was not given.
  const Value* get(size_t i) const { return slots_[i]; }
  const Value& required(size_t i) const;
  std::string string(size_t i) const;
  // Absent or none gives nullopt.
  std::optional<std::string> optional_string(size_t i) const;
  int64_t integer(size_t i, int64_t fallback) const;
  bool boolean(size_t i, bool fallback) const;

 private:
  [[noreturn]] void wrong_type(size_t i, const char* expected) const;

  std::string function_;
  std::vector<std::string_view> params_;
  std::vector<const Value*> slots_;
};

}  // namespace dsv3::jinja
