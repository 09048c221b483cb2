// dsv3: the one binary. `dsv3 <command> [flags]`; each command lives in its own file.
#include <cstdio>
#include <exception>
#include <string>

#include "cli/command.h"
#include "dsv3/util/error.h"

namespace dsv3::cli {

namespace {

std::vector<Command>& registry() {
  static std::vector<Command> list;
  return list;
}

void print_usage() {
  std::printf("usage: dsv3 <command> [flags]\n\ncommands:\n");
  for (const Command& c : commands()) std::printf("  %-12s %s\n", c.name.c_str(), c.summary.c_str());
  std::printf("\n`dsv3 <command> --help` lists a command's flags.\n");
}

void print_command_help(const Command& command) {
  std::printf("usage: dsv3 %s [flags]\n%s\n\nflags:\n", command.name.c_str(), command.summary.c_str());
  for (const FlagSpec& f : command.flags) {
    std::string names = "--" + f.name + (f.short_name.empty() ? "" : ", -" + f.short_name);
    if (f.takes_value) names += " V";
    std::printf("  %-24s %s\n", names.c_str(), f.help.c_str());
  }
}

}  // namespace

const std::vector<Command>& commands() { return registry(); }

CommandRegistration::CommandRegistration(Command command) {
  command.flags.push_back({"device", "", true, "cpu or cuda (default: cuda when a GPU is present, else cpu)"});
  command.flags.push_back({"help", "h", false, "show this help"});
  registry().push_back(std::move(command));
}

}  // namespace dsv3::cli

int main(int argc, char** argv) {
  using namespace dsv3::cli;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const Command& command : commands()) {
    if (command.name != name) continue;
    try {
      Args args(argc, argv, 2, command.flags);
      if (args.has("help")) {
        print_command_help(command);
        return 0;
      }
      return command.run(args);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dsv3 %s: error: %s\n", name.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "dsv3: error: unknown command '%s' (see dsv3 --help)\n", name.c_str());
  return 2;
}
