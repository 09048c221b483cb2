// Rendering a parsed template against its variables, with jinja2's scoping: `set` assigns in the
// innermost scope; each iteration of a for loop opens a fresh scope (so assignments in a loop body
// never leak out, and namespaces are how templates carry state across iterations); if does not
// open one. Names resolve through the scopes, then the context, then the global functions.
#pragma once

#include <string>

#include "dsv3/tokenizer/jinja_ast.h"
#include "dsv3/tokenizer/jinja_value.h"

namespace dsv3::jinja {

// `context` is a JSON object of the template's variables. Throws dsv3::Error
// "chat template line N: ..." for run-time errors and raise_exception().
std::string render(const Body& program, Json context);

}  // namespace dsv3::jinja
