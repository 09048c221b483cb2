// Values of the template language, with Python's semantics as jinja2 gives them to a chat template.
//
// Data (none, booleans, integers, floats, strings, lists, dicts) are nlohmann::ordered_json held by
// shared pointer: `message['content']` aliases the conversation instead of copying it, and dicts
// keep insertion order as Python's do, which iteration and tojson show. Beside data there are:
// undefined (a missing variable, key or attribute, like jinja2's Undefined: empty when printed,
// false when tested, an error when used in arithmetic), namespace objects, the `loop` variable,
// and callables (global functions and bound methods such as `content.split`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::jinja {

using Json = nlohmann::ordered_json;

// Defined below Value: `namespace(...)` objects, the `loop` variable, functions and methods.
struct Namespace;
struct LoopState;
struct Callable;

class Value {
 public:
  enum class Kind { undefined, data, ns, loop, callable };

  Value() = default;  // undefined
  Value(Json data);   // implicit, so that `Value v = Json("text")` reads naturally
  explicit Value(std::shared_ptr<const Json> data);
  explicit Value(std::shared_ptr<Namespace> ns);
  explicit Value(std::shared_ptr<const LoopState> loop);
  explicit Value(std::shared_ptr<const Callable> callable);
  // Undefined, remembering what was looked up (e.g. "message['tool_calls']") for error messages.
  static Value undefined(std::string what);

  Kind kind() const { return Kind(storage_.index()); }
  bool is_undefined() const { return kind() == Kind::undefined; }
  bool is_data() const { return kind() == Kind::data; }
  bool is_none() const { return is_data() && json().is_null(); }
  bool is_bool() const { return is_data() && json().is_boolean(); }
  bool is_integer() const { return is_data() && json().is_number_integer(); }
  bool is_float() const { return is_data() && json().is_number_float(); }
  bool is_number() const { return is_data() && (json().is_number() || json().is_boolean()); }
  bool is_string() const { return is_data() && json().is_string(); }
  bool is_list() const { return is_data() && json().is_array(); }
  bool is_dict() const { return is_data() && json().is_object(); }

  const Json& json() const;
  const std::string& string() const { return json().get_ref<const std::string&>(); }
  // An integer, or a boolean as 0/1 (Python's bool is an int).
  int64_t integer() const;
  double number() const;  // any number or boolean as a double
  const std::string& undefined_what() const { return std::get<std::string>(storage_); }
  Namespace& ns() const { return *std::get<std::shared_ptr<Namespace>>(storage_); }
  const LoopState& loop() const { return *std::get<std::shared_ptr<const LoopState>>(storage_); }
  const Callable& callable() const { return *std::get<std::shared_ptr<const Callable>>(storage_); }
  // Whether both refer to the same namespace, loop or callable object.
  bool same_object(const Value& other) const;

  // An element of this list or dict, sharing its storage.
  Value element(const Json& child) const;

 private:
  std::variant<std::string, std::shared_ptr<const Json>, std::shared_ptr<Namespace>,
               std::shared_ptr<const LoopState>, std::shared_ptr<const Callable>>
      storage_;
};

// `namespace(a=1)`: the one mutable object of the language (`{% set ns.a = 2 %}`), shared by
// every value that refers to it.
struct Namespace {
  std::vector<std::pair<std::string, Value>> attributes;
};

// The `loop` variable of one iteration of a for loop.
struct LoopState {
  int64_t index0 = 0;
  std::shared_ptr<const std::vector<Value>> items;
};

// A global function (`self` undefined) or a method bound to `self`.
struct Callable {
  std::string name;
  Value self;
};

// "message['tool_calls'] is undefined": the error for using an undefined value.
std::string undefined_error(const Value& v);

// Python's type name, for error messages: "str", "int", "NoneType", "dict", ...
std::string type_name(const Value& v);

// Python truthiness: empty strings and containers, zero, none and undefined are false.
bool truthy(const Value& v);

// str(v) as jinja2 prints it: undefined is empty, none is "None", floats use Python's repr,
// lists and dicts their Python repr.
std::string to_str(const Value& v);
std::string repr(const Value& v);
// repr(float): the shortest digits that round-trip, fixed notation for exponents -4..15.
std::string format_float(double x);

// Python ==, where 1 == 1.0 == True and undefined equals only undefined.
bool equals(const Value& a, const Value& b);
// Python ordering of numbers, strings and lists: negative, zero or positive; throws for others.
int compare(const Value& a, const Value& b);

// `item in container`: a substring of a string, an element of a list, a key of a dict; never in
// undefined.
bool contains(const Value& container, const Value& item);

// len(v); undefined has length 0.
int64_t length(const Value& v);
// The items a for loop visits: list elements, dict keys, string code points; none for undefined.
std::vector<Value> iterate(const Value& v);
// The data of `v`, to store in a list or dict; throws for undefined and for namespaces, loops and
// functions, which only live in variables.
const Json& as_data(const Value& v);
// A list value made of `items`, each of which must be data.
Value make_list(const std::vector<Value>& items);

}  // namespace dsv3::jinja
