// tinyvm — the bytecode interpreter.
//
// One loop serves two masters: the reference Interpreter (every call interpreted, used to
// check the JIT) and tier 0 of the VM (calls leave through the callee's patchcall
// trampoline, so they reach whatever tier the callee is in).
#pragma once

#include <alloca.h>

#include <cstdint>
#include <span>

#include "bytecode.h"

namespace tinyvm {

// `call(index, args, argc)` performs a call; `backEdge()` runs at every loop back-edge (the
// VM announces a safepoint there).
template <typename CallFn, typename BackEdgeFn>
int64_t runBytecode(const Function& f, const int64_t* args, CallFn&& call, BackEdgeFn&& backEdge) {
  auto* locals = static_cast<int64_t*>(alloca(sizeof(int64_t) * (f.numLocals + f.maxStack + 1)));
  // Zeroed, operand slots included: stale words here would be scanned as code addresses.
  for (uint32_t i = 0; i < f.numLocals + f.maxStack + 1; ++i) locals[i] = i < f.arity ? args[i] : 0;
  int64_t* sp = locals + f.numLocals;  // next free operand slot
  const Instr* code = f.code.data();
  uint32_t pc = 0;
  while (true) {
    const Instr& in = code[pc++];
    switch (in.op) {
      case Op::kConst: *sp++ = in.imm; break;
      case Op::kLoad: *sp++ = locals[in.a]; break;
      case Op::kStore: locals[in.a] = *--sp; break;
      case Op::kPop: --sp; break;
      case Op::kAdd: sp[-2] = wrapAdd(sp[-2], sp[-1]), --sp; break;
      case Op::kSub: sp[-2] = wrapSub(sp[-2], sp[-1]), --sp; break;
      case Op::kMul: sp[-2] = wrapMul(sp[-2], sp[-1]), --sp; break;
      case Op::kDiv: sp[-2] = safeDiv(sp[-2], sp[-1]), --sp; break;
      case Op::kMod: sp[-2] = safeMod(sp[-2], sp[-1]), --sp; break;
      case Op::kNeg: sp[-1] = wrapNeg(sp[-1]); break;
      case Op::kNot: sp[-1] = sp[-1] == 0; break;
      case Op::kLt: sp[-2] = sp[-2] < sp[-1], --sp; break;
      case Op::kLe: sp[-2] = sp[-2] <= sp[-1], --sp; break;
      case Op::kGt: sp[-2] = sp[-2] > sp[-1], --sp; break;
      case Op::kGe: sp[-2] = sp[-2] >= sp[-1], --sp; break;
      case Op::kEq: sp[-2] = sp[-2] == sp[-1], --sp; break;
      case Op::kNe: sp[-2] = sp[-2] != sp[-1], --sp; break;
      case Op::kJump:
        if (in.a < pc) backEdge();
        pc = in.a;
        break;
      case Op::kJumpIfZero:
        if (*--sp == 0) pc = in.a;
        break;
      case Op::kCall:
        sp -= in.b;
        *sp = call(in.a, static_cast<const int64_t*>(sp), in.b);
        ++sp;
        break;
      case Op::kRet: return *--sp;
    }
  }
}

// The reference: a pure interpreter over one Program, no JIT, no patchcall.
class Interpreter {
 public:
  explicit Interpreter(const Program& program) : program_(program) {}
  int64_t call(uint32_t index, std::span<const int64_t> args) const { return run(index, args.data()); }

 private:
  int64_t run(uint32_t index, const int64_t* args) const {
    return runBytecode(
        *program_.functions[index], args,
        [this](uint32_t callee, const int64_t* a, uint32_t) { return run(callee, a); }, [] {});
  }
  const Program& program_;
};

}  // namespace tinyvm
