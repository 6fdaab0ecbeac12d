// Test support: the few host instructions the tests write around patchcall's sites, in words
// every ISA shares (tests/support/<isa>/isa.cpp; CMake picks the host's). A test that is about
// one site form or one ISA's encodings uses that ISA's operands itself; every other test
// emits through these, so it runs on each ISA patchcall supports.
#pragma once

#include <ucontext.h>

#include <cstdint>
#include <vector>

#include "patchcall/jit.h"

namespace patchcall::test {

// False on an ISA with Direct sites only (aarch64): no kToggle, kBreakpoint, int3 protocol.
bool hasToggleAndBreakpointForms();
// In a test about the toggle or breakpoint form (not about a concept every ISA has).
#define PATCHCALL_SKIP_UNLESS_X86_FORMS()                                                        \
  do {                                                                                           \
    if (!::patchcall::test::hasToggleAndBreakpointForms())                                       \
      GTEST_SKIP() << "this ISA has only Direct sites: kToggle and kBreakpoint do not apply";    \
  } while (0)

// The site forms of this ISA: kDirect, kToggle, kBreakpoint on x86-64; kDirect on aarch64.
std::vector<SiteForm> siteForms();
// Skips a parameterized case whose form this ISA does not have.
#define PATCHCALL_SKIP_UNLESS_FORM(form)                                                          \
  do {                                                                                            \
    if ((form) != ::patchcall::SiteForm::kDirect && (form) != ::patchcall::SiteForm::kAuto &&     \
        !::patchcall::test::hasToggleAndBreakpointForms())                                        \
      GTEST_SKIP() << "this ISA has only Direct sites: kToggle and kBreakpoint do not apply";     \
  } while (0)

// False where registerForeignSite is refused on this ISA (none today: x86-64 patches foreign
// sites with the breakpoint protocol, aarch64 with one aligned store).
bool hasForeignSites();
#define PATCHCALL_SKIP_UNLESS_FOREIGN_SITES()                                                   \
  do {                                                                                          \
    if (!::patchcall::test::hasForeignSites())                                                  \
      GTEST_SKIP() << "foreign sites are not supported on this ISA (registerForeignSite "         \
                      "returns kUnsupportedSite)";                                              \
  } while (0)

// A frame that keeps the stack aligned at the calls inside it (x86-64: sub rsp, 8; aarch64:
// stp x29, x30, [sp, #-16]! ; mov x29, sp, as a bl overwrites x30), and its undo.
void emitEnter(jit::Assembler& a);
void emitLeave(jit::Assembler& a);
void emitRet(jit::Assembler& a);
// The int return register (eax, w0) = value, += value.
void emitSetResult(jit::Assembler& a, int value);
void emitAddResult(jit::Assembler& a, int value);
// A jump to `label` (x86 jmp, A64 b).
void emitJump(jit::Assembler& a, const asmjit::Label& label);
// An instruction asmjit refuses (mismatched operand sizes); returns asmjit's error.
asmjit::Error emitInvalidInstruction(jit::Assembler& a);
// A loop of the function's first argument `p` (a pointer): ++*(uint64_t*)(p + counter) (one
// writer: a plain store on A64, lock add on x86); a safepoint poll; again while
// *(uint8_t*)(p + flag) == 0. Falls through after it.
Status emitPollingSpin(jit::Assembler& a, int32_t counter, int32_t flag);
// Ordinary instructions filling exactly `bytes` (a multiple of the instruction size on A64).
void emitFiller(jit::Assembler& a, size_t bytes);

// An arena size whose arena, placed beside the text, keeps the test binary's C++ functions
// within a direct call's reach (x86-64: the default; aarch64: 64 MiB, BL reaching +-128 MiB).
size_t arenaSizeWithinCallReach();
// True where emitFixedCall reaches any address (aarch64: through a veneer in the blob); false
// where a far target is kOutOfRange at install (x86-64: rel32).
bool fixedCallsReachAnywhere();

// Where instructions may start: any byte (x86-64) or every 4th (aarch64).
size_t instructionAlignment();

// Zeroes the callee-saved registers getcontext captured (x86: rbp, r12-r15; A64: x19-x29).
void clearCalleeSaved(ucontext_t& c);

// Hand-written machine code for pages patchcall did not emit and for installCode.
// `result = value ; ret`, at most kReturnerSize bytes; returnerValue reads value back (0 when
// `code` is not such a returner).
inline constexpr size_t kReturnerSize = 12;
std::vector<uint8_t> returnerBytes(int value);
int returnerValue(const void* code);
std::vector<uint8_t> retBytes();
// What freed arena code is filled with (x86-64: int3 0xCC; aarch64: udf #0, 00 bytes).
uint8_t fillByte();
// The signal a call into freed code dies of (x86: SIGTRAP from int3; A64: SIGILL from udf).
int freedCodeSignal();
// A complete direct call (x86 `E8 rel32`, A64 `bl`) with the given target as if at `at`, and
// its size; false when out of reach.
inline constexpr size_t kMaxCallSize = 5;
size_t callSize();
bool encodeCall(uintptr_t at, uintptr_t target, uint8_t* out);
// Where the patched field of a call or jump starts (x86: the rel32 after the opcode; A64: the
// whole instruction): it must be 4-byte aligned so one store rewrites it.
size_t callFieldOffset();
// The target of the direct call at `site`, 0 if it holds none.
uintptr_t directCallTarget(const uint8_t* site);
// The target of the direct jump (x86 `E9 rel32`, A64 `b`) at `code`, 0 if it holds none.
uintptr_t directJumpTarget(const uint8_t* code);
// Where a veneer or trampoline of the runtime (the absolute jump a far call goes through)
// at `code` jumps, 0 if `code` is none: x86 `jmp [rip+0]; .quad`, A64 `ldr x16, #8; br x16; .quad`.
uintptr_t absoluteJumpTarget(const uint8_t* code);

// Hand-written foreign code: `prologue ; call initialTarget ; epilogue ; ret`, an `int fn()`;
// kForeignCallOffset is where the call is.
extern const size_t kForeignCallOffset;
std::vector<uint8_t> foreignCaller(uintptr_t at, uintptr_t initialTarget);

}  // namespace patchcall::test
