// tinyvm — tier 0 (the stub's way into the VM), tier-up to baseline code, hardwired builds.
#include <cstdio>

#include "interpreter.h"
#include "vm_internal.h"

namespace tinyvm {

namespace {
// Tier-up only needs every call to reach a valid tier (patchcall::Publish::kDeferred).
const patchcall::UpdateOptions kPublishLater{.strict = false, .deadline = std::nullopt,
                                             .publish = patchcall::Publish::kDeferred};
}  // namespace

using patchcall::Error;
using patchcall::Result;
using patchcall::Status;

namespace {

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

}  // namespace

// Runs on the calling thread, inside the stub's frame. No safepoint may be announced after
// the code pointer is read: a safepoint would let a concurrent reload free that code
// before the stub jumps to it.
const void* Vm::tier0Entry(Vm* vm, uint32_t index, int64_t* args) noexcept {
  patchcall::safepoint();  // the caller holds nothing here
  FunctionState& fs = vm->fns_[index];
  if (vm->options_.tiering == Tiering::kThreshold) {
    uint32_t calls = fs.tier0Calls.fetch_add(1, std::memory_order_relaxed) + 1;
    if (calls <= vm->options_.threshold) {
      args[0] = vm->interpret(*fs.current.load(std::memory_order_acquire), args);
      return nullptr;
    }
  } else {
    fs.tier0Calls.fetch_add(1, std::memory_order_relaxed);
  }
  const void* code;
  {
    std::unique_lock<std::mutex> lock = vm->lockOffline();
    code = vm->tierUpLocked(index);
  }
  if (code == nullptr) {  // the JIT failed: this function stays interpreted
    args[0] = vm->interpret(*fs.current.load(std::memory_order_acquire), args);
  }
  return code;
}

int64_t Vm::interpret(const Function& f, const int64_t* args) {
  counters_->interpretedCalls.fetch_add(1, std::memory_order_relaxed);
  return runBytecode(
      f, args, [this](uint32_t callee, const int64_t* a, uint32_t argc) { return callThroughKey(callee, a, argc); },
      [] { patchcall::safepoint(); });
}

void Vm::recordCompiledLocked(FunctionState& fs, const Function* f, const patchcall::Blob& blob,
                              const JitReport& report) {
  fs.code = blob;
  fs.compiledVersion = f;
  fs.siteOffsets = report.siteOffsets;
  counters_->compiles.fetch_add(1);
  counters_->sites.fetch_add(report.sites);
  counters_->fixedCalls.fetch_add(report.fixedCalls);
  counters_->hardwiredFallbacks.fetch_add(report.hardwiredFallbacks);
  counters_->polls.fetch_add(report.polls);
  counters_->codeBytes.fetch_add(report.codeSize);
}

// Compiles the current definition (unless already done), points the key at the code and
// retires the stub. Returns the live code, or nullptr when the function stays in tier 0.
const void* Vm::tierUpLocked(uint32_t index) {
  FunctionState& fs = fns_[index];
  const Function* f = fs.current.load(std::memory_order_relaxed);
  if (fs.code.valid() && fs.compiledVersion == f) return fs.code.code;  // another thread won
  if (fs.jitFailed) return nullptr;
  JitEnv env{[this](uint32_t i) { return fns_[i].key; }, nullptr};
  JitReport report;
  Result<patchcall::Blob> blob = jitCompile(rt_, *f, env, options_.jit, &report);
  auto giveUp = [&](const Status& s) -> const void* {
    fs.jitFailed = true;
    counters_->jitFailures.fetch_add(1);
    log("tinyvm: cannot compile '" + f->name + "', it stays interpreted: " + s.toString());
    return nullptr;
  };
  if (!blob) return giveUp(blob.status());
  // Deferred: a call that still reaches the stub is correct too (tier0Entry finds the code
  // compiled and runs it), and the stub is freed only after a grace period, which starts by
  // publishing this update. So tier-up costs a few stores, not a cross-core sync.
  Result<const void*> previous = rt_.update(fs.key, blob->code, kPublishLater);
  if (!previous) {
    (void)rt_.retire(*blob);  // nothing targets it yet
    return giveUp(previous.status());
  }
  if (fs.stub.valid()) {
    // Threads may still be inside the stub (or in tier0Entry below it): patchcall frees it
    // only once no stack points into it.
    Status retired = rt_.retire(fs.stub);
    if (!retired) log("tinyvm: retiring the stub of '" + f->name + "' failed: " + retired.toString());
    fs.stub = {};
  }
  recordCompiledLocked(fs, f, *blob, report);
  log("tinyvm: tier-up " + f->name + " v" + std::to_string(f->version) + " after " +
      std::to_string(fs.tier0Calls.load()) + " call(s): " + std::to_string(report.codeSize) + " bytes at " +
      hex(blob->code) + ", " + std::to_string(report.sites) + " site(s)");
  return fs.code.code;
}

Status Vm::compileNow(uint32_t index) {
  if (index >= functionCount()) return Status(Error::kInvalidArgument, "tinyvm: no function #" + std::to_string(index));
  std::unique_lock<std::mutex> lock = lockOffline();
  if (tierUpLocked(index) == nullptr) {
    return Status(Error::kEmitFailed, "tinyvm: '" + fns_[index].current.load()->name + "' could not be compiled");
  }
  return Status::ok();
}

// The benchmark baseline: callees are compiled before their callers so every call that can
// be hard-wired is (a function calls itself through its own entry label). Calls inside a
// cycle of distinct functions cannot all be, and stay sites (counted as fallbacks).
Status Vm::compileAllHardwiredLocked() {
  uint32_t n = functionCount();
  std::vector<int> state(n, 0);  // 0 new, 1 visiting, 2 done
  std::vector<uint32_t> order;
  std::function<void(uint32_t)> visit = [&](uint32_t i) {
    state[i] = 1;
    for (const Instr& in : fns_[i].current.load()->code) {
      if (in.op == Op::kCall && in.a != i && state[in.a] == 0) visit(in.a);
    }
    state[i] = 2;
    order.push_back(i);
  };
  for (uint32_t i = 0; i < n; ++i) {
    if (state[i] == 0) visit(i);
  }
  for (uint32_t i : order) {
    FunctionState& fs = fns_[i];
    const Function* f = fs.current.load();
    JitEnv env{[this](uint32_t c) { return fns_[c].key; },
               [this](uint32_t c) -> const void* { return fns_[c].code.valid() ? fns_[c].code.code : nullptr; }};
    JitReport report;
    Result<patchcall::Blob> blob = jitCompile(rt_, *f, env, options_.jit, &report);
    if (!blob) return blob.status();
    Result<const void*> previous = rt_.update(fs.key, blob->code, kPublishLater);  // as in tierUpLocked
    if (!previous) return previous.status();
    PATCHCALL_TRY(rt_.retire(fs.stub));
    fs.stub = {};
    recordCompiledLocked(fs, f, *blob, report);
  }
  return Status::ok();
}

}  // namespace tinyvm
