// patchcall benchmarks — JIT loop builders, runtime setup, per-call counters, the busy peer.
#include "bench_support.h"

#include <sched.h>

namespace pcbench {

namespace x86 = asmjit::x86;
using patchcall::Status;

void reportPerItem(benchmark::State& state, const LoopClock& clock, uint64_t itemsPerIteration, const char* name) {
  double ns = clock.elapsedNs();
  auto items = static_cast<double>(state.iterations()) * static_cast<double>(itemsPerIteration);
  state.SetItemsProcessed(static_cast<int64_t>(items));
  state.counters[name] = items > 0 ? ns / items : 0;
}

void reportPerSite(benchmark::State& state, const LoopClock& clock, uint64_t sitesPerIteration) {
  double ns = clock.elapsedNs();
  auto sites = static_cast<double>(state.iterations()) * static_cast<double>(sitesPerIteration);
  state.counters["sites"] = static_cast<double>(sitesPerIteration);
  state.counters["ns_per_site"] = sites > 0 ? ns / sites : 0;
}

patchcall::Runtime* newRuntime(std::string* error, size_t arenaSize, bool backgroundReclaimer) {
  patchcall::Options o;
  o.arenaSize = arenaSize;
  o.backgroundReclaimer = backgroundReclaimer;
  o.sync = patchcall::SyncMethod::kMembarrier;  // the figures are about membarrier; fail loudly without it
  patchcall::Result<patchcall::Runtime> r = patchcall::Runtime::create(std::move(o));
  if (!r) {
    *error = "Runtime::create: " + r.status().toString();
    return nullptr;
  }
  if (!r->arenaInfo().nearText) {
    *error = "the arena landed out of rel32 reach of the executable: calls would go through veneers";
    return nullptr;
  }
  return new patchcall::Runtime(std::move(*r));
}

namespace {

bool check(asmjit::Error e, std::string* error) {
  if (e == asmjit::kErrorOk) return true;
  *error = std::string("asmjit: ") + asmjit::DebugUtils::errorAsString(e);
  return false;
}
bool check(const Status& s, std::string* error) {
  if (s.isOk()) return true;
  *error = s.toString();
  return false;
}

JitLoop installLoop(patchcall::jit::Assembler& a, std::string* error) {
  patchcall::Result<patchcall::Blob> blob = patchcall::jit::install(a);
  if (!blob) {
    *error = "jit::install: " + blob.status().toString();
    return nullptr;
  }
  return reinterpret_cast<JitLoop>(blob->code);
}

}  // namespace

JitLoop buildCallLoop(patchcall::Runtime& rt, const std::function<Status(patchcall::jit::Assembler&)>& emitCallInsn,
                      std::string* error, uint32_t* callBytes) {
  patchcall::jit::Assembler a(rt);
  asmjit::Label loop = a.newLabel();
  // rbx (callee-saved) counts; the push also leaves rsp 16-byte aligned at the call.
  if (!check(a.push(x86::rbx), error) || !check(a.mov(x86::rbx, x86::rdi), error) ||
      !check(a.xor_(x86::eax, x86::eax), error) || !check(a.align(asmjit::AlignMode::kCode, 64), error) ||
      !check(a.bind(loop), error) || !check(a.mov(x86::rdi, x86::rax), error)) {
    return nullptr;
  }
  size_t before = a.offset();
  if (!check(emitCallInsn(a), error)) return nullptr;
  if (callBytes != nullptr) *callBytes = static_cast<uint32_t>(a.offset() - before);
  if (!check(a.sub(x86::rbx, 1), error) || !check(a.jnz(loop), error) || !check(a.pop(x86::rbx), error) ||
      !check(a.ret(), error)) {
    return nullptr;
  }
  return installLoop(a, error);
}

JitLoop buildArithmeticLoop(patchcall::Runtime& rt, bool withPoll, std::string* error) {
  patchcall::jit::Assembler a(rt);
  asmjit::Label loop = a.newLabel();
  // acc (rax) goes through four dependent ALU ops per iteration, as a compiled loop body would;
  // the poll's load and compare are independent of it.
  if (!check(a.push(x86::rbx), error) || !check(a.mov(x86::rcx, x86::rdi), error) ||
      !check(a.xor_(x86::eax, x86::eax), error) || !check(a.mov(x86::edx, 1), error) ||
      !check(a.align(asmjit::AlignMode::kCode, 64), error) || !check(a.bind(loop), error) ||
      !check(a.add(x86::rax, x86::rcx), error) || !check(a.add(x86::rdx, x86::rax), error) ||
      !check(a.xor_(x86::rax, x86::rdx), error) || !check(a.add(x86::rax, 7), error)) {
    return nullptr;
  }
  if (withPoll && !check(patchcall::jit::emitSafepointPoll(a), error)) return nullptr;
  if (!check(a.sub(x86::rcx, 1), error) || !check(a.jnz(loop), error) || !check(a.pop(x86::rbx), error) ||
      !check(a.ret(), error)) {
    return nullptr;
  }
  return installLoop(a, error);
}

bool emitSiteBlob(patchcall::Runtime& rt, const patchcall::Key* keys, size_t keyCount, size_t count,
                  patchcall::SiteForm form, std::string* error) {
  patchcall::jit::Assembler a(rt);
  for (size_t i = 0; i < count; ++i) {
    // A breakpoint site is made unaligned on purpose: that is the case the protocol exists for.
    if (form == patchcall::SiteForm::kBreakpoint && (a.offset() + 1) % 4 == 0 && !check(a.nop(), error)) return false;
    if (!check(patchcall::jit::emitCall(a, keys[i % keyCount], form), error)) return false;
  }
  if (!check(a.ret(), error)) return false;
  return installLoop(a, error) != nullptr;
}

BusyPeer::BusyPeer() {
  thread_ = std::thread([this] {
    cpu_.store(sched_getcpu(), std::memory_order_relaxed);
    started_.store(true, std::memory_order_release);
    for (uint32_t i = 1; !stop_.load(std::memory_order_relaxed); ++i) {
      __builtin_ia32_pause();
      if ((i & 4095) == 0) cpu_.store(sched_getcpu(), std::memory_order_relaxed);
    }
  });
  while (!started_.load(std::memory_order_acquire)) sched_yield();
}

BusyPeer::~BusyPeer() {
  stop_.store(true, std::memory_order_relaxed);
  thread_.join();
}

}  // namespace pcbench
