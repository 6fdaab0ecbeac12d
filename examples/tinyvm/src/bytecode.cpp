// tinyvm — bytecode listing.
#include <cstdio>

#include "bytecode.h"

namespace tinyvm {

std::string disassemble(const Function& f, const Program& p) {
  static const char* kNames[] = {"const", "load", "store", "pop", "add", "sub", "mul", "div", "mod", "neg", "not",
                                 "lt",    "le",   "gt",    "ge",  "eq",  "ne",  "jump", "jz", "call", "ret"};
  std::string out = "fn " + f.name + " (arity " + std::to_string(f.arity) + ", locals " + std::to_string(f.numLocals) +
                    ", stack " + std::to_string(f.maxStack) + ", version " + std::to_string(f.version) + ")\n";
  for (size_t pc = 0; pc < f.code.size(); ++pc) {
    const Instr& in = f.code[pc];
    char line[160];
    int n = std::snprintf(line, sizeof line, "  %4zu  %-6s", pc, kNames[static_cast<int>(in.op)]);
    switch (in.op) {
      case Op::kConst: std::snprintf(line + n, sizeof line - n, "%lld", static_cast<long long>(in.imm)); break;
      case Op::kLoad: case Op::kStore: std::snprintf(line + n, sizeof line - n, "local%u", in.a); break;
      case Op::kJump: case Op::kJumpIfZero: std::snprintf(line + n, sizeof line - n, "-> %u", in.a); break;
      case Op::kCall: {
        const char* name = in.a < p.functions.size() && p.functions[in.a] ? p.functions[in.a]->name.c_str() : "?";
        std::snprintf(line + n, sizeof line - n, "%s/%u", name, in.b);
        break;
      }
      default: break;
    }
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace tinyvm
