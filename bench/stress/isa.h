// patchcall-stress — what the driver does in one instruction set's words: the site forms it
// has, the pieces of the JIT caller groups and targets, and reading a signal's context. One
// implementation per ISA (bench/stress/<isa>/; CMake picks PATCHCALL_ARCH's), so callers.cpp,
// targets.cpp and checker.cpp say what to emit or read in words every ISA shares.
//
// Register conventions stay inside each ISA's files: the caller group keeps its frame
// (CallerFrame*), the remaining iterations, the key cells and `pre` in callee-saved registers,
// and the targets' yield points find the frame in the register the group keeps it in.
#pragma once

#include <signal.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "patchcall/jit.h"

namespace stress::isa {

// "x86-64", "aarch64" (for messages).
extern const char* const kName;
// The site forms of this ISA, in the rotation order of --form mixed: direct, toggle,
// breakpoint on x86-64; direct on aarch64 (BL is the only instruction one store retargets).
std::vector<patchcall::SiteForm> siteForms();

// --- Caller groups (callers.cpp): uint64_t group(CallerFrame* frame, uint64_t iterations) is
//   groupEntry; loop: { [poll; [yieldPoint]] ; loadPre ; <the site> ; check } per site ;
//   groupEnd(loop, exit) ; failStub per site
// `keyCells` is the byte offset of the site's KeyCells from CallerFrame::cells.
patchcall::Status emitGroupEntry(patchcall::jit::Assembler& a);
// `pre := end` of the key, ordered before the site's call (versions.h).
patchcall::Status emitLoadPre(patchcall::jit::Assembler& a, uint32_t keyCells);
// After the site: `post := begin`, ordered after the call; jumps to `fail` unless
// pre <= returned <= post.
patchcall::Status emitCheck(patchcall::jit::Assembler& a, uint32_t keyCells, const asmjit::Label& fail);
// --iterations; again at `loop` while non-zero; then returns 0. `exit` is the return path
// the fail stubs jump to.
patchcall::Status emitGroupEnd(patchcall::jit::Assembler& a, const asmjit::Label& loop, const asmjit::Label& exit);
// Stores returned, pre, post in the frame and returns `index + 1` through `exit`.
patchcall::Status emitFailStub(patchcall::jit::Assembler& a, const asmjit::Label& fail, const asmjit::Label& exit,
                               uint32_t index);
// A yield point: --frame->yieldCountdown; at zero, call `yield`. `atEntry`: the first
// instruction of a target (called from a caller group). Clobbers the caller-saved registers.
patchcall::Status emitYieldPoint(patchcall::jit::Assembler& a, void (*yield)(), bool atEntry);
// --strict-toggle: a stub called between a toggle and its call A that calls `toggleStall` (if
// set) and re-reads the key's `end` into `pre`. Only for an ISA with toggle sites.
patchcall::Status emitStrictStub(patchcall::jit::Assembler& a, void (*toggleStall)(), uint32_t keyCells);

// --- Targets (targets.cpp): each returns tag(key, version) (versions.h).
// Distance between two targets; `spread` (fault tests) is 0x110 on every ISA.
size_t targetStride(bool spread);
// A pool entry: returns the value of `cell`, read after the entry's code was fetched.
patchcall::Status emitPoolEntry(patchcall::jit::Assembler& a, const std::atomic<uint64_t>* cell);
// A retire-mode entry: returns `tag`.
patchcall::Status emitTagEntry(patchcall::jit::Assembler& a, uint64_t tag);
// What padding between targets is filled with: an instruction that traps (x86 int3, A64 udf).
extern const uint8_t kTrapFillByte;

// --- Signals (checker.cpp). Async-signal-safe.
struct FaultContext {
  uintptr_t pc = 0;       // the faulting instruction (x86: after an int3)
  uintptr_t address = 0;  // where the fault is: the trap's instruction, or the data address
};
FaultContext faultContext(int sig, const siginfo_t* info, const void* ucontext);
// The innermost return address if the fault is in a target a site called (x86: the word at
// rsp, so only call this for a fault in JIT code; A64: x30), or 0.
uintptr_t faultReturnAddress(const void* ucontext);

}  // namespace stress::isa
