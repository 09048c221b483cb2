// Runs the built dsv3 binary as a user would: arguments, text on stdin, and what it printed.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dsv3::test {

struct CommandResult {
  int exit_code;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `dsv3 <arguments>` with `input` on stdin.
inline CommandResult run_dsv3(const std::string& arguments, const std::string& input = "") {
  const auto dir = std::filesystem::temp_directory_path() / ("dsv3_cli_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "stdin", std::ios::binary) << input;
  const std::string command = std::string(DSV3_BINARY) + " " + arguments + " < " + (dir / "stdin").string() +
                              " > " + (dir / "stdout").string() + " 2> " + (dir / "stderr").string();
  const int status = std::system(command.c_str());
  CommandResult result{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir / "stdout"), slurp(dir / "stderr")};
  std::filesystem::remove_all(dir);
  return result;
}

}  // namespace dsv3::test
