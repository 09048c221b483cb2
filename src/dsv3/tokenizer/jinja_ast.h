// The syntax tree of a parsed template: statements (text, {{ output }}, if, for, set, ...) holding
// expressions. Every node records its template line for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "dsv3/tokenizer/jinja_value.h"

namespace dsv3::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// The arguments of a call, filter or test: f(a, b, key=c).
struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

// ---- expressions ----
struct Literal {
  Value value;
};
struct Name {
  std::string name;
};
struct ListLiteral {  // [a, b] and tuples (a, b), which behave as lists here
  std::vector<ExprPtr> items;
};
struct DictLiteral {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};
struct Attribute {  // a.b
  ExprPtr object;
  std::string name;
};
struct Subscript {  // a[b]
  ExprPtr object;
  ExprPtr index;
};
struct Slice {  // a[start:stop:step], each part optional
  ExprPtr object, start, stop, step;
};
enum class UnaryOp { logical_not, negate, plus };
struct Unary {
  UnaryOp op;
  ExprPtr operand;
};
enum class BinaryOp { add, subtract, multiply, divide, floor_divide, modulo, power, concat, logical_and, logical_or };
struct Binary {
  BinaryOp op;
  ExprPtr left, right;
};
enum class CompareOp { eq, ne, lt, le, gt, ge, in, not_in };
struct Compare {  // a < b <= c: each comparison with its right operand
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};
struct Conditional {  // then if condition else otherwise (otherwise may be absent: undefined)
  ExprPtr condition, then, otherwise;
};
struct Call {
  ExprPtr callee;
  Arguments args;
};
struct FilterCall {  // value | name(args)
  ExprPtr value;
  std::string name;
  Arguments args;
};
struct TestCall {  // value is [not] name(args)
  ExprPtr value;
  std::string name;
  Arguments args;
  bool negated = false;
};

struct Expr {
  std::variant<Literal, Name, ListLiteral, DictLiteral, Attribute, Subscript, Slice, Unary, Binary,
               Compare, Conditional, Call, FilterCall, TestCall>
      node;
  int line = 0;
};

// ---- statements ----
struct Text {
  std::string text;
};
struct Output {  // {{ value }}
  ExprPtr value;
};
struct If {  // if / elif branches in order, then else
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body otherwise;
};
struct For {  // for targets in iterable [if condition] ... [else ...]
  std::vector<std::string> targets;
  ExprPtr iterable;
  ExprPtr condition;
  Body body;
  Body otherwise;
};
struct Set {  // set a = v, set a, b = v, or set ns.attribute = v
  std::vector<std::string> targets;
  std::string attribute;  // non-empty: assign targets[0].attribute of a namespace
  ExprPtr value;
};
struct SetBlock {  // set target %}...{% endset: the rendered body as a string
  std::string target;
  Body body;
};
struct Break {};
struct Continue {};
struct Scoped {  // {% generation %}: Hugging Face renders its body in a scope of its own
  Body body;
};

struct Stmt {
  std::variant<Text, Output, If, For, Set, SetBlock, Break, Continue, Scoped> node;
  int line = 0;
};

}  // namespace dsv3::jinja
