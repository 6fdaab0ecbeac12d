// tinyvm CLI — the commands. Each returns the process exit status.
#pragma once

#include "cli_options.h"

namespace tinyvm::cli {

int runCommand(const CliOptions& o);
int checkCommand(const CliOptions& o);
int disCommand(const CliOptions& o);

// Shared by the commands: VM counters and patchcall's runtime counters, one block.
void printStats(const Vm& vm, patchcall::Runtime& rt);

}  // namespace tinyvm::cli
