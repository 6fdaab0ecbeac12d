// tinyvm — Vm: creation, the function table, calls from C++, introspection.
#include <cstdio>

#include "jit/backend.h"
#include "vm_internal.h"

namespace tinyvm {

using patchcall::Error;
using patchcall::Result;
using patchcall::Status;

Vm::Vm(patchcall::Runtime rt, VmOptions options)
    : rt_(std::move(rt)),
      options_(std::move(options)),
      fns_(new FunctionState[kMaxFunctions]),
      counters_(std::make_unique<Counters>()) {}

Vm::~Vm() = default;

Result<std::unique_ptr<Vm>> Vm::create(const Program& program, VmOptions options) {
  if (program.functions.size() > kMaxFunctions) {
    return Status(Error::kInvalidArgument, "tinyvm: more than " + std::to_string(kMaxFunctions) + " functions");
  }
  if (options.tiering == Tiering::kThreshold && options.threshold == 0) options.tiering = Tiering::kLazy;
  // Refused here, not at the first compile: a function whose JIT fails stays interpreted, so
  // a form this ISA lacks would otherwise run silently without JIT code.
  if (!jit::siteFormAvailable(options.jit.siteForm)) {
    return Status(Error::kInvalidArgument, std::string("tinyvm: ") + jit::siteFormUnavailableWhy());
  }
  Result<patchcall::Runtime> rt = patchcall::Runtime::create(options.runtime);
  if (!rt) return rt.status();
  std::unique_ptr<Vm> vm(new Vm(std::move(*rt), std::move(options)));
  std::unique_lock<std::mutex> lock(vm->mutex_);
  vm->program_ = program;
  for (const auto& f : program.functions) PATCHCALL_TRY(vm->addFunctionLocked(f));
  if (vm->options_.jit.calls == CallMode::kHardwired) {
    PATCHCALL_TRY(vm->compileAllHardwiredLocked());
  } else if (vm->options_.tiering == Tiering::kEager) {
    for (uint32_t i = 0; i < vm->functionCount(); ++i) {
      if (vm->tierUpLocked(i) == nullptr) {
        return Status(Error::kEmitFailed, "tinyvm: eager compilation of '" + program.functions[i]->name + "' failed");
      }
    }
  }
  return vm;
}

// A stub, then a key targeting it; the function becomes visible to callers last.
Status Vm::addFunctionLocked(const std::shared_ptr<const Function>& f) {
  uint32_t index = count_.load(std::memory_order_relaxed);
  if (f->index != index) return Status(Error::kInvalidArgument, "tinyvm: function table out of order");
  if (index >= kMaxFunctions) return Status(Error::kInvalidArgument, "tinyvm: too many functions");
  FunctionState& fs = fns_[index];
  versions_.push_back(f);
  fs.current.store(f.get(), std::memory_order_release);
  Result<patchcall::Blob> stub = installStubLocked(index);
  if (!stub) return stub.status();
  Result<patchcall::Key> key = rt_.createKey(stub->code, f->name);
  if (!key) return key.status();
  Result<const void*> tramp = rt_.trampoline(*key);
  if (!tramp) return tramp.status();
  fs.key = *key;
  fs.trampoline = *tramp;
  fs.stub = *stub;
  count_.store(index + 1, std::memory_order_release);
  return Status::ok();
}

std::unique_lock<std::mutex> Vm::lockOffline() const {
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) {
    // Blocking here must not hold up grace periods (the holder may be waiting for one).
    patchcall::OfflineScope offline;
    lock.lock();
  }
  return lock;
}

Result<patchcall::ThreadScope> Vm::attachThread(std::string_view name) { return rt_.registerThread(name); }

int64_t Vm::callThroughKey(uint32_t index, const int64_t* args, uint32_t argc) {
  int64_t a[kMaxParams] = {};
  for (uint32_t i = 0; i < argc; ++i) a[i] = args[i];
  auto entry = reinterpret_cast<Entry6>(const_cast<void*>(fns_[index].trampoline));
  return entry(a[0], a[1], a[2], a[3], a[4], a[5]);
}

Result<int64_t> Vm::call(uint32_t index, std::span<const int64_t> args) {
  if (!patchcall::isThreadRegistered()) {
    return Status(Error::kNotRegistered, "tinyvm: attach the thread (Vm::attachThread) before running code");
  }
  if (index >= functionCount()) return Status(Error::kInvalidArgument, "tinyvm: no function #" + std::to_string(index));
  const Function* f = fns_[index].current.load(std::memory_order_acquire);
  if (args.size() != f->arity) {
    return Status(Error::kInvalidArgument, "tinyvm: '" + f->name + "' takes " + std::to_string(f->arity) +
                                               " arguments, " + std::to_string(args.size()) + " given");
  }
  return callThroughKey(index, args.data(), static_cast<uint32_t>(args.size()));
}

Result<int64_t> Vm::call(std::string_view name, std::span<const int64_t> args) {
  std::optional<uint32_t> index;
  {
    std::unique_lock<std::mutex> lock = lockOffline();
    index = program_.find(name);
  }
  if (!index) return Status(Error::kInvalidArgument, "tinyvm: no function named '" + std::string(name) + "'");
  return call(*index, args);
}

Program Vm::program() const {
  std::unique_lock<std::mutex> lock = lockOffline();
  return program_;
}

FunctionInfo Vm::info(uint32_t index) const {
  std::unique_lock<std::mutex> lock = lockOffline();
  FunctionInfo out;
  if (index >= functionCount()) return out;
  const FunctionState& fs = fns_[index];
  const Function* f = fs.current.load(std::memory_order_acquire);
  out.name = f->name;
  out.version = f->version;
  out.tier = fs.code.valid() ? 1 : 0;
  out.key = fs.key;
  out.trampoline = fs.trampoline;
  Result<const void*> target = rt_.target(fs.key);
  out.target = target ? *target : nullptr;
  out.stub = fs.stub.valid() ? fs.stub.code : nullptr;
  out.code = fs.code.valid() ? fs.code.code : nullptr;
  out.tier0Calls = fs.tier0Calls.load(std::memory_order_relaxed);
  if (fs.code.valid()) {
    for (uint32_t off : fs.siteOffsets) out.sites.push_back(static_cast<const uint8_t*>(fs.code.code) + off);
  }
  return out;
}

VmStats Vm::stats() const {
  const Counters& c = *counters_;
  VmStats s;
  s.stubsInstalled = c.stubsInstalled.load();
  s.compiles = c.compiles.load();
  s.interpretedCalls = c.interpretedCalls.load();
  s.reloads = c.reloads.load();
  s.functionsRedefined = c.functionsRedefined.load();
  s.jitFailures = c.jitFailures.load();
  s.sites = c.sites.load();
  s.fixedCalls = c.fixedCalls.load();
  s.hardwiredFallbacks = c.hardwiredFallbacks.load();
  s.polls = c.polls.load();
  s.codeBytes = c.codeBytes.load();
  return s;
}

void Vm::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

}  // namespace tinyvm
