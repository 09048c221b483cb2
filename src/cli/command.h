// Subcommands of the dsv3 binary. Each src/cli/<name>.cpp defines one and registers it with a
// static CommandRegistration, so main.cpp needs no list of them.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"

namespace dsv3::cli {

struct Command {
  std::string name;
  std::string summary;        // one line, for `dsv3 --help`
  std::vector<FlagSpec> flags;  // the flags it accepts (--device is added to every command)
  int (*run)(const Args& args);
};

const std::vector<Command>& commands();

struct CommandRegistration {
  explicit CommandRegistration(Command command);
};

}  // namespace dsv3::cli
