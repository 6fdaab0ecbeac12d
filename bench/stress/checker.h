// patchcall-stress — violations: where they are recorded, and the fault handlers that turn a
// crash in JIT code into a recorded violation.
//
// A call that fails the version check is reported by the JIT caller itself (callers.h). A
// signal is a violation too when it is not owned by the protocol:
//  * SIGTRAP: patchcall's handler emulates the calls of breakpoint sites being patched and
//    chains every other SIGTRAP to the handler installed before it: ours (installed before
//    Runtime::create). Such a trap is an int3 nobody owns: retired code filled with 0xCC,
//    or int3 padding reached through a torn call.
//  * SIGSEGV, SIGILL, SIGBUS, SIGFPE: a torn or stale call landed in garbage.
// The handler records the fault address, the site (from the return address on the stack),
// its form and key, both version cells and the thread, prints one line, and - if the thread
// was running JIT caller code - siglongjmps back to the caller loop so the run continues and
// ends with a summary and exit status 1. A fault anywhere else is fatal (exit by the signal).
#pragma once

#include <signal.h>

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "callers.h"
#include "versions.h"

namespace stress {

struct Violation {
  int thread = -1;
  uint32_t site = UINT32_MAX;  // UINT32_MAX: the fault could not be mapped to a site
  int form = -1;               // SiteForm as int
  uint32_t key = UINT32_MAX;
  uint64_t returned = 0, pre = 0, post = 0;  // tags (versions.h); for a signal: the cells then
  int signal = 0;                            // 0 for a failed check
  uintptr_t address = 0;                     // fault address (data address for SIGSEGV/SIGBUS)
  uintptr_t rip = 0;                         // instruction pointer for a signal (pc on aarch64)
  bool inArena = false;                      // rip was inside the code arena
};

// Per-thread state the fault handler needs (thread_local: async-signal-safe to read).
struct FaultEscape {
  sigjmp_buf jump;
  volatile int inJit = 0;  // 1 while the thread runs a JIT caller group
  int thread = -1;
};
extern thread_local FaultEscape* tlsEscape;

class Checker {
 public:
  static constexpr int kMaxDetails = 64;
  static Checker& instance();

  // SIGSEGV/SIGILL/SIGBUS/SIGFPE, and SIGTRAP so patchcall's trap handler chains to us: call
  // before Runtime::create.
  void installSignalHandlers();
  // What the handler needs to describe a fault (immutable afterwards).
  void attach(const CallerCode* code, const KeyCells* cells, const void* arena, size_t arenaSize);

  // Thread-safe and async-signal-safe; prints the first few to stderr.
  void record(const Violation& v);
  uint64_t total() const;
  uint64_t byForm(int form) const;
  std::vector<Violation> details() const;

 private:
  friend void onFault(int, siginfo_t*, void*);
  const CallerCode* code_ = nullptr;
  const KeyCells* cells_ = nullptr;
  uintptr_t arenaBegin_ = 0, arenaEnd_ = 0;
};

}  // namespace stress
