#include "dsv3/tokenizer/jinja_operators.h"

#include <cmath>

#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

const char* symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "+";
    case BinaryOp::subtract: return "-";
    case BinaryOp::multiply: return "*";
    case BinaryOp::divide: return "/";
    case BinaryOp::floor_divide: return "//";
    case BinaryOp::modulo: return "%";
    case BinaryOp::power: return "**";
    case BinaryOp::concat: return "~";
    case BinaryOp::logical_and: return "and";
    case BinaryOp::logical_or: return "or";
  }
  return "?";
}

[[noreturn]] void unsupported(BinaryOp op, const Value& a, const Value& b) {
  fail("unsupported operand types for ", symbol(op), ": '", type_name(a), "' and '", type_name(b), "'");
}

bool integral(const Value& v) { return v.is_integer() || v.is_bool(); }

template <typename Op>
int64_t checked(Op op, int64_t x, int64_t y) {
  int64_t result;
  if (op(x, y, &result)) fail("integer overflow");
  return result;
}
constexpr auto add_overflows = [](int64_t x, int64_t y, int64_t* r) { return __builtin_add_overflow(x, y, r); };
constexpr auto sub_overflows = [](int64_t x, int64_t y, int64_t* r) { return __builtin_sub_overflow(x, y, r); };
constexpr auto mul_overflows = [](int64_t x, int64_t y, int64_t* r) { return __builtin_mul_overflow(x, y, r); };

Value integer_op(BinaryOp op, int64_t x, int64_t y) {
  switch (op) {
    case BinaryOp::add: return Json(checked(add_overflows, x, y));
    case BinaryOp::subtract: return Json(checked(sub_overflows, x, y));
    case BinaryOp::multiply: return Json(checked(mul_overflows, x, y));
    case BinaryOp::divide:
      if (y == 0) fail("division by zero");
      return Json(double(x) / double(y));
    case BinaryOp::floor_divide:
    case BinaryOp::modulo: {
      if (y == 0) fail("integer division or modulo by zero");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {  // Python rounds the quotient towards -infinity
        --q;
        m += y;
      }
      return Json(op == BinaryOp::floor_divide ? q : m);
    }
    case BinaryOp::power: {
      if (y < 0) return Json(std::pow(double(x), double(y)));
      int64_t result = 1;
      for (int64_t i = 0; i < y; ++i) result = checked(mul_overflows, result, x);
      return Json(result);
    }
    default: break;
  }
  DSV3_ASSERT(false, "not an arithmetic operator");
  return Value();
}

Value float_op(BinaryOp op, double x, double y) {
  switch (op) {
    case BinaryOp::add: return Json(x + y);
    case BinaryOp::subtract: return Json(x - y);
    case BinaryOp::multiply: return Json(x * y);
    case BinaryOp::divide:
      if (y == 0) fail("float division by zero");
      return Json(x / y);
    case BinaryOp::floor_divide:
      if (y == 0) fail("float floor division by zero");
      return Json(std::floor(x / y));
    case BinaryOp::modulo: {
      if (y == 0) fail("float modulo by zero");
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return Json(m);
    }
    case BinaryOp::power: return Json(std::pow(x, y));
    default: break;
  }
  DSV3_ASSERT(false, "not an arithmetic operator");
  return Value();
}

// "ab" * 3 and [1] * 3.
Value repeat(const Value& sequence, int64_t times) {
  if (sequence.is_string()) {
    std::string out;
    for (int64_t i = 0; i < times; ++i) out += sequence.string();
    return Json(std::move(out));
  }
  Json out = Json::array();
  for (int64_t i = 0; i < times; ++i) {
    for (const Json& item : sequence.json()) out.push_back(item);
  }
  return out;
}

}  // namespace

Value binary_op(BinaryOp op, const Value& a, const Value& b) {
  if (op == BinaryOp::concat) return Json(to_str(a) + to_str(b));
  if (a.is_undefined() || b.is_undefined()) fail(undefined_error(a.is_undefined() ? a : b));
  if (a.is_number() && b.is_number()) {
    if (integral(a) && integral(b)) return integer_op(op, a.integer(), b.integer());
    return float_op(op, a.number(), b.number());
  }
  if (op == BinaryOp::add) {
    if (a.is_string() && b.is_string()) return Json(a.string() + b.string());
    if (a.is_list() && b.is_list()) {
      Json out = a.json();
      for (const Json& item : b.json()) out.push_back(item);
      return out;
    }
  }
  if (op == BinaryOp::multiply) {
    if ((a.is_string() || a.is_list()) && integral(b)) return repeat(a, b.integer());
    if ((b.is_string() || b.is_list()) && integral(a)) return repeat(b, a.integer());
  }
  if (op == BinaryOp::modulo && a.is_string()) fail("string formatting with % is not supported");
  unsupported(op, a, b);
}

Value unary_op(UnaryOp op, const Value& v) {
  if (op == UnaryOp::logical_not) return Json(!truthy(v));
  if (v.is_undefined()) fail(undefined_error(v));
  if (!v.is_number()) fail("bad operand type for unary ", op == UnaryOp::negate ? "-" : "+", ": '", type_name(v), "'");
  if (op == UnaryOp::plus) return integral(v) ? Json(v.integer()) : Json(v.number());
  if (integral(v)) {
    if (v.integer() == INT64_MIN) fail("integer overflow");
    return Json(-v.integer());
  }
  return Json(-v.number());
}

bool compare_op(CompareOp op, const Value& a, const Value& b) {
  switch (op) {
    case CompareOp::eq: return equals(a, b);
    case CompareOp::ne: return !equals(a, b);
    case CompareOp::lt: return compare(a, b) < 0;
    case CompareOp::le: return compare(a, b) <= 0;
    case CompareOp::gt: return compare(a, b) > 0;
    case CompareOp::ge: return compare(a, b) >= 0;
    case CompareOp::in: return contains(b, a);
    case CompareOp::not_in: return !contains(b, a);
  }
  return false;
}

}  // namespace dsv3::jinja
