// tinyvm — Vm internals shared by vm.cpp, tiering.cpp, stubs.cpp and reload.cpp.
#pragma once

#include <atomic>

#include "vm.h"

namespace tinyvm {

// Signature of every compiled function, stub and trampoline as seen from C++: extra
// argument registers are simply ignored by the callee.
using Entry6 = int64_t (*)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

struct Vm::FunctionState {
  // Read without the lock by running threads.
  std::atomic<const Function*> current{nullptr};  // current definition (kept alive in versions_)
  std::atomic<uint32_t> tier0Calls{0};            // calls of `current` that reached the stub
  patchcall::Key key;                             // set once, before the function is published
  const void* trampoline = nullptr;               // idem
  // Under Vm::mutex_. Exactly one of stub / code is live, and the key targets it.
  patchcall::Blob stub;
  patchcall::Blob code;
  const Function* compiledVersion = nullptr;
  std::vector<uint32_t> siteOffsets;  // of `code`
  bool jitFailed = false;
};

struct Vm::Counters {
  std::atomic<uint64_t> stubsInstalled{0}, compiles{0}, interpretedCalls{0}, reloads{0}, functionsRedefined{0},
      jitFailures{0}, sites{0}, fixedCalls{0}, hardwiredFallbacks{0}, polls{0}, codeBytes{0};
};

}  // namespace tinyvm
