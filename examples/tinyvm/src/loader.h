// tinyvm — file to Program in one step (read, parse, compile).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ast.h"
#include "bytecode.h"
#include "source.h"

namespace tinyvm {

struct Loaded {
  Module module;
  Program program;
};

// Errors: "cannot read FILE: reason" or the first diagnostic (file:line:col: error: ...).
struct LoadOutcome {
  bool ok = false;
  std::string error;
  Loaded loaded;
};

LoadOutcome loadFile(const std::string& path, const Program* base = nullptr);
LoadOutcome loadText(const std::string& name, const std::string& text, const Program* base = nullptr);
// A module only (for Vm::reload, which compiles against the live program).
LoadOutcome parseFile(const std::string& path);

// "# expect: 832040" anywhere in the source: the result main() must return.
std::optional<int64_t> expectedResult(const Source& src);

}  // namespace tinyvm
