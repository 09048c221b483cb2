#include "dsv3/tokenizer/jinja_eval.h"

#include <algorithm>
#include <memory>

#include "dsv3/tokenizer/jinja_filters.h"
#include "dsv3/tokenizer/jinja_functions.h"
#include "dsv3/tokenizer/jinja_operators.h"
#include "dsv3/tokenizer/jinja_text.h"
#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

// An error that already names its template line, so enclosing statements pass it on unchanged.
class LocatedError : public Error {
 public:
  using Error::Error;
};

// How a statement list ended: normally, or by {% break %} / {% continue %} of the enclosing loop.
enum class Flow { normal, break_loop, continue_loop };

// The expression as the template spells it, for messages: message['tool_calls'], ns.is_first.
std::string describe(const Expr& expr) {
  if (const auto* name = std::get_if<Name>(&expr.node)) return name->name;
  if (const auto* attribute = std::get_if<Attribute>(&expr.node)) {
    return describe(*attribute->object) + "." + attribute->name;
  }
  if (const auto* subscript = std::get_if<Subscript>(&expr.node)) {
    const auto* literal = std::get_if<Literal>(&subscript->index->node);
    return describe(*subscript->object) + "[" + (literal ? repr(literal->value) : "...") + "]";
  }
  if (const auto* literal = std::get_if<Literal>(&expr.node)) return repr(literal->value);
  return "the expression";
}

// Python's slice bounds for a sequence of `n` items.
std::vector<int64_t> slice_indices(int64_t n, const Value& start_v, const Value& stop_v, const Value& step_v) {
  const auto bound = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (!v.is_integer() && !v.is_bool()) fail("slice ", what, " must be an integer or none, not ", type_name(v));
    return v.integer();
  };
  const int64_t step = bound(step_v, "step").value_or(1);
  if (step == 0) fail("slice step cannot be zero");
  const auto adjust = [&](std::optional<int64_t> i, int64_t fallback) {
    if (!i) return fallback;
    int64_t x = *i;
    if (x < 0) {
      x += n;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= n) {
      x = step < 0 ? n - 1 : n;
    }
    return x;
  };
  const int64_t start = adjust(bound(start_v, "start"), step < 0 ? n - 1 : 0);
  const int64_t stop = adjust(bound(stop_v, "stop"), step < 0 ? -1 : n);
  std::vector<int64_t> indices;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) indices.push_back(i);
  return indices;
}

class Renderer {
 public:
  explicit Renderer(Json context) : context_(std::move(context)) { scopes_.emplace_back(); }

  std::string run(const Body& program) {
    exec(program);
    return std::move(out_);
  }

 private:
  using Scope = std::vector<std::pair<std::string, Value>>;

  // Opens a scope for the lifetime of the guard.
  class ScopeGuard {
   public:
    explicit ScopeGuard(Renderer& r) : r_(r) { r_.scopes_.emplace_back(); }
    ~ScopeGuard() { r_.scopes_.pop_back(); }
    ScopeGuard(const ScopeGuard&) = delete;
    ScopeGuard& operator=(const ScopeGuard&) = delete;

   private:
    Renderer& r_;
  };

  // ---- variables ----

  Value lookup(const std::string& name) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      for (const auto& [var, value] : *scope) {
        if (var == name) return value;
      }
    }
    const auto it = context_.json().find(name);
    if (it != context_.json().end()) return context_.element(*it);
    return global_function(name);
  }

  void assign(const std::string& name, Value value) {
    Scope& scope = scopes_.back();
    const auto it = std::find_if(scope.begin(), scope.end(), [&](const auto& v) { return v.first == name; });
    if (it != scope.end()) {
      it->second = std::move(value);
    } else {
      scope.emplace_back(name, std::move(value));
    }
  }

  // `set a, b = value` and `for a, b in ...`: unpacks a sequence into the names.
  void assign_targets(const std::vector<std::string>& targets, const Value& value) {
    if (targets.size() == 1) {
      assign(targets[0], value);
      return;
    }
    const std::vector<Value> items = iterate(value);
    if (items.size() != targets.size()) {
      fail(items.size() > targets.size() ? "too many" : "not enough", " values to unpack (expected ",
           targets.size(), ", got ", items.size(), ")");
    }
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
  }

  // ---- statements ----

  Flow exec(const Body& body) {
    for (const StmtPtr& stmt : body) {
      const Flow flow = exec(*stmt);
      if (flow != Flow::normal) return flow;
    }
    return Flow::normal;
  }

  Flow exec(const Stmt& stmt) {
    try {
      return std::visit([&](const auto& node) { return exec_node(node); }, stmt.node);
    } catch (const LocatedError&) {
      throw;
    } catch (const Error& e) {
      throw LocatedError(str_cat("chat template line ", stmt.line, ": ", e.what()));
    }
  }

  Flow exec_node(const Text& node) {
    out_ += node.text;
    return Flow::normal;
  }

  Flow exec_node(const Output& node) {
    out_ += to_str(eval(*node.value));
    return Flow::normal;
  }

  Flow exec_node(const If& node) {
    for (const auto& [condition, body] : node.branches) {
      if (truthy(eval(*condition))) return exec(body);
    }
    return exec(node.otherwise);
  }

  Flow exec_node(const For& node) {
    std::vector<Value> items = iterate(eval(*node.iterable));
    if (node.condition) {
      std::vector<Value> kept;
      for (Value& item : items) {
        const ScopeGuard scope(*this);
        assign_targets(node.targets, item);
        if (truthy(eval(*node.condition))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      const ScopeGuard scope(*this);
      return exec(node.otherwise);
    }
    const auto shared_items = std::make_shared<const std::vector<Value>>(std::move(items));
    for (size_t i = 0; i < shared_items->size(); ++i) {
      const ScopeGuard scope(*this);
      assign_targets(node.targets, (*shared_items)[i]);
      assign("loop", Value(std::make_shared<const LoopState>(LoopState{int64_t(i), shared_items})));
      if (exec(node.body) == Flow::break_loop) break;
    }
    return Flow::normal;
  }

  Flow exec_node(const Set& node) {
    Value value = eval(*node.value);
    if (node.attribute.empty()) {
      assign_targets(node.targets, value);
      return Flow::normal;
    }
    const Value target = lookup(node.targets[0]);
    if (target.kind() != Value::Kind::ns) {
      fail("cannot assign attribute '", node.attribute, "' of ", node.targets[0],
           ", which is not a namespace but ", target.is_undefined() ? "undefined" : type_name(target));
    }
    auto& attributes = target.ns().attributes;
    const auto it = std::find_if(attributes.begin(), attributes.end(),
                                 [&](const auto& a) { return a.first == node.attribute; });
    if (it != attributes.end()) {
      it->second = std::move(value);
    } else {
      attributes.emplace_back(node.attribute, std::move(value));
    }
    return Flow::normal;
  }

  Flow exec_node(const SetBlock& node) {
    std::string captured;
    std::swap(captured, out_);
    {
      const ScopeGuard scope(*this);
      exec(node.body);
    }
    std::swap(captured, out_);
    assign(node.target, Json(std::move(captured)));
    return Flow::normal;
  }

  Flow exec_node(const Break&) { return Flow::break_loop; }
  Flow exec_node(const Continue&) { return Flow::continue_loop; }

  Flow exec_node(const Scoped& node) {
    const ScopeGuard scope(*this);
    return exec(node.body);
  }

  // ---- expressions ----

  Value eval(const Expr& expr) {
    return std::visit([&](const auto& node) { return eval_node(node, expr); }, expr.node);
  }

  CallArgs eval_arguments(const Arguments& args) {
    CallArgs values;
    for (const ExprPtr& arg : args.positional) values.positional.push_back(eval(*arg));
    for (const auto& [name, arg] : args.keyword) values.keyword.emplace_back(name, eval(*arg));
    return values;
  }

  Value eval_node(const Literal& node, const Expr&) { return node.value; }

  Value eval_node(const Name& node, const Expr&) {
    Value value = lookup(node.name);
    if (value.is_undefined()) return Value::undefined(node.name);
    return value;
  }

  Value eval_node(const ListLiteral& node, const Expr&) {
    std::vector<Value> items;
    for (const ExprPtr& item : node.items) items.push_back(eval(*item));
    return make_list(items);
  }

  Value eval_node(const DictLiteral& node, const Expr&) {
    Json dict = Json::object();
    for (const auto& [key_expr, value_expr] : node.items) {
      const Value key = eval(*key_expr);
      if (!key.is_string()) fail("dict keys must be strings here, not ", type_name(key));
      dict[key.string()] = as_data(eval(*value_expr));
    }
    return dict;
  }

  Value eval_node(const Attribute& node, const Expr& expr) {
    return attribute(eval(*node.object), node.name, describe(expr));
  }

  Value attribute(const Value& object, const std::string& name, const std::string& what) {
    switch (object.kind()) {
      case Value::Kind::undefined: fail(undefined_error(object));
      case Value::Kind::ns:
        for (const auto& [attr, value] : object.ns().attributes) {
          if (attr == name) return value;
        }
        return Value::undefined(what);
      case Value::Kind::loop: return loop_attribute(object, name, what);
      case Value::Kind::callable: return Value::undefined(what);
      case Value::Kind::data: break;
    }
    if (has_method(object, name)) return Value(std::make_shared<const Callable>(Callable{name, object}));
    if (object.is_dict()) {
      const auto it = object.json().find(name);
      if (it != object.json().end()) return object.element(*it);
    }
    return Value::undefined(what);
  }

  static Value loop_attribute(const Value& loop_value, const std::string& name, const std::string& what) {
    const LoopState& loop = loop_value.loop();
    const int64_t n = int64_t(loop.items->size());
    const int64_t i = loop.index0;
    if (name == "index") return Json(i + 1);
    if (name == "index0") return Json(i);
    if (name == "revindex") return Json(n - i);
    if (name == "revindex0") return Json(n - i - 1);
    if (name == "first") return Json(i == 0);
    if (name == "last") return Json(i == n - 1);
    if (name == "length") return Json(n);
    if (name == "depth") return Json(1);
    if (name == "depth0") return Json(0);
    if (name == "previtem") return i > 0 ? (*loop.items)[size_t(i - 1)] : Value::undefined(what);
    if (name == "nextitem") return i + 1 < n ? (*loop.items)[size_t(i + 1)] : Value::undefined(what);
    if (name == "cycle") return Value(std::make_shared<const Callable>(Callable{name, loop_value}));
    return Value::undefined(what);
  }

  // jinja2's getitem: obj[key], falling back to the attribute of that name for string keys.
  Value eval_node(const Subscript& node, const Expr& expr) {
    const Value object = eval(*node.object);
    const Value index = eval(*node.index);
    const std::string what = describe(expr);
    if (object.is_undefined()) fail(undefined_error(object));
    if (index.is_string()) {
      if (object.is_dict()) {
        const auto it = object.json().find(index.string());
        if (it != object.json().end()) return object.element(*it);
      }
      return attribute(object, index.string(), what);
    }
    if (index.is_integer() || index.is_bool()) {
      int64_t i = index.integer();
      if (object.is_list()) {
        const int64_t n = int64_t(object.json().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined(what);
        return object.element(object.json()[size_t(i)]);
      }
      if (object.is_string()) {
        std::vector<std::string> cps = code_points(object.string());
        const int64_t n = int64_t(cps.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined(what);
        return Json(std::move(cps[size_t(i)]));
      }
    }
    return Value::undefined(what);
  }

  Value eval_node(const Slice& node, const Expr& expr) {
    const Value object = eval(*node.object);
    const auto part = [&](const ExprPtr& e) { return e ? eval(*e) : Value(Json(nullptr)); };
    const Value start = part(node.start), stop = part(node.stop), step = part(node.step);
    if (object.is_undefined()) fail(undefined_error(object));
    if (object.is_string()) {
      const std::vector<std::string> cps = code_points(object.string());
      std::string out;
      for (int64_t i : slice_indices(int64_t(cps.size()), start, stop, step)) out += cps[size_t(i)];
      return Json(std::move(out));
    }
    if (object.is_list()) {
      Json out = Json::array();
      for (int64_t i : slice_indices(int64_t(object.json().size()), start, stop, step)) {
        out.push_back(object.json()[size_t(i)]);
      }
      return out;
    }
    return Value::undefined(describe(expr));
  }

  Value eval_node(const Unary& node, const Expr&) { return unary_op(node.op, eval(*node.operand)); }

  Value eval_node(const Binary& node, const Expr&) {
    Value left = eval(*node.left);
    if (node.op == BinaryOp::logical_and) return truthy(left) ? eval(*node.right) : left;
    if (node.op == BinaryOp::logical_or) return truthy(left) ? left : eval(*node.right);
    return binary_op(node.op, left, eval(*node.right));
  }

  // a < b < c is a < b and b < c, evaluating b once.
  Value eval_node(const Compare& node, const Expr&) {
    Value left = eval(*node.first);
    for (const auto& [op, right_expr] : node.rest) {
      Value right = eval(*right_expr);
      if (!compare_op(op, left, right)) return Json(false);
      left = std::move(right);
    }
    return Json(true);
  }

  Value eval_node(const Conditional& node, const Expr& expr) {
    if (truthy(eval(*node.condition))) return eval(*node.then);
    if (node.otherwise) return eval(*node.otherwise);
    return Value::undefined("the missing else branch of " + describe(expr));
  }

  Value eval_node(const Call& node, const Expr&) {
    const Value callee = eval(*node.callee);
    if (callee.kind() == Value::Kind::callable) return call_function(callee.callable(), eval_arguments(node.args));
    if (callee.is_undefined()) fail(describe(*node.callee), " is not a supported function or method");
    fail("'", type_name(callee), "' object is not callable");
  }

  Value eval_node(const FilterCall& node, const Expr&) {
    const Value input = eval(*node.value);
    return apply_filter(node.name, input, eval_arguments(node.args));
  }

  Value eval_node(const TestCall& node, const Expr&) {
    const Value input = eval(*node.value);
    return Json(apply_test(node.name, input, eval_arguments(node.args)) != node.negated);
  }

  Value context_;
  std::vector<Scope> scopes_;  // scopes_[0] holds the template's top-level assignments
  std::string out_;
};

}  // namespace

std::string render(const Body& program, Json context) {
  DSV3_ASSERT(context.is_object(), "the template context must be a JSON object");
  return Renderer(std::move(context)).run(program);
}

}  // namespace dsv3::jinja
