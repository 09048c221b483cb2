// A Jinja subset, enough for the chat templates of the DeepSeek family (and most of Hugging Face's):
// text, {{ expressions }}, {% if / elif / else %}, {% for %} with loop.*, {% set %} (also of a
// namespace attribute), {# comments #}, whitespace control (-) and Hugging Face's trim_blocks and
// lstrip_blocks. Values are JSON with Python's semantics; anything the interpreter does not know is
// a dsv3::Error that names it.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace dsv3::jinja {

struct Node;

class Template {
 public:
  explicit Template(const std::string& source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  std::string render(const nlohmann::ordered_json& variables) const;

 private:
  std::unique_ptr<Node> root_;
};

}  // namespace dsv3::jinja
