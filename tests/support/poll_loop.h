// Test support for quiescence_poll_test: a JIT loop that counts in every register JIT code may
// keep live across a safepoint poll, and a check of the poll's own instructions, each in the
// host ISA's words (support/<isa>/poll_loop.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "patchcall/jit.h"

namespace patchcall::test {

inline constexpr int kMaxLoopCounters = 32;
inline constexpr int kMaxLoopVectors = 32;
// What counter k adds per iteration.
inline uint64_t loopCounterStep(int k) { return 2 * static_cast<uint64_t>(k) + 3; }

// Shared with the JIT loop (offsets are baked into the code).
struct CountingLoopFrame {
  uint64_t stop = 0;      // the loop exits once this is non-zero
  uint64_t progress = 0;  // the iteration count, stored every iteration
  uint64_t iterations = 0;
  uint64_t argOut = 0;    // the argument register (which points here) at the exit
  uint64_t gpr[kMaxLoopCounters] = {};
  alignas(16) uint64_t inc[2] = {1, 0x10001};  // what each vector counter adds per iteration
  alignas(16) uint64_t marker[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};
  alignas(16) uint64_t vec[kMaxLoopVectors][2] = {};
  alignas(16) uint64_t markerOut[2] = {};
};

// The registers the loop keeps live: general counters gpr[0..gprs.size()), vector counters
// vec[0..vectors), a vector holding `marker`, and the argument.
struct CountingLoopRegisters {
  const char* arg;                // x86 rdi, A64 x0
  std::vector<const char*> gprs;  // in gpr[] order
  int vectors;                    // x86 xmm0-13, A64 v0-29
  const char* vectorPrefix;       // "xmm", "v"
  const char* marker;             // x86 xmm15, A64 v31
};
const CountingLoopRegisters& countingLoopRegisters();

// void loop(CountingLoopFrame*): adds loopCounterStep(k) to general counter k and `inc` to
// every vector counter each iteration until frame->stop is set, with a safepoint poll in
// every iteration when `withPoll`; then stores every counter in the frame.
Result<Blob> emitCountingLoop(Runtime& rt, bool withPoll);

// "" if `code` (the blob of one emitSafepointPoll and a return) starts with the ISA's poll:
// one load or compare of `flag` and a conditional branch (x86 `cmp byte [rip+d], 0 ; jne`,
// A64 `adrp x16 ; ldrb w16, [x16, #lo] ; cbnz w16`); else what differs.
std::string checkPollInstructions(const std::vector<uint8_t>& code, const void* codeAddress, const volatile void* flag);

}  // namespace patchcall::test
