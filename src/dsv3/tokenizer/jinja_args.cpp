#include "dsv3/tokenizer/jinja_args.h"

#include <algorithm>

#include "dsv3/util/error.h"

namespace dsv3::jinja {

BoundArgs::BoundArgs(std::string_view function, const CallArgs& args,
                     std::vector<std::string_view> params)
    : function_(function), params_(std::move(params)), slots_(params_.size(), nullptr) {
  if (args.positional.size() > params_.size()) {
    fail(function_, "() takes at most ", params_.size(), " arguments (", args.positional.size(),
         " given)");
  }
  for (size_t i = 0; i < args.positional.size(); ++i) slots_[i] = &args.positional[i];
  for (const auto& [name, value] : args.keyword) {
    const auto it = std::find(params_.begin(), params_.end(), name);
    if (it == params_.end()) fail(function_, "() got an unexpected keyword argument '", name, "'");
    const size_t i = size_t(it - params_.begin());
    if (slots_[i]) fail(function_, "() got multiple values for argument '", name, "'");
    slots_[i] = &value;
  }
}

const Value& BoundArgs::required(size_t i) const {
  if (!slots_[i]) fail(function_, "() missing required argument '", params_[i], "'");
  return *slots_[i];
}

void BoundArgs::wrong_type(size_t i, const char* expected) const {
  fail("argument '", params_[i], "' of ", function_, "() must be ", expected, ", not ",
       type_name(*slots_[i]));
}

std::string BoundArgs::string(size_t i) const {
  const Value& v = required(i);
  if (!v.is_string()) wrong_type(i, "a string");
  return v.string();
}

std::optional<std::string> BoundArgs::optional_string(size_t i) const {
  if (!slots_[i] || slots_[i]->is_none()) return std::nullopt;
  if (!slots_[i]->is_string()) wrong_type(i, "a string or none");
  return slots_[i]->string();
}

int64_t BoundArgs::integer(size_t i, int64_t fallback) const {
  if (!slots_[i] || slots_[i]->is_none()) return fallback;
  if (!slots_[i]->is_integer() && !slots_[i]->is_bool()) wrong_type(i, "an integer");
  return slots_[i]->integer();
}

bool BoundArgs::boolean(size_t i, bool fallback) const {
  return slots_[i] ? truthy(*slots_[i]) : fallback;
}

}  // namespace dsv3::jinja
