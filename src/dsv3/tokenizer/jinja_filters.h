// The filters (`value | name(args)`) and tests (`value is name(args)`) of jinja2 that chat
// templates use, with jinja2's semantics; tojson is Hugging Face's (see jinja_tojson.h).
//
// Filters: abs, capitalize, count, d, default, first, float, int, items, join, last, length, list,
// lower, replace, reverse, safe, string, tojson, trim, upper.
// Tests: boolean, callable, defined, divisibleby, eq, equalto, even, false, float, ge, gt,
// greaterthan, in, integer, iterable, le, lessthan, lower, lt, mapping, ne, none, number, odd,
// sequence, string, true, undefined, upper.
#pragma once

#include <string>
#include <string_view>

#include "dsv3/tokenizer/jinja_args.h"
#include "dsv3/tokenizer/jinja_value.h"

namespace dsv3::jinja {

bool is_filter(std::string_view name);
bool is_test(std::string_view name);

// Throw dsv3::Error for arguments of the wrong kind and for inputs the filter cannot take.
Value apply_filter(const std::string& name, const Value& input, const CallArgs& args);
bool apply_test(const std::string& name, const Value& input, const CallArgs& args);

}  // namespace dsv3::jinja
