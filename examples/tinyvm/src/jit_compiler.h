// tinyvm — baseline JIT: one bytecode function -> one patchcall code blob.
//
// Frame: a frame record (rbp, or x29/x30) and 8 * (locals + operand slots) bytes, rounded to
// 16, so the stack pointer is 16-byte aligned at every call. Locals and spilled operands live
// in the frame; a small virtual stack defers constants and local reads and keeps one value in
// the accumulator. Arguments arrive in the ABI's registers (SysV rdi..r9, AAPCS64 x0..x5) and
// the result returns in rax / x0, so a compiled function is an ordinary C function of up to
// six int64_t arguments. The instructions are the host ISA's (jit/backend.h).
//
// Every call to another tinyvm function is a patchcall site bound to the callee's key
// (jit::emitCall), unless `calls == kHardwired` (the benchmark baseline): then a call to
// the function itself is a plain call to its own entry label and a call to an already
// compiled callee is jit::emitFixedCall to its code. Safepoint polls sit at the entry and on
// every loop back-edge.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "bytecode.h"
#include "patchcall/jit.h"

namespace tinyvm {

enum class CallMode { kSites, kHardwired };

struct JitOptions {
  CallMode calls = CallMode::kSites;
  patchcall::SiteForm siteForm = patchcall::SiteForm::kDirect;
  bool polls = true;
};

// What the JIT needs to know about other functions.
struct JitEnv {
  std::function<patchcall::Key(uint32_t)> keyOf;          // callee index -> its key
  std::function<const void*(uint32_t)> compiledCodeOf;    // kHardwired: callee's code or nullptr
};

struct JitReport {
  uint32_t sites = 0;               // patchcall sites emitted
  uint32_t fixedCalls = 0;          // hard-wired calls (kHardwired)
  uint32_t hardwiredFallbacks = 0;  // kHardwired calls that had to be sites (callee not compiled yet)
  uint32_t polls = 0;
  size_t codeSize = 0;
  std::vector<uint32_t> siteOffsets;  // first byte of each site, from the start of the code
};

patchcall::Result<patchcall::Blob> jitCompile(patchcall::Runtime& rt, const Function& f, const JitEnv& env,
                                              const JitOptions& options, JitReport* report = nullptr);

}  // namespace tinyvm
