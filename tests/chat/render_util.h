// Helpers for the interpreter tests: render a template source, or get the error it ends in.
#pragma once

#include <string>

#include "dsv3/tokenizer/chat_template.h"
#include "dsv3/util/error.h"

namespace dsv3 {

inline std::string render(const std::string& source,
                          const nlohmann::ordered_json& variables = nlohmann::ordered_json::object()) {
  return ChatTemplate(source).render(variables);
}

// The message of the dsv3::Error that parsing or rendering throws, or "no error".
inline std::string error_of(const std::string& source,
                            const nlohmann::ordered_json& variables = nlohmann::ordered_json::object()) {
  try {
    render(source, variables);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace dsv3
