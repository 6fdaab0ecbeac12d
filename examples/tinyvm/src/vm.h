// tinyvm — the VM: a function table whose entries are patchcall keys.
//
// Each function owns one key. JIT code calls a function through sites bound to its key;
// C++ (and tier-0 interpretation) call through the key's trampoline. The key's target is the
// function's current tier:
//   tier 0  a lazy-compile stub (stubs.cpp): calls Vm::tier0Entry, which interprets the
//           call or compiles the function, retargets the key and tail-jumps to the code;
//   tier 1  baseline JIT code (jit_compiler.h).
// A stub or code blob that stops being the target is retired with Runtime::retire(Blob):
// patchcall frees it only after a grace period in which no thread's stack still points
// into it. Threads that run tinyvm code must be attached (Vm::attachThread).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ast.h"
#include "bytecode.h"
#include "jit_compiler.h"
#include "patchcall/runtime.h"

namespace tinyvm {

struct JitReport;

enum class Tiering {
  kLazy,       // compile on the first call
  kThreshold,  // interpret the first `threshold` calls, then compile
  kEager,      // compile everything at load (and at reload)
};

struct VmOptions {
  Tiering tiering = Tiering::kLazy;
  uint32_t threshold = 2;
  JitOptions jit;
  patchcall::Options runtime;
  std::function<void(const std::string&)> log;  // tier-ups and reloads, one line each
};

struct VmStats {
  uint64_t stubsInstalled = 0;
  uint64_t compiles = 0;          // functions JIT-compiled
  uint64_t interpretedCalls = 0;  // calls run by tier 0's interpreter
  uint64_t reloads = 0;
  uint64_t functionsRedefined = 0;
  uint64_t jitFailures = 0;       // compile errors (the function stays interpreted)
  uint64_t sites = 0, fixedCalls = 0, hardwiredFallbacks = 0, polls = 0;
  uint64_t codeBytes = 0;
};

struct FunctionInfo {
  std::string name;
  uint32_t version = 0;
  int tier = 0;                      // 0: stub, 1: compiled
  patchcall::Key key;
  const void* trampoline = nullptr;
  const void* target = nullptr;      // the key's current target
  const void* stub = nullptr;        // live stub (tier 0) or nullptr
  const void* code = nullptr;        // live compiled code (tier 1) or nullptr
  uint32_t tier0Calls = 0;
  std::vector<const void*> sites;    // call sites in the live compiled code
};

struct ReloadResult {
  patchcall::Status status;        // not ok: nothing changed
  std::string diagnostic;          // compile error text, when that is why
  std::vector<uint32_t> redefined;  // indices (re)defined, new functions included
  uint64_t micros = 0;              // time from start to the last key retargeted
};

class Vm {
 public:
  static constexpr uint32_t kMaxFunctions = 4096;

  // Creates the patchcall Runtime, a stub and a key per function; kEager compiles all.
  static patchcall::Result<std::unique_ptr<Vm>> create(const Program& program, VmOptions options = {});
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Registers the calling thread with the runtime (required before call()).
  patchcall::Result<patchcall::ThreadScope> attachThread(std::string_view name = {});

  // Calls a function through its key's trampoline. kNotRegistered on an unattached thread,
  // kInvalidArgument for a bad index or argument count.
  patchcall::Result<int64_t> call(uint32_t index, std::span<const int64_t> args);
  patchcall::Result<int64_t> call(std::string_view name, std::span<const int64_t> args);

  // Compiles `index` now if it is still in tier 0.
  patchcall::Status compileNow(uint32_t index);

  // Redefines functions while other threads keep running: `module` is compiled against the
  // current program (same arity for redefined functions, new functions appended); each
  // redefined function's key goes back to a fresh stub for the new definition (one batched
  // update for all of them) and its old code is retired. Running threads switch at their
  // next call. Not available with CallMode::kHardwired.
  ReloadResult reload(const Module& module);

  Program program() const;
  uint32_t functionCount() const { return count_.load(std::memory_order_acquire); }
  FunctionInfo info(uint32_t index) const;
  VmStats stats() const;
  patchcall::Runtime& runtime() { return rt_; }
  const VmOptions& options() const { return options_; }

 private:
  struct FunctionState;
  struct Counters;

  Vm(patchcall::Runtime rt, VmOptions options);
  std::unique_lock<std::mutex> lockOffline() const;
  patchcall::Status addFunctionLocked(const std::shared_ptr<const Function>& f);
  patchcall::Result<patchcall::Blob> installStubLocked(uint32_t index);  // stubs.cpp
  const void* tierUpLocked(uint32_t index);                              // nullptr: stays in tier 0
  patchcall::Status compileAllHardwiredLocked();
  // The key now targets `blob`: remember it as the function's code and count it.
  void recordCompiledLocked(FunctionState& fs, const Function* f, const patchcall::Blob& blob, const JitReport& report);
  int64_t interpret(const Function& f, const int64_t* args);
  int64_t callThroughKey(uint32_t index, const int64_t* args, uint32_t argc);
  void log(const std::string& line) const;

  // Called by every stub (stubs.cpp). Returns code to tail-jump to with the original
  // arguments, or nullptr after storing the interpreted result in args[0].
  static const void* tier0Entry(Vm* vm, uint32_t index, int64_t* args) noexcept;

  patchcall::Runtime rt_;
  VmOptions options_;
  mutable std::mutex mutex_;  // compiles, reloads, stubs and the program table
  Program program_;
  std::vector<std::shared_ptr<const Function>> versions_;  // every definition ever (tier 0 may still run one)
  std::unique_ptr<FunctionState[]> fns_;
  std::atomic<uint32_t> count_{0};
  std::unique_ptr<Counters> counters_;
};

}  // namespace tinyvm
