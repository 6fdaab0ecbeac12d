// tinyvm — command-line entry point.
#include <cstdio>

#include "cli_options.h"
#include "commands.h"

int main(int argc, char** argv) {
  using namespace tinyvm::cli;
  ParseResult parsed = parseCommandLine(argc, argv);
  if (!parsed.options) {
    std::fprintf(stderr, "%s\n", parsed.error.c_str());
    return 2;
  }
  const CliOptions& o = *parsed.options;
  switch (o.command) {
    case Command::kHelp: std::fputs(kUsage, stdout); return 0;
    case Command::kRun: return runCommand(o);
    case Command::kCheck: return checkCommand(o);
    case Command::kDis: return disCommand(o);
  }
  return 2;
}
