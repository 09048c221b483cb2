#include "dsv3/tokenizer/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "dsv3/tokenizer/jinja_filters.h"
#include "dsv3/tokenizer/jinja_lexer.h"
#include "dsv3/util/error.h"

namespace dsv3::jinja {
namespace {

// jinja2 tags that chat templates of other families use and this interpreter does not implement.
constexpr std::string_view kUnsupportedTags[] = {
    "macro", "call",  "filter", "with",   "block", "extends", "include", "import",
    "from",  "raw",   "autoescape", "print", "do",  "endmacro", "endcall", "endfilter",
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_template() {
    auto [body, end_tag] = parse_body({});
    return std::move(body);
  }

 private:
  // ---- token stream ----
  const Token* peek(size_t ahead = 0) const {
    return pos_ + ahead < tokens_.size() ? &tokens_[pos_ + ahead] : nullptr;
  }
  int line() const {
    if (const Token* t = peek()) return t->line;
    return tokens_.empty() ? 1 : tokens_.back().line;
  }
  [[noreturn]] void error(const std::string& message) const {
    fail("chat template line ", line(), ": ", message);
  }
  static std::string describe(const Token* t) {
    if (!t) return "end of template";
    switch (t->type) {
      case TokenType::text: return "template text";
      case TokenType::variable_begin: return "'{{'";
      case TokenType::variable_end: return "'}}'";
      case TokenType::block_begin: return "'{%'";
      case TokenType::block_end: return "'%}'";
      case TokenType::string: return "a string";
      default: return "'" + t->text + "'";
    }
  }
  bool at(TokenType type, std::string_view text = {}) const {
    const Token* t = peek();
    return t && t->type == type && (text.empty() || t->text == text);
  }
  bool at_op(std::string_view op) const { return at(TokenType::op, op); }
  bool at_name(std::string_view name) const { return at(TokenType::name, name); }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    ++pos_;
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    ++pos_;
    return true;
  }
  const Token& expect(TokenType type, std::string_view text, std::string_view what) {
    if (!at(type, text)) error(str_cat("expected ", what, ", got ", describe(peek())));
    return tokens_[pos_++];
  }
  void expect_op(std::string_view op) { expect(TokenType::op, op, str_cat("'", op, "'")); }
  void expect_block_end() { expect(TokenType::block_end, {}, "'%}'"); }
  std::string expect_name() { return expect(TokenType::name, {}, "a name").text; }

  template <typename Node>
  ExprPtr make_expr(Node node, int at_line) {
    return std::make_unique<Expr>(Expr{std::move(node), at_line});
  }
  template <typename Node>
  StmtPtr make_stmt(Node node, int at_line) {
    return std::make_unique<Stmt>(Stmt{std::move(node), at_line});
  }

  // ---- statements ----

  // Statements up to a {% tag %} named in `end_tags`, whose name is consumed and returned.
  std::pair<Body, std::string> parse_body(std::initializer_list<std::string_view> end_tags) {
    Body body;
    while (const Token* t = peek()) {
      const int at_line = t->line;
      if (t->type == TokenType::text) {
        body.push_back(make_stmt(Text{t->text}, at_line));
        ++pos_;
      } else if (t->type == TokenType::variable_begin) {
        ++pos_;
        ExprPtr value = parse_tuple(true);
        expect(TokenType::variable_end, {}, "'}}'");
        body.push_back(make_stmt(Output{std::move(value)}, at_line));
      } else if (t->type == TokenType::block_begin) {
        ++pos_;
        const std::string tag = expect(TokenType::name, {}, "a tag name").text;
        if (std::find(end_tags.begin(), end_tags.end(), tag) != end_tags.end()) return {std::move(body), tag};
        body.push_back(parse_statement(tag, at_line));
      } else {
        error("unexpected " + describe(t));
      }
    }
    // The last end tag is the one that closes the block: endif, endfor, endset, endgeneration.
    if (end_tags.size() > 0) error("missing {% " + std::string(*std::rbegin(end_tags)) + " %} before the end of the template");
    return {std::move(body), ""};
  }

  StmtPtr parse_statement(const std::string& tag, int at_line) {
    if (tag == "if") return parse_if(at_line);
    if (tag == "for") return parse_for(at_line);
    if (tag == "set") return parse_set(at_line);
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error("'" + tag + "' outside a for loop");
      expect_block_end();
      if (tag == "break") return make_stmt(Break{}, at_line);
      return make_stmt(Continue{}, at_line);
    }
    if (tag == "generation") {
      expect_block_end();
      Scoped scoped{parse_body({"endgeneration"}).first};
      expect_block_end();
      return make_stmt(std::move(scoped), at_line);
    }
    if (std::find(std::begin(kUnsupportedTags), std::end(kUnsupportedTags), tag) != std::end(kUnsupportedTags)) {
      error("the {% " + tag + " %} tag is not supported");
    }
    error("unexpected tag '" + tag + "'");
  }

  StmtPtr parse_if(int at_line) {
    If node;
    ExprPtr condition = parse_tuple(true);
    while (true) {
      expect_block_end();
      auto [body, end_tag] = parse_body({"elif", "else", "endif"});
      node.branches.emplace_back(std::move(condition), std::move(body));
      if (end_tag == "elif") {
        condition = parse_tuple(true);
        continue;
      }
      if (end_tag == "else") {
        expect_block_end();
        node.otherwise = parse_body({"endif"}).first;
      }
      expect_block_end();
      return make_stmt(std::move(node), at_line);
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> targets;
    const bool parenthesized = skip_op("(");
    do {
      targets.push_back(expect_name());
    } while (skip_op(",") && at(TokenType::name));
    if (parenthesized) expect_op(")");
    return targets;
  }

  StmtPtr parse_for(int at_line) {
    For node;
    node.targets = parse_targets();
    expect(TokenType::name, "in", "'in'");
    node.iterable = parse_tuple(false);  // `if` after the iterable filters the loop
    if (skip_name("if")) node.condition = parse_expression(true);
    if (at_name("recursive")) error("recursive for loops are not supported");
    expect_block_end();
    ++loop_depth_;
    auto [body, end_tag] = parse_body({"endfor", "else"});
    --loop_depth_;
    node.body = std::move(body);
    if (end_tag == "else") {
      expect_block_end();
      node.otherwise = parse_body({"endfor"}).first;
    }
    expect_block_end();
    return make_stmt(std::move(node), at_line);
  }

  StmtPtr parse_set(int at_line) {
    Set node;
    node.targets.push_back(expect_name());
    if (skip_op(".")) {
      node.attribute = expect_name();
    } else {
      while (skip_op(",")) node.targets.push_back(expect_name());
    }
    if (at(TokenType::block_end) && node.targets.size() == 1 && node.attribute.empty()) {
      ++pos_;
      SetBlock block{node.targets[0], parse_body({"endset"}).first};
      expect_block_end();
      return make_stmt(std::move(block), at_line);
    }
    if (at_op("|")) error("filtered {% set %} blocks are not supported");
    expect_op("=");
    node.value = parse_tuple(true);
    expect_block_end();
    return make_stmt(std::move(node), at_line);
  }

  // ---- expressions, loosest binding first, as in jinja2's parser ----

  // a, b, c (a tuple) or a single expression, up to the end of the tag.
  ExprPtr parse_tuple(bool with_conditional) {
    const int at_line = line();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (at(TokenType::block_end) || at(TokenType::variable_end) || at_op(")")) break;
      items.push_back(parse_expression(with_conditional));
      if (at_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (items.empty()) error("expected an expression, got " + describe(peek()));
    if (!is_tuple) return std::move(items[0]);
    return make_expr(ListLiteral{std::move(items)}, at_line);
  }

  ExprPtr parse_expression(bool with_conditional) {
    return with_conditional ? parse_conditional() : parse_or();
  }

  ExprPtr parse_conditional() {
    ExprPtr expr = parse_or();
    while (at_name("if")) {
      const int at_line = line();
      ++pos_;
      Conditional node;
      node.condition = parse_or();
      if (skip_name("else")) node.otherwise = parse_conditional();
      node.then = std::move(expr);
      expr = make_expr(std::move(node), at_line);
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      const int at_line = line();
      ++pos_;
      left = make_expr(Binary{BinaryOp::logical_or, std::move(left), parse_and()}, at_line);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      const int at_line = line();
      ++pos_;
      left = make_expr(Binary{BinaryOp::logical_and, std::move(left), parse_not()}, at_line);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      const int at_line = line();
      ++pos_;
      return make_expr(Unary{UnaryOp::logical_not, parse_not()}, at_line);
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int at_line = line();
    ExprPtr first = parse_math1();
    std::vector<std::pair<CompareOp, ExprPtr>> rest;
    static const std::pair<std::string_view, CompareOp> ops[] = {
        {"==", CompareOp::eq}, {"!=", CompareOp::ne}, {"<", CompareOp::lt},
        {"<=", CompareOp::le}, {">", CompareOp::gt},  {">=", CompareOp::ge}};
    while (true) {
      const auto op = std::find_if(std::begin(ops), std::end(ops), [&](const auto& o) { return at_op(o.first); });
      if (op != std::end(ops)) {
        ++pos_;
        rest.emplace_back(op->second, parse_math1());
      } else if (skip_name("in")) {
        rest.emplace_back(CompareOp::in, parse_math1());
      } else if (at_name("not") && peek(1) && peek(1)->type == TokenType::name && peek(1)->text == "in") {
        pos_ += 2;
        rest.emplace_back(CompareOp::not_in, parse_math1());
      } else {
        break;
      }
    }
    if (rest.empty()) return first;
    return make_expr(Compare{std::move(first), std::move(rest)}, at_line);
  }

  template <typename Next>
  ExprPtr parse_binary_level(std::initializer_list<std::pair<std::string_view, BinaryOp>> ops, Next next) {
    ExprPtr left = (this->*next)();
    while (true) {
      const auto op = std::find_if(ops.begin(), ops.end(), [&](const auto& o) { return at_op(o.first); });
      if (op == ops.end()) return left;
      const int at_line = line();
      ++pos_;
      left = make_expr(Binary{op->second, std::move(left), (this->*next)()}, at_line);
    }
  }

  ExprPtr parse_math1() {
    return parse_binary_level({{"+", BinaryOp::add}, {"-", BinaryOp::subtract}}, &Parser::parse_concat);
  }
  ExprPtr parse_concat() { return parse_binary_level({{"~", BinaryOp::concat}}, &Parser::parse_math2); }
  ExprPtr parse_math2() {
    return parse_binary_level({{"*", BinaryOp::multiply}, {"/", BinaryOp::divide},
                               {"//", BinaryOp::floor_divide}, {"%", BinaryOp::modulo}},
                              &Parser::parse_pow);
  }
  ExprPtr parse_pow() { return parse_binary_level({{"**", BinaryOp::power}}, &Parser::parse_unary_filtered); }
  ExprPtr parse_unary_filtered() { return parse_unary(true); }

  // A unary minus binds tighter than filters on its operand but filters apply to the negation:
  // `-x|abs` is `(-x)|abs`, as in jinja2.
  ExprPtr parse_unary(bool with_filter) {
    const int at_line = line();
    ExprPtr node;
    if (skip_op("-")) {
      node = make_expr(Unary{UnaryOp::negate, parse_unary(false)}, at_line);
    } else if (skip_op("+")) {
      node = make_expr(Unary{UnaryOp::plus, parse_unary(false)}, at_line);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token* t = peek();
    if (!t) error("expected an expression, got end of template");
    const int at_line = t->line;
    switch (t->type) {
      case TokenType::name: {
        ++pos_;
        if (t->text == "true" || t->text == "True") return make_expr(Literal{Json(true)}, at_line);
        if (t->text == "false" || t->text == "False") return make_expr(Literal{Json(false)}, at_line);
        if (t->text == "none" || t->text == "None") return make_expr(Literal{Json(nullptr)}, at_line);
        return make_expr(Name{t->text}, at_line);
      }
      case TokenType::string: {
        std::string text;
        while (at(TokenType::string)) text += tokens_[pos_++].text;  // 'a' 'b' is 'ab'
        return make_expr(Literal{Json(std::move(text))}, at_line);
      }
      case TokenType::integer: ++pos_; return make_expr(Literal{Json(t->integer)}, at_line);
      case TokenType::floating: ++pos_; return make_expr(Literal{Json(t->floating)}, at_line);
      case TokenType::op:
        if (skip_op("(")) {
          if (skip_op(")")) return make_expr(ListLiteral{}, at_line);
          ExprPtr inner = parse_tuple(true);
          expect_op(")");
          return inner;
        }
        if (skip_op("[")) {
          ListLiteral list;
          while (!skip_op("]")) {
            if (!list.items.empty()) expect_op(",");
            if (skip_op("]")) break;
            list.items.push_back(parse_expression(true));
          }
          return make_expr(std::move(list), at_line);
        }
        if (skip_op("{")) {
          DictLiteral dict;
          while (!skip_op("}")) {
            if (!dict.items.empty()) expect_op(",");
            if (skip_op("}")) break;
            ExprPtr key = parse_expression(true);
            expect_op(":");
            dict.items.emplace_back(std::move(key), parse_expression(true));
          }
          return make_expr(std::move(dict), at_line);
        }
        break;
      default: break;
    }
    error("unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      const int at_line = line();
      if (skip_op(".")) {
        if (at(TokenType::integer)) {  // messages.0 is messages[0]
          const int64_t index = tokens_[pos_++].integer;
          node = make_expr(Subscript{std::move(node), make_expr(Literal{Json(index)}, at_line)}, at_line);
        } else {
          node = make_expr(Attribute{std::move(node), expect_name()}, at_line);
        }
      } else if (skip_op("[")) {
        node = parse_subscript(std::move(node), at_line);
      } else if (at_op("(")) {
        node = make_expr(Call{std::move(node), parse_call_arguments()}, at_line);
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object, int at_line) {
    ExprPtr start;
    if (!at_op(":")) {
      start = parse_expression(true);
      if (skip_op("]")) return make_expr(Subscript{std::move(object), std::move(start)}, at_line);
    }
    Slice slice{std::move(object), std::move(start), nullptr, nullptr};
    expect_op(":");
    if (!at_op("]") && !at_op(":")) slice.stop = parse_expression(true);
    if (skip_op(":") && !at_op("]")) slice.step = parse_expression(true);
    expect_op("]");
    return make_expr(std::move(slice), at_line);
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      const int at_line = line();
      if (skip_op("|")) {
        FilterCall filter{std::move(node), expect_name(), {}};
        if (!is_filter(filter.name)) error("the filter '" + filter.name + "' is not supported");
        if (at_op("(")) filter.args = parse_call_arguments();
        node = make_expr(std::move(filter), at_line);
      } else if (skip_name("is")) {
        node = parse_test(std::move(node), at_line);
      } else if (at_op("(")) {
        node = make_expr(Call{std::move(node), parse_call_arguments()}, at_line);
      } else {
        return node;
      }
    }
  }

  // `x is name`, `x is not name`, `x is name(args)` or, as jinja2 allows, `x is name arg`.
  ExprPtr parse_test(ExprPtr value, int at_line) {
    TestCall test{std::move(value), "", {}, skip_name("not")};
    test.name = expect_name();
    if (!is_test(test.name)) error("the test '" + test.name + "' is not supported");
    if (at_op("(")) {
      test.args = parse_call_arguments();
    } else if (const Token* t = peek();
               t && (t->type == TokenType::name || t->type == TokenType::string || t->type == TokenType::integer ||
                     t->type == TokenType::floating || at_op("[") || at_op("{")) &&
               !at_name("else") && !at_name("or") && !at_name("and")) {
      if (at_name("is")) error("tests cannot be chained with 'is'");
      test.args.positional.push_back(parse_postfix(parse_primary()));
    }
    return make_expr(std::move(test), at_line);
  }

  Arguments parse_call_arguments() {
    expect_op("(");
    Arguments args;
    while (!skip_op(")")) {
      if (!args.positional.empty() || !args.keyword.empty()) expect_op(",");
      if (skip_op(")")) break;
      if (at_op("*") || at_op("**")) error("*args and **kwargs in calls are not supported");
      if (at(TokenType::name) && peek(1) && peek(1)->type == TokenType::op && peek(1)->text == "=") {
        std::string key = expect_name();
        ++pos_;
        args.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!args.keyword.empty()) error("a positional argument follows a keyword argument");
        args.positional.push_back(parse_expression(true));
      }
    }
    return args;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse(std::string_view source) { return Parser(tokenize(source)).parse_template(); }

}  // namespace dsv3::jinja
