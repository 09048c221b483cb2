// Errors: dsv3::Error is what every edge (checkpoint, CLI flag, HTTP body) throws with a message that
// names the file, tensor, field or flag; DSV3_ASSERT checks invariants inside, where input is trusted.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace dsv3 {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates its arguments with operator<<: str_cat("tensor ", name, " has ", n, " dims").
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(str_cat(args...));
}

}  // namespace dsv3

#define DSV3_ASSERT(cond, ...)                                                                  \
  do {                                                                                          \
    if (!(cond)) ::dsv3::fail(__FILE__, ":", __LINE__, ": assertion ", #cond, " failed. ", \
                              ##__VA_ARGS__);                                                   \
  } while (0)
