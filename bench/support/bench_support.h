// patchcall benchmarks — shared pieces: callees, JIT loops, runtimes, a busy peer thread.
//
// Every call benchmark measures the same shape, `acc = f(acc)` repeated kCallsPerLoop times,
// so the figures differ only by how f is reached. The callee is the trivial pcbench_add1
// (lea rax,[rdi+1]; ret), defined in its own TU so no caller can inline it.
#pragma once

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "patchcall/static_call.h"

extern "C" uint64_t pcbench_add1(uint64_t x);
extern "C" uint64_t pcbench_add2(uint64_t x);
// The retpoline loop (support/retpoline_loop.cpp, built with -mindirect-branch=thunk).
extern "C" uint64_t pcbench_run_retpoline_loop(uint64_t (*fn)(uint64_t), uint64_t n);

namespace pcbench {

using CallTarget = uint64_t (*)(uint64_t);
using JitLoop = uint64_t (*)(uint64_t n);  // runs its body n times (n >= 1), returns acc

constexpr uint64_t kCallsPerLoop = 1000;

// Wall-clock time of a benchmark's timed loop: construct it right before
// `for (auto _ : state)`. Per-item counters are computed from it so they print as plain ns
// (Google Benchmark's inverted rate counters print with an "s" suffix).
class LoopClock {
 public:
  LoopClock() : start_(std::chrono::steady_clock::now()) {}
  double elapsedNs() const {
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// items processed, plus counter `name` = ns per item.
void reportPerItem(benchmark::State& state, const LoopClock& clock, uint64_t itemsPerIteration, const char* name);
inline void reportPerCall(benchmark::State& state, const LoopClock& clock, uint64_t calls) {
  reportPerItem(state, clock, calls, "ns_per_call");
}
// A batch: counters `sites` and `ns_per_site` (the per-batch time stays the main figure).
void reportPerSite(benchmark::State& state, const LoopClock& clock, uint64_t sitesPerIteration);

// A runtime for benchmarks: no background reclaimer thread (nothing is retired), so the only
// threads of the process are the ones a benchmark starts, unless `backgroundReclaimer` (the
// library's default, for figures about a runtime as embedders run it). Leaked on purpose:
// benchmarks share it across repetitions and it must outlive every JIT function they hold.
patchcall::Runtime* newRuntime(std::string* error, size_t arenaSize = size_t{64} << 20, bool backgroundReclaimer = false);

// Emits `uint64_t f(uint64_t n) { acc = 0; do acc = CALL(acc); while (--n); return acc; }`
// with the loop head 64-byte aligned; `emitCallInsn` emits the call (fixed, site, toggle...).
// `callBytes` receives how many bytes emitCallInsn emitted (5 for a call with no padding).
JitLoop buildCallLoop(patchcall::Runtime& rt, const std::function<patchcall::Status(patchcall::jit::Assembler&)>& emitCallInsn,
                      std::string* error, uint32_t* callBytes = nullptr);

// A hot loop of a few dependent adds per iteration, optionally with a safepoint poll.
JitLoop buildArithmeticLoop(patchcall::Runtime& rt, bool withPoll, std::string* error);

// Blob of `count` call sites of `form`, site i bound to keys[i % keys.size()]; never executed.
bool emitSiteBlob(patchcall::Runtime& rt, const patchcall::Key* keys, size_t keyCount, size_t count,
                  patchcall::SiteForm form, std::string* error);

// C++ loops of the same shape as the JIT loops (separate TUs, so nothing is inlined or
// devirtualized): through a function pointer, a virtual call, a StaticCall trampoline, and a
// function pointer compiled with -mindirect-branch=thunk (a retpoline).
struct Callee {
  virtual uint64_t call(uint64_t x) = 0;
  virtual ~Callee() = default;
};
Callee& addOneCallee();
uint64_t runPointerLoop(CallTarget fn, uint64_t n);
uint64_t runVirtualLoop(Callee& callee, uint64_t n);
uint64_t runStaticCallLoop(const patchcall::StaticCall<uint64_t(uint64_t)>& call, uint64_t n);

// A few hundred nanoseconds of register-only work: the body of every grace-period reader.
uint64_t readerWork(uint64_t seed);

// Keeps one other thread of this process running on another core (a JIT thread, in a real
// runtime), so membarrier(SYNC_CORE) and mprotect shootdowns really interrupt a core.
// Every sync-costing benchmark runs with one, so their figures compare like with like.
class BusyPeer {
 public:
  BusyPeer();
  ~BusyPeer();
  BusyPeer(const BusyPeer&) = delete;
  BusyPeer& operator=(const BusyPeer&) = delete;
  // The CPU the peer last ran on (sampled every few thousand spins): a sync only interrupts a
  // core when the peer is on another CPU than the caller, which a loaded machine may not allow.
  int cpu() const { return cpu_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int> cpu_{-1};
  std::atomic<bool> stop_{false};
  std::atomic<bool> started_{false};
  std::thread thread_;
};

}  // namespace pcbench
