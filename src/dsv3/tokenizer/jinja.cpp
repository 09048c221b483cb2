#include "dsv3/tokenizer/jinja.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <variant>
#include <vector>

#include "dsv3/util/error.h"

namespace dsv3::jinja {

using Json = nlohmann::ordered_json;

namespace {

// ---------------------------------------------------------------- values

// A value during rendering: JSON data, undefined (a missing name, key or attribute), a namespace
// object (shared and mutable), or a callable (a global function or a method bound to `self`).
struct Value {
  enum class Kind { Undefined, Data, Namespace, Callable } kind = Kind::Undefined;
  Json data;
  std::shared_ptr<Json> ns;
  std::string function;
  std::shared_ptr<Value> self;

  static Value of(Json j) {
    Value v;
    v.kind = Kind::Data;
    v.data = std::move(j);
    return v;
  }
  bool undefined() const { return kind == Kind::Undefined; }
  bool is_data() const { return kind == Kind::Data; }
};

std::string type_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return "undefined";
    case Value::Kind::Namespace: return "namespace";
    case Value::Kind::Callable: return "function";
    case Value::Kind::Data: break;
  }
  const Json& j = v.data;
  if (j.is_null()) return "NoneType";
  if (j.is_boolean()) return "bool";
  if (j.is_number_integer()) return "int";
  if (j.is_number_float()) return "float";
  if (j.is_string()) return "str";
  if (j.is_array()) return "list";
  return "dict";
}

bool truthy(const Value& v) {
  if (v.kind == Value::Kind::Undefined) return false;
  if (v.kind != Value::Kind::Data) return true;
  const Json& j = v.data;
  if (j.is_null()) return false;
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number()) return j.get<double>() != 0.0;
  if (j.is_string() || j.is_array() || j.is_object()) return !j.empty();
  return true;
}

// repr(float) for the floats templates meet: the shortest form that round-trips, always with a '.'.
std::string float_repr(double x) {
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (std::isnan(x)) return "nan";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

void append_json_string(std::string& out, const std::string& s) {  // as Python's json.dumps, ensure_ascii off
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

// json.dumps(x, ensure_ascii=False), as Hugging Face's tojson filter calls it (", " and ": ").
void append_tojson(std::string& out, const Json& j, int indent, int depth) {
  const auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent * d), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  if (j.is_object()) {
    if (j.empty()) return void(out += "{}");
    out += '{';
    bool first = true;
    for (const auto& [k, v] : j.items()) {
      if (!first) out += item_sep;
      first = false;
      newline(depth + 1);
      append_json_string(out, k);
      out += ": ";
      append_tojson(out, v, indent, depth + 1);
    }
    newline(depth);
    out += '}';
  } else if (j.is_array()) {
    if (j.empty()) return void(out += "[]");
    out += '[';
    for (size_t i = 0; i < j.size(); ++i) {
      if (i) out += item_sep;
      newline(depth + 1);
      append_tojson(out, j[i], indent, depth + 1);
    }
    newline(depth);
    out += ']';
  } else if (j.is_string()) {
    append_json_string(out, j.get<std::string>());
  } else if (j.is_number_float()) {
    out += float_repr(j.get<double>());
  } else {
    out += j.dump();
  }
}

// Python's repr of data, as str() of a list or dict shows its elements.
std::string repr(const Json& j) {
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    const char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
    std::string out(1, quote);
    for (char c : s) {
      if (c == quote || c == '\\') out += '\\';
      if (c == '\n') { out += "\\n"; continue; }
      out += c;
    }
    return out + quote;
  }
  if (j.is_null()) return "None";
  if (j.is_boolean()) return j.get<bool>() ? "True" : "False";
  if (j.is_number_float()) return float_repr(j.get<double>());
  if (j.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + repr(j[i]);
    return out + "]";
  }
  if (j.is_object()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, v] : j.items()) {
      out += (first ? "" : ", ") + repr(Json(k)) + ": " + repr(v);
      first = false;
    }
    return out + "}";
  }
  return j.dump();
}

std::string to_str(const Value& v) {
  if (v.undefined()) return "";
  if (v.kind == Value::Kind::Namespace) return "<Namespace>";
  if (v.kind == Value::Kind::Callable) return "<function " + v.function + ">";
  if (v.data.is_string()) return v.data.get<std::string>();
  return repr(v.data);
}

bool equals(const Value& a, const Value& b) {
  if (a.undefined() || b.undefined()) return a.undefined() && b.undefined();
  if (!a.is_data() || !b.is_data()) return false;
  if (a.data.is_number() && b.data.is_number()) return a.data.get<double>() == b.data.get<double>();
  if (a.data.is_boolean() != b.data.is_boolean() && (a.data.is_number() || b.data.is_number())) {
    const double x = a.data.is_boolean() ? double(a.data.get<bool>()) : a.data.get<double>();
    const double y = b.data.is_boolean() ? double(b.data.get<bool>()) : b.data.get<double>();
    return x == y;
  }
  return a.data == b.data;
}

int64_t length(const Value& v) {
  if (v.undefined()) return 0;
  if (v.is_data() && v.data.is_string()) {
    int64_t n = 0;
    for (unsigned char c : v.data.get_ref<const std::string&>()) n += (c & 0xc0) != 0x80;
    return n;
  }
  if (v.is_data() && (v.data.is_array() || v.data.is_object())) return int64_t(v.data.size());
  fail("object of type '", type_name(v), "' has no len()");
}

// ---------------------------------------------------------------- expressions

struct Expr {
  enum class Kind {
    Literal, Name, List, Dict, Attr, Index, Slice, Call, Filter, Test, Unary, Binary, Conditional
  } kind;
  Json literal;
  std::string name;  // variable, attribute, filter, test or operator
  std::vector<std::unique_ptr<Expr>> args;  // operands; for Call/Filter/Test: receiver first
  std::vector<std::string> arg_names;       // keyword of each argument after the receiver ("" if positional)
};
using ExprPtr = std::unique_ptr<Expr>;

ExprPtr make(Expr::Kind kind, std::string name = {}) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->name = std::move(name);
  return e;
}

struct Token {
  enum class Kind { Name, String, Integer, Float, Op, End } kind;
  std::string text;
};

std::vector<Token> lex_expression(const std::string& src) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < src.size()) {
    const char c = src[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < src.size() && (std::isalnum(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
      tokens.push_back({Token::Kind::Name, src.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool is_float = false;
      while (j < src.size() && (std::isdigit(static_cast<unsigned char>(src[j])) ||
                                (src[j] == '.' && !is_float && j + 1 < src.size() &&
                                 std::isdigit(static_cast<unsigned char>(src[j + 1]))))) {
        is_float |= src[j] == '.';
        ++j;
      }
      tokens.push_back({is_float ? Token::Kind::Float : Token::Kind::Integer, src.substr(i, j - i)});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string s;
      size_t j = i + 1;
      for (; j < src.size() && src[j] != c; ++j) {
        if (src[j] != '\\' || j + 1 >= src.size()) {
          s += src[j];
          continue;
        }
        const char e = src[++j];
        switch (e) {
          case 'n': s += '\n'; break;
          case 't': s += '\t'; break;
          case 'r': s += '\r'; break;
          case '\\': s += '\\'; break;
          case '\'': s += '\''; break;
          case '"': s += '"'; break;
          default: s += '\\'; s += e;
        }
      }
      if (j >= src.size()) fail("unterminated string in template expression: ", src);
      tokens.push_back({Token::Kind::String, s});
      i = j + 1;
    } else {
      static const char* two[] = {"==", "!=", "<=", ">=", "//", "**"};
      std::string op(1, c);
      for (const char* t : two)
        if (src.compare(i, 2, t) == 0) op = t;
      if (std::string("+-*/%~<>=!()[]{}.,:|").find(c) == std::string::npos)
        fail("unexpected character '", std::string(1, c), "' in template expression: ", src);
      tokens.push_back({Token::Kind::Op, op});
      i += op.size();
    }
  }
  tokens.push_back({Token::Kind::End, ""});
  return tokens;
}

class ExprParser {
 public:
  explicit ExprParser(const std::string& src) : src_(src), tokens_(lex_expression(src)) {}

  ExprPtr parse_all() {
    ExprPtr e = expression();
    expect_end();
    return e;
  }
  ExprPtr expression() { return conditional(); }
  const Token& peek() const { return tokens_[pos_]; }
  bool at_name(const char* n) const { return peek().kind == Token::Kind::Name && peek().text == n; }
  bool at_op(const char* o) const { return peek().kind == Token::Kind::Op && peek().text == o; }
  Token next() { return tokens_[pos_++]; }
  void expect_op(const char* o) {
    if (!at_op(o)) fail("expected '", o, "' in template expression: ", src_);
    ++pos_;
  }
  std::string expect_name() {
    if (peek().kind != Token::Kind::Name) fail("expected a name in template expression: ", src_);
    return next().text;
  }
  void expect_end() {
    if (peek().kind != Token::Kind::End) fail("unexpected '", peek().text, "' in template expression: ", src_);
  }

 private:
  ExprPtr binary(std::string op, ExprPtr a, ExprPtr b) {
    ExprPtr e = make(Expr::Kind::Binary, std::move(op));
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }
  ExprPtr conditional() {
    ExprPtr value = or_expr();
    if (!at_name("if")) return value;
    ++pos_;
    ExprPtr e = make(Expr::Kind::Conditional);
    e->args.push_back(or_expr());
    e->args.push_back(std::move(value));
    if (at_name("else")) {
      ++pos_;
      e->args.push_back(conditional());
    }
    return e;
  }
  ExprPtr or_expr() {
    ExprPtr e = and_expr();
    while (at_name("or")) {
      ++pos_;
      e = binary("or", std::move(e), and_expr());
    }
    return e;
  }
  ExprPtr and_expr() {
    ExprPtr e = not_expr();
    while (at_name("and")) {
      ++pos_;
      e = binary("and", std::move(e), not_expr());
    }
    return e;
  }
  ExprPtr not_expr() {
    if (!at_name("not")) return compare();
    ++pos_;
    ExprPtr e = make(Expr::Kind::Unary, "not");
    e->args.push_back(not_expr());
    return e;
  }
  ExprPtr compare() {
    ExprPtr e = math1();
    for (;;) {
      if (peek().kind == Token::Kind::Op &&
          (at_op("==") || at_op("!=") || at_op("<") || at_op("<=") || at_op(">") || at_op(">="))) {
        const std::string op = next().text;
        e = binary(op, std::move(e), math1());
      } else if (at_name("in")) {
        ++pos_;
        e = binary("in", std::move(e), math1());
      } else if (at_name("not") && tokens_[pos_ + 1].kind == Token::Kind::Name && tokens_[pos_ + 1].text == "in") {
        pos_ += 2;
        e = binary("not in", std::move(e), math1());
      } else {
        return e;
      }
    }
  }
  ExprPtr math1() {
    ExprPtr e = concat();
    while (at_op("+") || at_op("-")) {
      const std::string op = next().text;
      e = binary(op, std::move(e), concat());
    }
    return e;
  }
  ExprPtr concat() {
    ExprPtr e = math2();
    while (at_op("~")) {
      ++pos_;
      e = binary("~", std::move(e), math2());
    }
    return e;
  }
  ExprPtr math2() {
    ExprPtr e = unary();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const std::string op = next().text;
      e = binary(op, std::move(e), unary());
    }
    return e;
  }
  ExprPtr unary() {
    if (at_op("-") || at_op("+")) {
      ExprPtr e = make(Expr::Kind::Unary, next().text);
      e->args.push_back(unary());
      return e;
    }
    return filters(postfix(primary()));
  }
  void call_arguments(Expr& call) {
    expect_op("(");
    while (!at_op(")")) {
      std::string keyword;
      if (peek().kind == Token::Kind::Name && tokens_[pos_ + 1].kind == Token::Kind::Op && tokens_[pos_ + 1].text == "=") {
        keyword = next().text;
        ++pos_;
      }
      call.args.push_back(expression());
      call.arg_names.push_back(keyword);
      if (!at_op(")")) expect_op(",");
    }
    ++pos_;
  }
  ExprPtr primary() {
    const Token t = next();
    switch (t.kind) {
      case Token::Kind::String: {
        ExprPtr e = make(Expr::Kind::Literal);
        e->literal = t.text;
        while (peek().kind == Token::Kind::String) e->literal = e->literal.get<std::string>() + next().text;
        return e;
      }
      case Token::Kind::Integer: {
        ExprPtr e = make(Expr::Kind::Literal);
        e->literal = std::stoll(t.text);
        return e;
      }
      case Token::Kind::Float: {
        ExprPtr e = make(Expr::Kind::Literal);
        e->literal = std::stod(t.text);
        return e;
      }
      case Token::Kind::Name: {
        ExprPtr e = make(Expr::Kind::Literal);
        if (t.text == "true" || t.text == "True") e->literal = true;
        else if (t.text == "false" || t.text == "False") e->literal = false;
        else if (t.text == "none" || t.text == "None") e->literal = nullptr;
        else e = make(Expr::Kind::Name, t.text);
        return e;
      }
      case Token::Kind::Op:
        if (t.text == "(") {
          ExprPtr e = expression();
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          ExprPtr e = make(Expr::Kind::List);
          while (!at_op("]")) {
            e->args.push_back(expression());
            if (!at_op("]")) expect_op(",");
          }
          ++pos_;
          return e;
        }
        if (t.text == "{") {
          ExprPtr e = make(Expr::Kind::Dict);
          while (!at_op("}")) {
            e->args.push_back(expression());
            expect_op(":");
            e->args.push_back(expression());
            if (!at_op("}")) expect_op(",");
          }
          ++pos_;
          return e;
        }
        break;
      case Token::Kind::End: break;
    }
    fail("unexpected '", t.text, "' in template expression: ", src_);
  }
  ExprPtr postfix(ExprPtr e) {
    for (;;) {
      if (at_op(".")) {
        ++pos_;
        ExprPtr a = make(Expr::Kind::Attr, expect_name());
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (at_op("[")) {
        ++pos_;
        ExprPtr index = make(Expr::Kind::Index);
        index->args.push_back(std::move(e));
        ExprPtr parts[3];
        int part = 0;
        bool slice = false;
        while (!at_op("]")) {
          if (at_op(":")) {
            ++pos_;
            slice = true;
            if (++part > 2) fail("bad slice in template expression: ", src_);
            continue;
          }
          parts[part] = expression();
        }
        ++pos_;
        if (slice) {
          index->kind = Expr::Kind::Slice;
          for (auto& p : parts) index->args.push_back(p ? std::move(p) : nullptr);
        } else {
          if (!parts[0]) fail("empty subscript in template expression: ", src_);
          index->args.push_back(std::move(parts[0]));
        }
        e = std::move(index);
      } else if (at_op("(")) {
        ExprPtr call = make(Expr::Kind::Call);
        call->args.push_back(std::move(e));
        call->arg_names.push_back("");
        call_arguments(*call);
        e = std::move(call);
      } else {
        return e;
      }
    }
  }
  ExprPtr filters(ExprPtr e) {
    for (;;) {
      if (at_op("|")) {
        ++pos_;
        ExprPtr f = make(Expr::Kind::Filter, expect_name());
        f->args.push_back(std::move(e));
        f->arg_names.push_back("");
        if (at_op("(")) call_arguments(*f);
        e = std::move(f);
      } else if (at_name("is")) {
        ++pos_;
        bool negated = false;
        if (at_name("not")) {
          ++pos_;
          negated = true;
        }
        ExprPtr t = make(Expr::Kind::Test, expect_name());
        t->args.push_back(std::move(e));
        t->arg_names.push_back("");
        if (at_op("(")) {
          call_arguments(*t);
        } else if (peek().kind == Token::Kind::String || peek().kind == Token::Kind::Integer ||
                   peek().kind == Token::Kind::Float || (peek().kind == Token::Kind::Name && !at_name("and") &&
                                                         !at_name("or") && !at_name("else") && !at_name("if"))) {
          t->args.push_back(primary());  // `x is sameas y`, `x is equalto 3`
          t->arg_names.push_back("");
        }
        e = std::move(t);
        if (negated) {
          ExprPtr n = make(Expr::Kind::Unary, "not");
          n->args.push_back(std::move(e));
          e = std::move(n);
        }
      } else {
        return e;
      }
    }
  }

  std::string src_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

// ---------------------------------------------------------------- statements

struct Node {
  enum class Kind { Sequence, Text, Output, If, For, Set } kind = Kind::Sequence;
  std::string text;
  std::vector<std::unique_ptr<Node>> children;            // Sequence
  std::vector<std::pair<ExprPtr, std::unique_ptr<Node>>> branches;  // If: (condition or null for else, body)
  std::vector<std::string> targets;  // For: loop variables; Set: name, or namespace and attribute
  ExprPtr expr;                      // Output, For iterable, Set value
  std::unique_ptr<Node> body, else_body;  // For
};

namespace {

// One piece of the template source: text, an {{ expression }} or a {% statement %}.
struct Piece {
  enum class Kind { Text, Output, Statement } kind;
  std::string content;
};

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// Cuts the source into pieces, applying whitespace control: "-" strips all white space on that side,
// and as Hugging Face renders chat templates, lstrip_blocks (blanks before a statement or comment on its
// own line) and trim_blocks (the newline after one).
std::vector<Piece> split_source(const std::string& src) {
  std::vector<Piece> pieces;
  size_t pos = 0;
  bool strip_next_text = false, trim_next_newline = false;
  while (pos <= src.size()) {
    size_t open = src.find('{', pos);
    while (open != std::string::npos && open + 1 < src.size() && src[open + 1] != '{' && src[open + 1] != '%' &&
           src[open + 1] != '#')
      open = src.find('{', open + 1);
    if (open != std::string::npos && open + 1 >= src.size()) open = std::string::npos;
    std::string text = src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    if (strip_next_text) {
      text.erase(0, text.find_first_not_of(" \t\r\n"));
      if (text.find_first_not_of(" \t\r\n") == std::string::npos) text.clear();
    } else if (trim_next_newline) {
      if (text.rfind("\r\n", 0) == 0) text.erase(0, 2);
      else if (!text.empty() && text[0] == '\n') text.erase(0, 1);
    }
    if (open == std::string::npos) {
      if (!text.empty()) pieces.push_back({Piece::Kind::Text, text});
      break;
    }
    const char type = src[open + 1];
    const char* close = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    // Find the end, skipping quoted strings inside expressions and statements.
    size_t end = open + 2;
    char quote = 0;
    for (; end + 1 < src.size(); ++end) {
      if (quote) {
        if (src[end] == '\\') ++end;
        else if (src[end] == quote) quote = 0;
      } else if (type != '#' && (src[end] == '\'' || src[end] == '"')) {
        quote = src[end];
      } else if (src[end] == close[0] && src[end + 1] == close[1]) {
        break;
      }
    }
    if (end + 1 >= src.size()) fail("chat template: unclosed '", std::string(src, open, 2), "' at offset ", open);
    std::string inner = src.substr(open + 2, end - open - 2);
    const bool strip_before = !inner.empty() && inner.front() == '-';
    const bool strip_after = !inner.empty() && inner.back() == '-';
    if (strip_before) inner.erase(0, 1);
    if (strip_after) inner.pop_back();
    if (strip_before) {
      text.erase(text.find_last_not_of(" \t\r\n") + 1);
    } else if (type != '{') {
      // lstrip_blocks: blanks between the start of a line (in the source) and the tag go.
      size_t line_start = open;
      while (line_start > 0 && is_blank(src[line_start - 1])) --line_start;
      if (line_start == 0 || src[line_start - 1] == '\n') text.erase(text.size() - std::min(text.size(), open - line_start));
    }
    if (!text.empty()) pieces.push_back({Piece::Kind::Text, text});
    if (type == '{') pieces.push_back({Piece::Kind::Output, inner});
    if (type == '%') pieces.push_back({Piece::Kind::Statement, inner});
    strip_next_text = strip_after;
    trim_next_newline = type != '{';
    pos = end + 2;
  }
  return pieces;
}

std::string first_word(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = b;
  while (e < s.size() && (std::isalnum(static_cast<unsigned char>(s[e])) || s[e] == '_')) ++e;
  return s.substr(b, e - b);
}

std::string after_word(const std::string& s) {
  const std::string w = first_word(s);
  return s.substr(s.find(w) + w.size());
}

class TemplateParser {
 public:
  explicit TemplateParser(std::vector<Piece> pieces) : pieces_(std::move(pieces)) {}

  std::unique_ptr<Node> parse() {
    std::string end_word;
    auto root = sequence({}, end_word);
    if (!end_word.empty()) fail("chat template: unexpected {% ", end_word, " %}");
    return root;
  }

 private:
  // Parses until a statement whose first word is in `stops`; that word goes to `stopped_at`.
  std::unique_ptr<Node> sequence(const std::vector<std::string>& stops, std::string& stopped_at) {
    auto seq = std::make_unique<Node>();
    while (pos_ < pieces_.size()) {
      const Piece& p = pieces_[pos_++];
      if (p.kind == Piece::Kind::Text) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::Text;
        n->text = p.content;
        seq->children.push_back(std::move(n));
        continue;
      }
      if (p.kind == Piece::Kind::Output) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::Output;
        n->expr = ExprParser(p.content).parse_all();
        seq->children.push_back(std::move(n));
        continue;
      }
      const std::string word = first_word(p.content);
      if (std::find(stops.begin(), stops.end(), word) != stops.end()) {
        stopped_at = word;
        current_ = p.content;
        return seq;
      }
      if (word == "if") seq->children.push_back(if_node(after_word(p.content)));
      else if (word == "for") seq->children.push_back(for_node(after_word(p.content)));
      else if (word == "set") seq->children.push_back(set_node(after_word(p.content)));
      else if (word == "generation" || word == "endgeneration") continue;  // HF's assistant-mask markers
      else fail("chat template: unsupported statement {% ", word, " %}");
    }
    stopped_at.clear();
    if (!stops.empty()) fail("chat template: missing {% ", stops.back(), " %}");
    return seq;
  }

  std::unique_ptr<Node> if_node(const std::string& condition) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::If;
    ExprPtr cond = ExprParser(condition).parse_all();
    for (;;) {
      std::string stopped;
      auto body = sequence({"elif", "else", "endif"}, stopped);
      n->branches.push_back({std::move(cond), std::move(body)});
      if (stopped == "endif") return n;
      if (stopped == "else") {
        std::string end;
        n->branches.push_back({nullptr, sequence({"endif"}, end)});
        return n;
      }
      cond = ExprParser(after_word(current_)).parse_all();
    }
  }

  std::unique_ptr<Node> for_node(const std::string& header) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::For;
    ExprParser p(header);
    n->targets.push_back(p.expect_name());
    while (p.at_op(",")) {
      p.next();
      n->targets.push_back(p.expect_name());
    }
    if (!p.at_name("in")) fail("chat template: expected 'in' in {% for ", header, " %}");
    p.next();
    n->expr = p.expression();
    if (p.at_name("if")) fail("chat template: unsupported loop filter in {% for ", header, " %}");
    if (p.at_name("recursive")) fail("chat template: unsupported recursive loop in {% for ", header, " %}");
    p.expect_end();
    std::string stopped;
    n->body = sequence({"else", "endfor"}, stopped);
    if (stopped == "else") {
      std::string end;
      n->else_body = sequence({"endfor"}, end);
    }
    return n;
  }

  std::unique_ptr<Node> set_node(const std::string& statement) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::Set;
    const size_t eq = statement.find('=');
    if (eq == std::string::npos) fail("chat template: unsupported block {% set ", statement, " %}");
    ExprParser target(statement.substr(0, eq));
    n->targets.push_back(target.expect_name());
    if (target.at_op(".")) {
      target.next();
      n->targets.push_back(target.expect_name());
    }
    target.expect_end();
    n->expr = ExprParser(statement.substr(eq + 1)).parse_all();
    return n;
  }

  std::vector<Piece> pieces_;
  size_t pos_ = 0;
  std::string current_;
};

// ---------------------------------------------------------------- evaluation

class Renderer {
 public:
  explicit Renderer(const Json& variables) {
    scopes_.emplace_back();
    for (const auto& [k, v] : variables.items()) scopes_.back()[k] = Value::of(v);
  }

  void render(const Node& node, std::string& out) {
    switch (node.kind) {
      case Node::Kind::Sequence:
        for (const auto& c : node.children) render(*c, out);
        break;
      case Node::Kind::Text: out += node.text; break;
      case Node::Kind::Output: out += to_str(eval(*node.expr)); break;
      case Node::Kind::If:
        for (const auto& [cond, body] : node.branches) {
          if (!cond || truthy(eval(*cond))) {
            render(*body, out);
            break;
          }
        }
        break;
      case Node::Kind::For: render_for(node, out); break;
      case Node::Kind::Set: {
        Value v = eval(*node.expr);
        if (node.targets.size() == 1) {
          scopes_.back()[node.targets[0]] = std::move(v);
        } else {
          Value ns = lookup(node.targets[0]);
          if (ns.kind != Value::Kind::Namespace)
            fail("chat template: cannot set attribute ", node.targets[1], " of ", type_name(ns), " ", node.targets[0]);
          if (!v.is_data()) fail("chat template: only data can be stored in a namespace");
          (*ns.ns)[node.targets[1]] = v.data;
        }
        break;
      }
    }
  }

 private:
  void render_for(const Node& node, std::string& out) {
    const Value iterable = eval(*node.expr);
    std::vector<Json> items;
    if (iterable.undefined()) {
    } else if (iterable.is_data() && iterable.data.is_array()) {
      items.assign(iterable.data.begin(), iterable.data.end());
    } else if (iterable.is_data() && iterable.data.is_object()) {
      for (const auto& [k, v] : iterable.data.items()) items.push_back(k);
    } else if (iterable.is_data() && iterable.data.is_string()) {
      const std::string& s = iterable.data.get_ref<const std::string&>();
      for (size_t i = 0; i < s.size();) {
        size_t n = 1;
        while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xc0) == 0x80) ++n;
        items.push_back(s.substr(i, n));
        i += n;
      }
    } else {
      fail("chat template: '", type_name(iterable), "' object is not iterable");
    }
    if (items.empty()) {
      if (node.else_body) render(*node.else_body, out);
      return;
    }
    scopes_.emplace_back();
    for (size_t i = 0; i < items.size(); ++i) {
      auto& scope = scopes_.back();
      if (node.targets.size() == 1) {
        scope[node.targets[0]] = Value::of(items[i]);
      } else {
        if (!items[i].is_array() || items[i].size() != node.targets.size())
          fail("chat template: cannot unpack ", repr(items[i]), " into ", node.targets.size(), " loop variables");
        for (size_t t = 0; t < node.targets.size(); ++t) scope[node.targets[t]] = Value::of(items[i][t]);
      }
      const int64_t n = int64_t(items.size()), k = int64_t(i);
      scope["loop"] = Value::of(Json{{"index", k + 1}, {"index0", k}, {"revindex", n - k}, {"revindex0", n - k - 1},
                                     {"first", k == 0}, {"last", k == n - 1}, {"length", n}});
      if (i > 0) scope["loop"].data["previtem"] = items[i - 1];
      if (i + 1 < items.size()) scope["loop"].data["nextitem"] = items[i + 1];
      render(*node.body, out);
    }
    scopes_.pop_back();
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    if (name == "namespace" || name == "raise_exception" || name == "range" || name == "strftime_now") {
      Value f;
      f.kind = Value::Kind::Callable;
      f.function = name;
      return f;
    }
    return {};
  }

  Value attribute(const Value& target, const std::string& name) {
    if (target.kind == Value::Kind::Namespace) {
      auto it = target.ns->find(name);
      return it == target.ns->end() ? Value{} : Value::of(*it);
    }
    if (target.undefined()) fail("chat template: '", name, "' of an undefined value");
    if (target.is_data() && target.data.is_object() && target.data.contains(name)) return Value::of(target.data[name]);
    static const char* methods[] = {"split", "rsplit", "strip", "lstrip", "rstrip", "startswith", "endswith",
                                    "lower", "upper", "replace", "items", "keys", "values", "get", "find"};
    for (const char* m : methods)
      if (name == m) return bound(name, target);
    return {};
  }

  static int64_t normalise_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

  Value index(const Value& target, const Value& key) {
    if (target.undefined()) fail("chat template: subscript of an undefined value");
    if (target.kind == Value::Kind::Namespace) return attribute(target, to_str(key));
    const Json& t = target.data;
    if (t.is_object()) {
      if (!key.is_data() || !key.data.is_string()) return {};
      auto it = t.find(key.data.get<std::string>());
      return it == t.end() ? Value{} : Value::of(*it);
    }
    if ((t.is_array() || t.is_string()) && key.is_data() && key.data.is_number_integer()) {
      const Json items = t.is_array() ? t : code_points(t.get<std::string>());
      const int64_t i = normalise_index(key.data.get<int64_t>(), int64_t(items.size()));
      if (i < 0 || i >= int64_t(items.size())) return {};
      return Value::of(items[size_t(i)]);
    }
    fail("chat template: cannot subscript ", type_name(target), " with ", type_name(key));
  }

  static Json code_points(const std::string& s) {
    Json out = Json::array();
    for (size_t i = 0; i < s.size();) {
      size_t n = 1;
      while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xc0) == 0x80) ++n;
      out.push_back(s.substr(i, n));
      i += n;
    }
    return out;
  }

  Value slice(const Value& target, const Expr& e) {
    if (!target.is_data() || !(target.data.is_array() || target.data.is_string()))
      fail("chat template: cannot slice ", type_name(target));
    const bool is_string = target.data.is_string();
    const Json items = is_string ? code_points(target.data.get<std::string>()) : target.data;
    const int64_t n = int64_t(items.size());
    auto bound = [&](const ExprPtr& x) -> std::optional<int64_t> {
      if (!x) return std::nullopt;
      const Value v = eval(*x);
      if (v.is_data() && v.data.is_null()) return std::nullopt;
      if (!v.is_data() || !v.data.is_number_integer()) fail("chat template: slice indices must be integers");
      return v.data.get<int64_t>();
    };
    const int64_t step = bound(e.args[3]).value_or(1);
    if (step == 0) fail("chat template: slice step cannot be zero");
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v < 0 ? *v + n : *v;
      return step > 0 ? std::clamp<int64_t>(x, 0, n) : std::clamp<int64_t>(x, -1, n - 1);
    };
    const int64_t start = clamp(bound(e.args[1]), step > 0 ? 0 : n - 1);
    const int64_t stop = clamp(bound(e.args[2]), step > 0 ? n : -1);
    Json out = Json::array();
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(items[size_t(i)]);
    if (!is_string) return Value::of(out);
    std::string s;
    for (const auto& c : out) s += c.get<std::string>();
    return Value::of(s);
  }

  struct Args {
    std::vector<Value> positional;
    std::map<std::string, Value> keyword;
    const Value& at(size_t i, const char* what) const {
      if (i >= positional.size()) fail("chat template: missing argument ", what);
      return positional[i];
    }
  };

  Args arguments(const Expr& e) {
    Args a;
    for (size_t i = 1; i < e.args.size(); ++i) {
      Value v = eval(*e.args[i]);
      if (e.arg_names[i].empty()) a.positional.push_back(std::move(v));
      else a.keyword[e.arg_names[i]] = std::move(v);
    }
    return a;
  }

  static const std::string& str_of(const Value& v, const char* what) {
    if (!v.is_data() || !v.data.is_string()) fail("chat template: ", what, " expects a string, got ", type_name(v));
    return v.data.get_ref<const std::string&>();
  }

  static std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
    size_t b = 0, e = s.size();
    if (left) b = s.find_first_not_of(chars);
    if (b == std::string::npos) return "";
    if (right) e = s.find_last_not_of(chars) + 1;
    return s.substr(b, e - b);
  }

  static Json split(const std::string& s, const std::optional<std::string>& sep, int64_t max_split) {
    Json out = Json::array();
    if (!sep) {
      size_t i = 0;
      int64_t cuts = 0;
      while (true) {
        i = s.find_first_not_of(" \t\n\r\f\v", i);
        if (i == std::string::npos) break;
        if (max_split >= 0 && cuts == max_split) {
          out.push_back(strip(s.substr(i), " \t\n\r\f\v", false, true));
          break;
        }
        const size_t j = std::min(s.find_first_of(" \t\n\r\f\v", i), s.size());
        out.push_back(s.substr(i, j - i));
        ++cuts;
        i = j;
      }
      return out;
    }
    if (sep->empty()) fail("chat template: split() with an empty separator");
    size_t i = 0;
    int64_t cuts = 0;
    for (size_t j; (max_split < 0 || cuts < max_split) && (j = s.find(*sep, i)) != std::string::npos; ++cuts) {
      out.push_back(s.substr(i, j - i));
      i = j + sep->size();
    }
    out.push_back(s.substr(i));
    return out;
  }

  static std::string replace_all(std::string s, const std::string& from, const std::string& to, int64_t count) {
    if (from.empty()) return s;
    size_t pos = 0;
    for (int64_t n = 0; (count < 0 || n < count) && (pos = s.find(from, pos)) != std::string::npos; ++n) {
      s.replace(pos, from.size(), to);
      pos += to.size();
    }
    return s;
  }

  Value call(const Expr& e) { return call_value(eval(*e.args[0]), arguments(e)); }

  static Value bound(const std::string& method, const Value& self) {
    Value f;
    f.kind = Value::Kind::Callable;
    f.function = method;
    f.self = std::make_shared<Value>(self);
    return f;
  }

  Value call_value(const Value& f, const Args& a) {
    if (f.kind != Value::Kind::Callable) fail("chat template: ", type_name(f), " is not callable");
    const std::string& name = f.function;
    if (!f.self) {
      if (name == "raise_exception") fail("chat template raised an exception: ", to_str(a.at(0, "message")));
      if (name == "namespace") {
        Value ns;
        ns.kind = Value::Kind::Namespace;
        ns.ns = std::make_shared<Json>(Json::object());
        for (const auto& [k, v] : a.keyword) (*ns.ns)[k] = v.data;
        return ns;
      }
      if (name == "range") {
        int64_t start = 0, stop, step = 1;
        if (a.positional.size() == 1) {
          stop = a.at(0, "stop").data.get<int64_t>();
        } else {
          start = a.at(0, "start").data.get<int64_t>();
          stop = a.at(1, "stop").data.get<int64_t>();
          if (a.positional.size() > 2) step = a.positional[2].data.get<int64_t>();
        }
        if (step == 0) fail("chat template: range() step cannot be zero");
        Json out = Json::array();
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(i);
        return Value::of(out);
      }
      fail("chat template: unsupported function ", name, "()");
    }
    const Value& self = *f.self;
    if (self.is_data() && self.data.is_object()) {
      Json items = Json::array();
      if (name == "items") {
        for (const auto& [k, v] : self.data.items()) items.push_back(Json::array({k, v}));
        return Value::of(items);
      }
      if (name == "keys" || name == "values") {
        for (const auto& [k, v] : self.data.items()) items.push_back(name == "keys" ? Json(k) : v);
        return Value::of(items);
      }
      if (name == "get") {
        const Value v = index(self, a.at(0, "key"));
        return v.undefined() ? (a.positional.size() > 1 ? a.positional[1] : Value::of(nullptr)) : v;
      }
    }
    const std::string& s = str_of(self, name.c_str());
    auto opt_str = [&](size_t i) -> std::optional<std::string> {
      if (i >= a.positional.size() || (a.positional[i].is_data() && a.positional[i].data.is_null())) return std::nullopt;
      return str_of(a.positional[i], name.c_str());
    };
    if (name == "split" || name == "rsplit") {
      const int64_t max_split = a.positional.size() > 1 ? a.positional[1].data.get<int64_t>() : -1;
      if (name == "rsplit" && max_split >= 0) fail("chat template: rsplit with maxsplit is not supported");
      return Value::of(split(s, opt_str(0), max_split));
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip")
      return Value::of(strip(s, opt_str(0).value_or(" \t\n\r\f\v"), name != "rstrip", name != "lstrip"));
    if (name == "startswith") return Value::of(s.rfind(str_of(a.at(0, "prefix"), "startswith"), 0) == 0);
    if (name == "endswith") {
      const std::string& x = str_of(a.at(0, "suffix"), "endswith");
      return Value::of(s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0);
    }
    if (name == "lower" || name == "upper") {
      std::string r = s;
      for (char& c : r) c = char(name == "lower" ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
      return Value::of(r);
    }
    if (name == "replace")
      return Value::of(replace_all(s, str_of(a.at(0, "old"), "replace"), str_of(a.at(1, "new"), "replace"),
                                   a.positional.size() > 2 ? a.positional[2].data.get<int64_t>() : -1));
    if (name == "find") {
      const size_t p = s.find(str_of(a.at(0, "sub"), "find"));
      return Value::of(p == std::string::npos ? int64_t(-1) : int64_t(p));
    }
    fail("chat template: unsupported method ", type_name(self), ".", name, "()");
  }

  Value filter(const Expr& e) {
    const Value x = eval(*e.args[0]);
    const Args a = arguments(e);
    const std::string& name = e.name;
    if (name == "length" || name == "count") return Value::of(length(x));
    if (name == "string") return Value::of(to_str(x));
    if (name == "trim") return Value::of(strip(str_of(x, "trim"), " \t\n\r\f\v", true, true));
    if (name == "lower" || name == "upper" || name == "replace" || name == "items") return call_value(bound(name, x), a);
    if (name == "tojson") {
      if (!x.is_data()) fail("chat template: tojson of ", type_name(x));
      int indent = -1;
      if (a.keyword.count("indent")) indent = int(a.keyword.at("indent").data.get<int64_t>());
      else if (!a.positional.empty()) indent = int(a.positional[0].data.get<int64_t>());
      std::string out;
      append_tojson(out, x.data, indent, 0);
      return Value::of(out);
    }
    if (name == "default" || name == "d") {
      const bool boolean = a.positional.size() > 1 && truthy(a.positional[1]);
      if (x.undefined() || (boolean && !truthy(x))) return a.positional.empty() ? Value::of("") : a.positional[0];
      return x;
    }
    if (name == "first" || name == "last") {
      if (!x.is_data() || !(x.data.is_array() || x.data.is_string())) fail("chat template: ", name, " of ", type_name(x));
      const Json items = x.data.is_array() ? x.data : code_points(x.data.get<std::string>());
      if (items.empty()) return {};
      return Value::of(name == "first" ? items.front() : items.back());
    }
    if (name == "join") {
      if (!x.is_data() || !x.data.is_array()) fail("chat template: join of ", type_name(x));
      const std::string sep = a.positional.empty() ? "" : str_of(a.positional[0], "join");
      std::string out;
      for (size_t i = 0; i < x.data.size(); ++i) out += (i ? sep : "") + to_str(Value::of(x.data[i]));
      return Value::of(out);
    }
    if (name == "list") {
      if (x.is_data() && x.data.is_array()) return x;
      if (x.is_data() && x.data.is_string()) return Value::of(code_points(x.data.get<std::string>()));
      fail("chat template: list of ", type_name(x));
    }
    if (name == "int") {
      if (x.is_data() && x.data.is_number()) return Value::of(int64_t(x.data.get<double>()));
      if (x.is_data() && x.data.is_string()) return Value::of(std::stoll(x.data.get<std::string>()));
      return Value::of(0);
    }
    fail("chat template: unsupported filter '", name, "'");
  }

  bool test(const Expr& e) {
    const std::string& name = e.name;
    const Value x = eval(*e.args[0]);
    const Args a = arguments(e);
    if (name == "defined") return !x.undefined();
    if (name == "undefined") return x.undefined();
    if (name == "none") return x.is_data() && x.data.is_null();
    if (name == "string") return x.is_data() && x.data.is_string();
    if (name == "number") return x.is_data() && x.data.is_number();
    if (name == "integer") return x.is_data() && x.data.is_number_integer();
    if (name == "float") return x.is_data() && x.data.is_number_float();
    if (name == "boolean") return x.is_data() && x.data.is_boolean();
    if (name == "true") return x.is_data() && x.data.is_boolean() && x.data.get<bool>();
    if (name == "false") return x.is_data() && x.data.is_boolean() && !x.data.get<bool>();
    if (name == "mapping") return (x.is_data() && x.data.is_object()) || x.kind == Value::Kind::Namespace;
    if (name == "sequence" || name == "iterable")
      return x.is_data() && (x.data.is_array() || x.data.is_string() || x.data.is_object());
    if (name == "odd" || name == "even") {
      if (!x.is_data() || !x.data.is_number_integer()) fail("chat template: ", name, " test of ", type_name(x));
      return (x.data.get<int64_t>() % 2 != 0) == (name == "odd");
    }
    if (name == "eq" || name == "equalto" || name == "sameas") return equals(x, a.at(0, "other"));
    fail("chat template: unsupported test 'is ", name, "'");
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value l = eval(*e.args[0]);
      return truthy(l) ? eval(*e.args[1]) : l;
    }
    if (op == "or") {
      Value l = eval(*e.args[0]);
      return truthy(l) ? l : eval(*e.args[1]);
    }
    const Value l = eval(*e.args[0]), r = eval(*e.args[1]);
    if (op == "~") return Value::of(to_str(l) + to_str(r));
    if (op == "==") return Value::of(equals(l, r));
    if (op == "!=") return Value::of(!equals(l, r));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (r.is_data() && r.data.is_string()) found = r.data.get<std::string>().find(str_of(l, "in")) != std::string::npos;
      else if (r.is_data() && r.data.is_object()) found = l.is_data() && l.data.is_string() && r.data.contains(l.data.get<std::string>());
      else if (r.is_data() && r.data.is_array())
        found = std::any_of(r.data.begin(), r.data.end(), [&](const Json& j) { return equals(l, Value::of(j)); });
      else if (r.kind == Value::Kind::Namespace) found = r.ns->contains(to_str(l));
      else fail("chat template: 'in' over ", type_name(r));
      return Value::of(found == (op == "in"));
    }
    if (l.undefined() || r.undefined()) fail("chat template: '", op, "' with an undefined value");
    if (!l.is_data() || !r.is_data()) fail("chat template: '", op, "' of ", type_name(l), " and ", type_name(r));
    const Json& x = l.data;
    const Json& y = r.data;
    if (op == "+") {
      if (x.is_string() && y.is_string()) return Value::of(x.get<std::string>() + y.get<std::string>());
      if (x.is_array() && y.is_array()) {
        Json out = x;
        for (const auto& v : y) out.push_back(v);
        return Value::of(out);
      }
    }
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      int c;
      if (x.is_number() && y.is_number()) c = x.get<double>() < y.get<double>() ? -1 : x.get<double>() > y.get<double>();
      else if (x.is_string() && y.is_string()) c = x.get<std::string>().compare(y.get<std::string>());
      else fail("chat template: '", op, "' not supported between ", type_name(l), " and ", type_name(r));
      return Value::of(op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0);
    }
    if (op == "*" && x.is_string() && y.is_number_integer()) {
      std::string out;
      for (int64_t i = 0; i < y.get<int64_t>(); ++i) out += x.get<std::string>();
      return Value::of(out);
    }
    if (!x.is_number() || !y.is_number())
      fail("chat template: unsupported operand types for ", op, ": ", type_name(l), " and ", type_name(r));
    const bool ints = x.is_number_integer() && y.is_number_integer();
    if (ints && (op == "+" || op == "-" || op == "*" || op == "//" || op == "%")) {
      const int64_t a = x.get<int64_t>(), b = y.get<int64_t>();
      if ((op == "//" || op == "%") && b == 0) fail("chat template: integer division by zero");
      if (op == "+") return Value::of(a + b);
      if (op == "-") return Value::of(a - b);
      if (op == "*") return Value::of(a * b);
      const int64_t q = a / b - ((a % b != 0) && ((a < 0) != (b < 0)));  // Python floors
      return Value::of(op == "//" ? q : a - q * b);
    }
    const double a = x.get<double>(), b = y.get<double>();
    if (op == "+") return Value::of(a + b);
    if (op == "-") return Value::of(a - b);
    if (op == "*") return Value::of(a * b);
    if (b == 0.0) fail("chat template: division by zero");
    if (op == "/") return Value::of(a / b);
    if (op == "//") return Value::of(std::floor(a / b));
    return Value::of(a - std::floor(a / b) * b);
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::Literal: return Value::of(e.literal);
      case Expr::Kind::Name: return lookup(e.name);
      case Expr::Kind::List: {
        Json out = Json::array();
        for (const auto& a : e.args) {
          const Value v = eval(*a);
          if (!v.is_data()) fail("chat template: a ", type_name(v), " cannot go into a list");
          out.push_back(v.data);
        }
        return Value::of(out);
      }
      case Expr::Kind::Dict: {
        Json out = Json::object();
        for (size_t i = 0; i < e.args.size(); i += 2) out[to_str(eval(*e.args[i]))] = eval(*e.args[i + 1]).data;
        return Value::of(out);
      }
      case Expr::Kind::Attr: return attribute(eval(*e.args[0]), e.name);
      case Expr::Kind::Index: return index(eval(*e.args[0]), eval(*e.args[1]));
      case Expr::Kind::Slice: return slice(eval(*e.args[0]), e);
      case Expr::Kind::Call: return call(e);
      case Expr::Kind::Filter: return filter(e);
      case Expr::Kind::Test: return Value::of(test(e));
      case Expr::Kind::Unary: {
        const Value v = eval(*e.args[0]);
        if (e.name == "not") return Value::of(!truthy(v));
        if (!v.is_data() || !v.data.is_number()) fail("chat template: unary ", e.name, " of ", type_name(v));
        if (e.name == "+") return v;
        return v.data.is_number_integer() ? Value::of(-v.data.get<int64_t>()) : Value::of(-v.data.get<double>());
      }
      case Expr::Kind::Binary: return binary(e);
      case Expr::Kind::Conditional: {
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        return e.args.size() > 2 ? eval(*e.args[2]) : Value{};
      }
    }
    return {};
  }

  std::vector<std::map<std::string, Value>> scopes_;
};

}  // namespace

Template::Template(const std::string& source) : root_(TemplateParser(split_source(source)).parse()) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& variables) const {
  std::string out;
  Renderer(variables).render(*root_, out);
  return out;
}

}  // namespace dsv3::jinja
