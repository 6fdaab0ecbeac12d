// patchcall — what a blob is called and how its frames look, for profilers, debuggers and
// unwinders (README "Profiling and debugging JIT code").
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace patchcall {

// The frame layout installed code declares; patchcall checks the bytes and, for a declared
// layout, registers .eh_frame with the unwinder (C++ exceptions, backtrace(), gdb's bt).
enum class FrameLayout : uint8_t {
  kNone = 0,  // nothing declared: unwinders stop at (or guess through) this code
  // Each range (the whole blob when no ranges are given) starts with `push rbp; mov rbp, rsp`
  // and ends with `leave; ret`; between them rbp is the frame pointer. Exact at every
  // instruction. Refused with kInvalidArgument when the bytes do not match.
  kFramePointer = 1,
  // The same prologue, rbp the frame pointer for the rest of the range, any epilogues inside
  // (several returns, code after the last one such as jit::install's poll slow paths). Exact
  // at every return address of a call made from the range (what exceptions, backtrace() and
  // bt need); wrong only on an epilogue's `ret` itself. Only the prologue is checked.
  kFramePointerAnyEpilogue = 2,
};

// A named function inside a blob that holds several (offset from the blob's first byte).
struct NamedRange {
  uint32_t offset = 0;
  uint32_t size = 0;
  std::string_view name;
};

// Optional facts about installed code. Names are copied; the strings need not outlive the call.
struct CodeInfo {
  std::string_view name;             // empty: "jit_<hex address>" in perf, jitdump and gdb
  std::span<const NamedRange> ranges;  // inside the blob, in any order, not overlapping
  FrameLayout frameLayout = FrameLayout::kNone;
};

}  // namespace patchcall
