// tinyvm — stack bytecode: what the compiler emits, the interpreter runs and the JIT translates.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "source.h"

namespace tinyvm {

// Arguments travel in the ABI's integer argument registers (SysV, AAPCS64), so at most six.
constexpr uint32_t kMaxParams = 6;

enum class Op : uint8_t {
  kConst,       // push imm
  kLoad,        // push local[a]
  kStore,       // local[a] = pop
  kPop,         // drop the top
  kAdd, kSub, kMul, kDiv, kMod,  // pop b, pop a, push a op b (wrapping; x/0 = x%0 = 0)
  kNeg, kNot,                    // unary on the top
  kLt, kLe, kGt, kGe, kEq, kNe,  // pop b, pop a, push (a op b) ? 1 : 0
  kJump,        // pc = a (a <= pc is a loop back-edge: safepoint poll)
  kJumpIfZero,  // if pop == 0: pc = a
  kCall,        // pop b arguments (last on top), push function[a](args)
  kRet,         // return pop
};

struct Instr {
  Op op;
  uint32_t a = 0;
  uint32_t b = 0;
  int64_t imm = 0;
};

// One compiled definition of a function. Immutable once built; a reload makes a new one.
struct Function {
  std::string name;
  uint32_t index = 0;      // slot in the program's function table (stable across reloads)
  uint32_t arity = 0;
  uint32_t numLocals = 0;  // parameters first
  uint32_t maxStack = 0;   // deepest operand stack
  uint32_t version = 1;    // 1 for the first definition, +1 per redefinition
  SourcePos pos;
  std::string file;
  std::vector<Instr> code;
};

// The function table: index -> current definition.
struct Program {
  std::vector<std::shared_ptr<const Function>> functions;
  std::unordered_map<std::string, uint32_t> byName;

  std::optional<uint32_t> find(std::string_view name) const {
    auto it = byName.find(std::string(name));
    if (it == byName.end()) return std::nullopt;
    return it->second;
  }
};

// Integer semantics shared by the interpreter and the JIT (no traps: x/0 and x%0 are 0,
// INT64_MIN / -1 wraps to INT64_MIN).
inline int64_t wrapAdd(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
inline int64_t wrapSub(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b)); }
inline int64_t wrapMul(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b)); }
inline int64_t wrapNeg(int64_t a) { return static_cast<int64_t>(0 - static_cast<uint64_t>(a)); }
inline int64_t safeDiv(int64_t a, int64_t b) { return b == 0 ? 0 : b == -1 ? wrapNeg(a) : a / b; }
inline int64_t safeMod(int64_t a, int64_t b) { return b == 0 || b == -1 ? 0 : a % b; }

// Human-readable listing (tinyvm dis).
std::string disassemble(const Function& f, const Program& p);

}  // namespace tinyvm
