// `dsv3 version`: the build's version string.
#include <cstdio>

#include "cli/command.h"

namespace dsv3::cli {
namespace {

int run_version(const Args&) {
  std::printf("dsv3 0.1.0\n");
  return 0;
}

const CommandRegistration registration{{"version", "print the version", {}, run_version}};

}  // namespace
}  // namespace dsv3::cli
