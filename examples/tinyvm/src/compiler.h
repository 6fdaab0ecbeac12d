// tinyvm — syntax tree to bytecode: name resolution, arity checks, stack-depth accounting.
#pragma once

#include <vector>

#include "ast.h"
#include "bytecode.h"

namespace tinyvm {

struct CompiledModule {
  Program program;                 // base's table with this module's functions added/replaced
  std::vector<uint32_t> defined;   // indices of the functions this module (re)defined
};

// Compiles `module` on top of `base` (nullptr: an empty program). A function of `base` that
// the module defines again is replaced by a new version and must keep its arity (compiled
// callers pass that many arguments); new names are appended. Calls may name any function
// of the result. Errors carry the offending line and column.
Outcome<CompiledModule> compile(const Module& module, const Program* base = nullptr);

}  // namespace tinyvm
