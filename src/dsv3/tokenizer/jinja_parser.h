// Template source to syntax tree, with jinja2's grammar and operator precedence for the subset chat
// templates use. Tags, filters and tests outside that subset (macro, include, raw, selectattr, ...)
// are rejected here, before anything renders, with an error naming them.
#pragma once

#include <string_view>

#include "dsv3/tokenizer/jinja_ast.h"

namespace dsv3::jinja {

// Throws dsv3::Error "chat template line N: ..." for syntax errors and unsupported constructs.
Body parse(std::string_view source);

}  // namespace dsv3::jinja
