// tinyvm — hot reload: redefine functions while threads run them.
//
// For each redefined function that has compiled code: install a fresh stub for the new
// definition, then retarget all those keys in one Runtime::updateBatch (one cross-core
// sync for the lot), then retire the old code. A thread that is inside old code finishes
// that activation there (its stack pins the blob); its next call through any site lands
// on the new stub. A function still in tier 0 keeps its stub, which reads the new
// definition on its next call.
#include <chrono>

#include "compiler.h"
#include "vm_internal.h"

namespace tinyvm {

using patchcall::Error;
using patchcall::Status;

ReloadResult Vm::reload(const Module& module) {
  ReloadResult out;
  if (options_.jit.calls == CallMode::kHardwired) {
    out.status = Status(Error::kInvalidArgument, "tinyvm: hard-wired calls cannot follow a reload (use call sites)");
    return out;
  }
  auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock = lockOffline();
  Outcome<CompiledModule> compiled = compile(module, &program_);
  if (!compiled.isOk()) {
    out.diagnostic = compiled.error.toString();
    out.status = Status(Error::kInvalidArgument, "tinyvm: reload rejected: " + out.diagnostic);
    return out;
  }
  const Program& next = compiled.value->program;
  if (next.functions.size() > kMaxFunctions) {
    out.status = Status(Error::kInvalidArgument, "tinyvm: reload would exceed " + std::to_string(kMaxFunctions) + " functions");
    return out;
  }
  // New functions first: redefined code may call them.
  const uint32_t oldCount = functionCount();
  for (uint32_t i = oldCount; i < next.functions.size(); ++i) {
    out.status = addFunctionLocked(next.functions[i]);
    if (!out.status) return out;
  }
  std::vector<patchcall::KeyUpdate> updates;
  std::vector<uint32_t> retargeted;
  std::vector<patchcall::Blob> freshStubs;
  for (uint32_t i : compiled.value->defined) {
    FunctionState& fs = fns_[i];
    if (i >= oldCount || !fs.code.valid()) continue;  // new, or tier 0: the stub reads `current`
    patchcall::Result<patchcall::Blob> stub = installStubLocked(i);
    if (!stub) {
      for (const patchcall::Blob& s : freshStubs) (void)rt_.retire(s);
      out.status = stub.status();
      return out;
    }
    freshStubs.push_back(*stub);
    updates.push_back({fs.key, stub->code});
    retargeted.push_back(i);
  }
  // Publish the new definitions, then move the keys: a stub reached before the batch runs
  // the new definition too, which is what a caller of the new program expects.
  std::vector<const Function*> previous;
  for (uint32_t i : compiled.value->defined) {
    if (i >= oldCount) continue;
    versions_.push_back(next.functions[i]);
    previous.push_back(fns_[i].current.load(std::memory_order_relaxed));
    fns_[i].tier0Calls.store(0, std::memory_order_relaxed);
    fns_[i].current.store(next.functions[i].get(), std::memory_order_release);
  }
  out.status = rt_.updateBatch(updates);
  if (!out.status) {
    // Nothing was written (updateBatch validates first): put the old definitions back.
    // (A tier-0 call in this window may have run a new definition; the new functions stay.)
    size_t k = 0;
    for (uint32_t i : compiled.value->defined) {
      if (i < oldCount) fns_[i].current.store(previous[k++], std::memory_order_release);
    }
    for (const patchcall::Blob& s : freshStubs) (void)rt_.retire(s);
    return out;
  }
  for (size_t k = 0; k < retargeted.size(); ++k) {
    FunctionState& fs = fns_[retargeted[k]];
    Status retired = rt_.retire(fs.code);
    if (!retired) log("tinyvm: retiring old code of '" + next.functions[retargeted[k]]->name + "' failed: " + retired.toString());
    fs.code = {};
    fs.compiledVersion = nullptr;
    fs.stub = freshStubs[k];
  }
  program_ = next;
  out.redefined = compiled.value->defined;
  out.micros = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
  counters_->reloads.fetch_add(1);
  counters_->functionsRedefined.fetch_add(out.redefined.size());
  for (uint32_t i : out.redefined) {
    const Function& f = *next.functions[i];
    log("tinyvm: reload " + f.name + " -> v" + std::to_string(f.version) + (f.version == 1 ? " (new)" : ""));
  }
  if (options_.tiering == Tiering::kEager) {
    for (uint32_t i : out.redefined) (void)tierUpLocked(i);
  }
  return out;
}

}  // namespace tinyvm
