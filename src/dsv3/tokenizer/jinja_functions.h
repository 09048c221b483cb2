// Functions a template can call: the globals Hugging Face provides (namespace, raise_exception,
// and jinja2's range) and Python methods of strings (split, rsplit, strip, lstrip, rstrip,
// startswith, endswith, lower, upper, capitalize, replace, find, join), of dicts (items, keys,
// values, get) and of `loop` (cycle).
#pragma once

#include <string>

#include "dsv3/tokenizer/jinja_args.h"
#include "dsv3/tokenizer/jinja_value.h"

namespace dsv3::jinja {

// The global function `name` as a callable value, or undefined when there is none.
Value global_function(const std::string& name);

// Whether `self.name` is a method this interpreter implements.
bool has_method(const Value& self, const std::string& name);

// Calls a global function or bound method. raise_exception(msg) throws dsv3::Error with msg.
Value call_function(const Callable& function, const CallArgs& args);

}  // namespace dsv3::jinja
