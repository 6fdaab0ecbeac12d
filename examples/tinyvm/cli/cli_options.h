// tinyvm CLI — command-line options.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vm.h"

namespace tinyvm::cli {

enum class Command { kHelp, kRun, kCheck, kDis };

struct CliOptions {
  Command command = Command::kHelp;
  std::string file;
  std::string entry = "main";
  std::vector<int64_t> args;
  bool interpretOnly = false;  // --tier interp
  VmOptions vm;
  uint32_t threads = 0;        // 0: run on the main thread
  uint64_t iterations = 1;     // calls of the entry per thread
  std::string reloadFile;
  uint32_t afterMs = 50;
  uint32_t timeoutMs = 30000;  // upper bound for a threaded run
  bool stats = false;
  bool verbose = false;
};

extern const char kUsage[];

// The options, or an error message for stderr (exit status 2).
struct ParseResult {
  std::optional<CliOptions> options;
  std::string error;
};
ParseResult parseCommandLine(int argc, char** argv);

const char* tieringName(Tiering t);
const char* siteFormName(patchcall::SiteForm f);

}  // namespace tinyvm::cli
