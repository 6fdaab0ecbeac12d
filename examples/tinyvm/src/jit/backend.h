// tinyvm — the one interface between the ISA-neutral baseline JIT (jit_compiler.cpp: stack
// model, labels, sites, polls) and an instruction set's instructions. CMake compiles one
// implementation, the host's (PATCHCALL_ARCH): jit/x86_64/ or jit/aarch64/, which a reader
// can compare function by function.
//
// The machine model both backends implement: a frame of 8-byte slots (the function's locals
// first, then operand-stack spills), zeroed at entry; one accumulator register holding the
// latest result (x86 rax, A64 x0: also the return register); up to kMaxParams arguments in
// the ABI's argument registers (SysV rdi..r9, AAPCS64 x0..x5). Every function is an ordinary
// C function of up to six int64_t arguments returning int64_t.
#pragma once

#include <cstdint>
#include <span>

#include "bytecode.h"
#include "patchcall/jit.h"

namespace tinyvm::jit {

// An operand: a constant, a frame slot, or the accumulator. The JIT never passes two
// accumulator operands to one call (at most one stack entry lives there).
struct Value {
  enum Kind : uint8_t { kConst, kFrame, kAcc } kind = kConst;
  int64_t imm = 0;    // kConst
  uint32_t slot = 0;  // kFrame
};

class Backend {
 public:
  explicit Backend(patchcall::jit::Assembler& a) : a_(a) {}

  // The frame record (rbp / x29, x30) and `frameSlots` zeroed slots (an even count, so the
  // stack pointer stays 16-byte aligned at every call and poll). kEmitFailed beyond the
  // ISA's addressing reach.
  patchcall::Status prologue(uint32_t frameSlots);
  void storeArg(uint32_t arg, uint32_t slot);          // frame[slot] = argument register
  void store(uint32_t slot, const Value& v);           // frame[slot] = v
  void binary(Op op, const Value& a, const Value& b);  // acc = a op b: arithmetic or 0/1 compare
  void unary(Op op, const Value& v);                   // acc = -v or !v
  void branchUnless(Op compare, const Value& a, const Value& b, const asmjit::Label& target);
  void branchIfZero(const Value& v, const asmjit::Label& target);
  void jump(const asmjit::Label& target);
  void passArgs(std::span<const Value> args);  // into the argument registers, for a call
  void callLocal(const asmjit::Label& entry);  // a plain call inside this code (hard-wired recursion)
  void ret(const Value& v);                    // acc = v, pop the frame, return

 private:
  patchcall::jit::Assembler& a_;
};

// The lazy-compile stub of function `index` (a function of the same convention): saves the
// argument registers as int64_t args[6] on its stack, calls
// `const void* tier0Entry(vm, index, args)`, then tail-jumps to the code it returned with the
// arguments restored, or returns args[0] when it returned nullptr.
patchcall::Status emitLazyStub(patchcall::jit::Assembler& a, const void* vm, uint32_t index, const void* tier0Entry);

// Whether this ISA has the site form; when not, why (for the error that refuses the option).
bool siteFormAvailable(patchcall::SiteForm form);
const char* siteFormUnavailableWhy();

}  // namespace tinyvm::jit
