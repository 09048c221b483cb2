// Command-line flags: each command declares its flags; anything else is a clear error naming it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dsv3::cli {

struct FlagSpec {
  std::string name;        // long form without dashes: "model"
  std::string short_name;  // "m" or empty
  bool takes_value = true;
  std::string help;
};

class Args {
 public:
  // Parses argv[first..argc); throws dsv3::Error on an unknown flag or a missing value.
  Args(int argc, char** argv, int first, const std::vector<FlagSpec>& specs);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  std::string require(const std::string& name) const;
  int64_t get_int(const std::string& name, int64_t fallback) const;
  // "32,128,256" as integers; empty when the flag is absent.
  std::vector<int64_t> get_int_list(const std::string& name) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// "1,2,3" to {1, 2, 3}; throws naming `flag` on anything that is not a comma-separated integer list.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);

}  // namespace dsv3::cli
