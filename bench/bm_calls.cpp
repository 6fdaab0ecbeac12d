// patchcall benchmarks — the cost of one call, by how it reaches its callee (issues 2 and 4).
//
// Every benchmark runs kCallsPerLoop calls of `acc = pcbench_add1(acc)` per iteration and
// reports `ns_per_call`. The JIT loops (Direct, Site, ToggleSite) are byte-for-byte the same
// code around the call instruction; only the call differs:
//   BM_Call_Direct      E8 rel32 hard-wired at emission (jit::emitFixedCall)
//   BM_Call_Site        E8 rel32 of a patchcall Direct site (4-byte aligned rel32)
//   BM_Call_ToggleSite  the dual-call toggle: 2-byte nop/jmp + call A, jmp over call B
// The C++ loops have the same shape:
//   BM_Call_Trampoline      the typed handle, StaticCall::operator() (an indirect call through
//                           the key's target cell)
//   BM_Call_TrampolineStub  the key's raw `jmp rel32` stub, StaticCall::trampoline(), called
//                           through a function pointer (indirect call + jmp)
//   BM_Call_FunctionPointer, BM_Call_Virtual, and BM_Call_Retpoline (a function pointer in a TU
//                           built with -mindirect-branch=thunk)
// These loops are latency-bound (each call waits for the previous result): they cannot see an
// extra NOP or taken branch. The goal rows come from bm_call_pairs.cpp (throughput loops,
// sensitivity controls, interleaved rounds) through scripts/bench-table.
#include <string>

#include "bench_support.h"

namespace {

using patchcall::Key;
using patchcall::SiteForm;
using pcbench::JitLoop;
using pcbench::kCallsPerLoop;
using CallKey = patchcall::StaticCall<uint64_t(uint64_t)>;

// The Direct and Site loops must be the same bytes but for the call's rel32: same layout and
// alignment, so their difference is the call itself. The loop head is at 64.
std::string differenceBeyondRel32(const uint8_t* direct, const uint8_t* site) {
  size_t call = 64;
  while (call < 80 && direct[call] != 0xE8) ++call;
  size_t end = call + 5 + 8;  // the call, sub rbx,1 (4), jnz rel8 (2), pop rbx (1), ret (1)
  for (size_t i = 0; i < end; ++i) {
    if (i > call && i <= call + 4) continue;
    if (direct[i] != site[i]) {
      return "the Direct and Site loops differ at byte " + std::to_string(i) + " (call at " + std::to_string(call) +
             "): the comparison would not isolate the call";
    }
  }
  return "";
}

struct CallFixture {
  std::string error;
  patchcall::Runtime* rt = nullptr;
  JitLoop direct = nullptr, site = nullptr, toggle = nullptr;
  uint32_t directBytes = 0, siteBytes = 0, toggleBytes = 0;
  CallKey* trampoline = nullptr;

  CallFixture() {
    rt = pcbench::newRuntime(&error);
    if (rt == nullptr) return;
    const void* add1 = reinterpret_cast<const void*>(&pcbench_add1);
    patchcall::Result<Key> siteKey = rt->createKey(add1, "bench.site");
    patchcall::Result<Key> toggleKey = rt->createKey(add1, "bench.toggle");
    patchcall::Result<CallKey> tramp = CallKey::create(*rt, &pcbench_add1, "bench.trampoline");
    if (!siteKey || !toggleKey || !tramp) {
      error = "createKey: " + (!siteKey ? siteKey.status() : !toggleKey ? toggleKey.status() : tramp.status()).toString();
      return;
    }
    trampoline = new CallKey(std::move(*tramp));
    direct = pcbench::buildCallLoop(
        *rt, [&](patchcall::jit::Assembler& a) { return patchcall::jit::emitFixedCall(a, add1); }, &error, &directBytes);
    if (direct == nullptr) return;
    site = pcbench::buildCallLoop(
        *rt, [&](patchcall::jit::Assembler& a) { return patchcall::jit::emitCall(a, *siteKey, SiteForm::kDirect); }, &error,
        &siteBytes);
    if (site == nullptr) return;
    error = differenceBeyondRel32(reinterpret_cast<const uint8_t*>(direct), reinterpret_cast<const uint8_t*>(site));
    if (!error.empty()) return;
    toggle = pcbench::buildCallLoop(
        *rt, [&](patchcall::jit::Assembler& a) { return patchcall::jit::emitCall(a, *toggleKey, SiteForm::kToggle); },
        &error, &toggleBytes);
  }
};

CallFixture& fixture() {
  static CallFixture* f = new CallFixture();  // leaked: JIT code must outlive every run
  return *f;
}

// Runs the loop once outside the timing to prove it calls pcbench_add1 kCallsPerLoop times.
template <typename Loop>
bool verified(benchmark::State& state, Loop&& loop) {
  if (uint64_t got = loop(); got != kCallsPerLoop) {
    state.SkipWithError(("the loop returned " + std::to_string(got) + ", expected " + std::to_string(kCallsPerLoop) +
                         ": it does not call pcbench_add1 once per iteration")
                            .c_str());
    return false;
  }
  return true;
}

template <typename Loop>
void runCalls(benchmark::State& state, Loop&& loop) {
  if (!verified(state, loop)) return;
  pcbench::LoopClock clock;
  for (auto _ : state) benchmark::DoNotOptimize(loop());
  pcbench::reportPerCall(state, clock, kCallsPerLoop);
}

void runJitLoop(benchmark::State& state, JitLoop CallFixture::*which, uint32_t CallFixture::*bytes) {
  CallFixture& f = fixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  JitLoop loop = f.*which;
  // Bytes of the call: 5 for Direct and Site (the loop puts the site's rel32 at an aligned
  // offset, so it needs no NOP and the two loops are identical but for the rel32 value).
  state.counters["call_bytes"] = f.*bytes;
  runCalls(state, [loop] { return loop(kCallsPerLoop); });
}

void BM_Call_Direct(benchmark::State& state) { runJitLoop(state, &CallFixture::direct, &CallFixture::directBytes); }
void BM_Call_Site(benchmark::State& state) { runJitLoop(state, &CallFixture::site, &CallFixture::siteBytes); }
void BM_Call_ToggleSite(benchmark::State& state) { runJitLoop(state, &CallFixture::toggle, &CallFixture::toggleBytes); }

void BM_Call_Trampoline(benchmark::State& state) {
  CallFixture& f = fixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  const CallKey& call = *f.trampoline;
  runCalls(state, [&call] { return pcbench::runStaticCallLoop(call, kCallsPerLoop); });
}

void BM_Call_TrampolineStub(benchmark::State& state) {
  CallFixture& f = fixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  pcbench::CallTarget stub = f.trampoline->trampoline();
  benchmark::DoNotOptimize(stub);
  runCalls(state, [stub] { return pcbench::runPointerLoop(stub, kCallsPerLoop); });
}

void BM_Call_FunctionPointer(benchmark::State& state) {
  pcbench::CallTarget fn = &pcbench_add1;
  benchmark::DoNotOptimize(fn);
  runCalls(state, [fn] { return pcbench::runPointerLoop(fn, kCallsPerLoop); });
}

void BM_Call_Virtual(benchmark::State& state) {
  pcbench::Callee* callee = &pcbench::addOneCallee();
  benchmark::DoNotOptimize(callee);
  runCalls(state, [callee] { return pcbench::runVirtualLoop(*callee, kCallsPerLoop); });
}

void BM_Call_Retpoline(benchmark::State& state) {
  pcbench::CallTarget fn = &pcbench_add1;
  benchmark::DoNotOptimize(fn);
  runCalls(state, [fn] { return pcbench_run_retpoline_loop(fn, kCallsPerLoop); });
}

}  // namespace

BENCHMARK(BM_Call_Direct)->UseRealTime();
BENCHMARK(BM_Call_Site)->UseRealTime();
BENCHMARK(BM_Call_ToggleSite)->UseRealTime();
BENCHMARK(BM_Call_Trampoline)->UseRealTime();
BENCHMARK(BM_Call_TrampolineStub)->UseRealTime();
BENCHMARK(BM_Call_FunctionPointer)->UseRealTime();
BENCHMARK(BM_Call_Virtual)->UseRealTime();
BENCHMARK(BM_Call_Retpoline)->UseRealTime();
