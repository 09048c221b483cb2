// The operators of template expressions with Python's semantics: + - * / // % ** on numbers
// (booleans count as 0 and 1, integers stay integers, / always gives a float), + and * on strings
// and lists, ~ (concatenation as strings), comparisons and `in`. `and`/`or` short-circuit in the
// renderer, so they are not here.
#pragma once

#include "dsv3/tokenizer/jinja_ast.h"
#include "dsv3/tokenizer/jinja_value.h"

namespace dsv3::jinja {

// Throws dsv3::Error for undefined operands (except with ~), mismatched types, division by zero and
// integer overflow.
Value binary_op(BinaryOp op, const Value& a, const Value& b);
Value unary_op(UnaryOp op, const Value& v);
bool compare_op(CompareOp op, const Value& a, const Value& b);

}  // namespace dsv3::jinja
