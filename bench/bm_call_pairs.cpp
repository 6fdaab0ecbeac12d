// patchcall benchmarks — call costs that can fail: throughput-bound loops, sensitivity
// controls, interleaved pairs (issue 12).
//
// BM_CallPairs runs every call variant below in rounds inside one process, the order rotating
// each round; a round's figure for a variant is the fastest of kSamples runs, in TSC ticks per
// call (rdtsc/rdtscp, lfence-fenced). Each round gives one ratio per pair; the counters are the
// median and [min, max] of those ratios (pairs.h) plus each variant's median ticks and ns per
// call. scripts/bench-table judges the goals from them.
//
// Throughput loops (prefix none): kSlots independent calls per loop iteration, unrolled; each
// slot is `lea rdi,[rbp+i]` (the argument; rbp is 0, so no dependency between slots) and the
// call. The lea has one of four encodings (4 to 7 bytes, one simple-lea uop each) so that a
// patchcall Direct site needs exactly p bytes of NOP padding; every variant's slot starts at
// the same 4-aligned offsets and the loop head is 64-byte aligned:
//   direct      lea(7) + E8 rel32 hard-wired at emission (emitFixedCall)
//   site0..3    lea(7-p) + p NOP bytes + a patchcall Direct site (emitCall adds the padding)
//   toggle      lea(4) + a toggle site (66 90, call A, jmp +5, call B)
//   handle_jit  lea(7) + the typed handle's call sequence, `mov rax,[r12]; call rax` (r12 =
//               the key's target cell, as GCC compiles StaticCall::operator())
//   stub_jit    lea(7) + E8 to the key's `jmp rel32` trampoline stub
//   ctl_jmp     control: lea(5) + `jmp +0` (EB 00) + hard-wired call
//   ctl_nop5    control: lea(6) + 5-byte NOP (0F 1F 44 00 00) + hard-wired call
// A control differs from direct by one instruction; if it does not measure slower than direct,
// the loop cannot see that instruction and the goals it would decide are "cannot judge".
// Latency loops (prefix lat_ / cxx_): `acc = f(acc)` chains, as in bm_calls.cpp, for the rows
// that were always latency rows (retpoline) and the C++-from-.text typed handle.
// poll / nopoll: the arithmetic loop with and without the safepoint poll (bm_quiescence.cpp).
//
// BM_CallgrindCalls: for scripts/bench-callgrind only (filtered out of the normal suite by
// its name): runs each variant kCallgrindRuns times between callgrind client requests, one
// dump per variant, so callgrind's counts per call come out per variant.
#include <valgrind/callgrind.h>

#include <functional>
#include <string>
#include <vector>

#include "bench_support.h"
#include "pairs.h"

namespace {

namespace x86 = asmjit::x86;
using patchcall::Key;
using patchcall::SiteForm;
using patchcall::Status;
using patchcall::jit::Assembler;
using CallKey = patchcall::StaticCall<uint64_t(uint64_t)>;

constexpr uint32_t kSlots = 32;           // calls per throughput-loop iteration
constexpr uint64_t kTputIterations = 64;  // loop iterations per sample: 2048 calls
constexpr int kRounds = 200, kSamples = 20;
constexpr int kCallgrindRuns = 100;

Status embed(Assembler& a, std::initializer_list<uint8_t> bytes) {
  std::vector<uint8_t> v(bytes);
  asmjit::Error e = a.embed(v.data(), v.size());
  return e == asmjit::kErrorOk ? Status::ok() : Status(patchcall::Error::kEmitFailed, "asmjit embed failed");
}

// lea rdi,[rbp+i] in `len` bytes (4, 5, 6 or 7), one simple-lea uop whichever the length.
Status emitArg(Assembler& a, int len, uint8_t i) {
  switch (len) {
    case 4: return embed(a, {0x48, 0x8D, 0x7D, i});                    // REX.W, disp8
    case 5: return embed(a, {0x48, 0x8D, 0x7C, 0x25, i});              // REX.W, SIB (no index), disp8
    case 6: return embed(a, {0x8D, 0xBD, i, 0, 0, 0});                 // lea edi, disp32
    case 7: return embed(a, {0x48, 0x8D, 0xBD, i, 0, 0, 0});           // REX.W, disp32
    default: return Status(patchcall::Error::kInvalidArgument, "emitArg: length");
  }
}

using SlotFn = std::function<Status(Assembler&, uint8_t)>;

// uint64_t f(uint64_t n): n iterations of kSlots slots; returns the last call's result.
pcbench::JitLoop buildThroughputLoop(patchcall::Runtime& rt, const void* const* cell, const SlotFn& slot,
                                     std::string* error, uint32_t* slotBytes) {
  Assembler a(rt);
  asmjit::Label loop = a.newLabel();
  // Three pushes: rsp is 16-byte aligned at every call.
  a.push(x86::rbx);
  a.push(x86::rbp);
  a.push(x86::r12);
  a.mov(x86::rbx, x86::rdi);
  a.xor_(x86::ebp, x86::ebp);
  a.mov(x86::r12, reinterpret_cast<uint64_t>(cell));
  a.align(asmjit::AlignMode::kCode, 64);
  a.bind(loop);
  size_t start = a.offset();
  for (uint32_t i = 0; i < kSlots; ++i) {
    if (Status s = slot(a, static_cast<uint8_t>(i)); !s) {
      *error = s.toString();
      return nullptr;
    }
  }
  if (slotBytes != nullptr) *slotBytes = static_cast<uint32_t>((a.offset() - start) / kSlots);
  a.sub(x86::rbx, 1);
  a.jnz(loop);
  a.pop(x86::r12);
  a.pop(x86::rbp);
  a.pop(x86::rbx);
  a.ret();
  patchcall::Result<patchcall::Blob> blob = patchcall::jit::install(a);
  if (!blob) {
    *error = "jit::install: " + blob.status().toString();
    return nullptr;
  }
  return reinterpret_cast<pcbench::JitLoop>(blob->code);
}

struct Variant {
  std::string name;
  std::function<uint64_t()> run;  // one sample: `calls` calls
  uint64_t calls;
  uint64_t expect;  // run()'s result
  uint32_t slotBytes = 0;
};

struct PairsFixture {
  std::string error;
  patchcall::Runtime* rt = nullptr;
  CallKey* handle = nullptr;
  std::vector<Variant> variants;

  bool addTput(const char* name, const SlotFn& slot) {
    uint32_t bytes = 0;
    pcbench::JitLoop loop = buildThroughputLoop(*rt, cellOf(), slot, &error, &bytes);
    if (loop == nullptr) return false;
    variants.push_back({name, [loop] { return loop(kTputIterations); }, kTputIterations * kSlots, kSlots, bytes});
    return true;
  }
  const void* const* cellOf() {
    patchcall::Result<const void* const*> c = rt->targetCell(handle->key());
    return c ? *c : nullptr;
  }

  PairsFixture() {
    rt = pcbench::newRuntime(&error);
    if (rt == nullptr) return;
    const void* add1 = reinterpret_cast<const void*>(&pcbench_add1);
    patchcall::Result<Key> siteKey = rt->createKey(add1, "bench.pairs.site");
    patchcall::Result<CallKey> h = CallKey::create(*rt, &pcbench_add1, "bench.pairs.handle");
    if (!siteKey || !h) {
      error = "createKey: " + (!siteKey ? siteKey.status() : h.status()).toString();
      return;
    }
    handle = new CallKey(std::move(*h));
    Key key = *siteKey;
    const void* stub = reinterpret_cast<const void*>(handle->trampoline());
    auto fixed = [add1](int argLen) {
      return [add1, argLen](Assembler& a, uint8_t i) {
        PATCHCALL_TRY(emitArg(a, argLen, i));
        return patchcall::jit::emitFixedCall(a, add1);
      };
    };
    if (!addTput("direct", fixed(7))) return;
    for (int p = 0; p <= 3; ++p) {
      std::string name = "site" + std::to_string(p);
      bool ok = addTput(name.c_str(), [key, p](Assembler& a, uint8_t i) {
        PATCHCALL_TRY(emitArg(a, 7 - p, i));
        size_t before = a.offset();
        PATCHCALL_TRY(patchcall::jit::emitCall(a, key, SiteForm::kDirect));
        if (a.offset() - before != static_cast<size_t>(5 + p)) {
          return Status(patchcall::Error::kInvalidArgument, "site" + std::to_string(p) + ": emitCall padded " +
                                                                std::to_string(a.offset() - before - 5) + " bytes");
        }
        return Status::ok();
      });
      if (!ok) return;
    }
    if (!addTput("toggle", [key](Assembler& a, uint8_t i) {
          PATCHCALL_TRY(emitArg(a, 4, i));
          return patchcall::jit::emitCall(a, key, SiteForm::kToggle);
        }))
      return;
    if (!addTput("handle_jit", [](Assembler& a, uint8_t i) {
          PATCHCALL_TRY(emitArg(a, 7, i));
          a.mov(x86::rax, x86::ptr(x86::r12));
          a.call(x86::rax);
          return Status::ok();
        }))
      return;
    if (!addTput("stub_jit", [stub](Assembler& a, uint8_t i) {
          PATCHCALL_TRY(emitArg(a, 7, i));
          return patchcall::jit::emitFixedCall(a, stub);
        }))
      return;
    if (!addTput("ctl_jmp", [add1](Assembler& a, uint8_t i) {
          PATCHCALL_TRY(emitArg(a, 5, i));
          PATCHCALL_TRY(embed(a, {0xEB, 0x00}));
          return patchcall::jit::emitFixedCall(a, add1);
        }))
      return;
    if (!addTput("ctl_nop5", [add1](Assembler& a, uint8_t i) {
          PATCHCALL_TRY(emitArg(a, 6, i));
          PATCHCALL_TRY(embed(a, {0x0F, 0x1F, 0x44, 0x00, 0x00}));
          return patchcall::jit::emitFixedCall(a, add1);
        }))
      return;

    // Latency chains (acc = f(acc)), the shape of bm_calls.cpp.
    using pcbench::kCallsPerLoop;
    auto latJit = [&](const char* name, const std::function<Status(Assembler&)>& call) {
      pcbench::JitLoop loop = pcbench::buildCallLoop(*rt, call, &error);
      if (loop == nullptr) return false;
      variants.push_back({name, [loop] { return loop(kCallsPerLoop); }, kCallsPerLoop, kCallsPerLoop});
      return true;
    };
    if (!latJit("lat_direct", [add1](Assembler& a) { return patchcall::jit::emitFixedCall(a, add1); }) ||
        !latJit("lat_site", [key](Assembler& a) { return patchcall::jit::emitCall(a, key, SiteForm::kDirect); }) ||
        !latJit("lat_toggle", [key](Assembler& a) { return patchcall::jit::emitCall(a, key, SiteForm::kToggle); })) {
      return;
    }
    const CallKey* hp = handle;
    pcbench::CallTarget stubFn = handle->trampoline(), fn = &pcbench_add1;
    pcbench::Callee* callee = &pcbench::addOneCallee();
    variants.push_back({"cxx_handle", [hp] { return pcbench::runStaticCallLoop(*hp, kCallsPerLoop); }, kCallsPerLoop, kCallsPerLoop});
    variants.push_back({"cxx_stub", [stubFn] { return pcbench::runPointerLoop(stubFn, kCallsPerLoop); }, kCallsPerLoop, kCallsPerLoop});
    variants.push_back({"fnptr", [fn] { return pcbench::runPointerLoop(fn, kCallsPerLoop); }, kCallsPerLoop, kCallsPerLoop});
    variants.push_back({"virtual", [callee] { return pcbench::runVirtualLoop(*callee, kCallsPerLoop); }, kCallsPerLoop, kCallsPerLoop});
    variants.push_back({"retpoline", [fn] { return pcbench_run_retpoline_loop(fn, kCallsPerLoop); }, kCallsPerLoop, kCallsPerLoop});

    // The safepoint poll loop pair (the thread is registered while BM_CallPairs runs).
    pcbench::JitLoop noPoll = pcbench::buildArithmeticLoop(*rt, false, &error);
    pcbench::JitLoop withPoll = noPoll == nullptr ? nullptr : pcbench::buildArithmeticLoop(*rt, true, &error);
    if (withPoll == nullptr) return;
    uint64_t want = noPoll(1000);
    variants.push_back({"nopoll", [noPoll] { return noPoll(1000); }, 1000, want});
    variants.push_back({"poll", [withPoll] { return withPoll(1000); }, 1000, want});
  }

  const Variant* find(const std::string& name) const {
    for (const Variant& v : variants) {
      if (v.name == name) return &v;
    }
    return nullptr;
  }
};

PairsFixture& fixture() {
  static PairsFixture* f = new PairsFixture();  // leaked: JIT code must outlive every run
  return *f;
}

// Every variant once outside the timing: each must return what its calls compute.
bool verified(benchmark::State& state, const PairsFixture& f) {
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return false;
  }
  for (const Variant& v : f.variants) {
    if (uint64_t got = v.run(); got != v.expect) {
      state.SkipWithError((v.name + " returned " + std::to_string(got) + ", expected " + std::to_string(v.expect) +
                           ": it does not call pcbench_add1 as built")
                              .c_str());
      return false;
    }
  }
  return true;
}

// (pair name, A, B): the ratios bench-table reads.
const char* const kPairs[][3] = {
    {"site0/direct", "site0", "direct"},       {"site1/direct", "site1", "direct"},
    {"site2/direct", "site2", "direct"},       {"site3/direct", "site3", "direct"},
    {"toggle/site0", "toggle", "site0"},       {"handle_jit/direct", "handle_jit", "direct"},
    {"stub_jit/direct", "stub_jit", "direct"}, {"ctl_jmp/direct", "ctl_jmp", "direct"},
    {"ctl_nop5/direct", "ctl_nop5", "direct"}, {"lat_site/lat_direct", "lat_site", "lat_direct"},
    {"lat_toggle/lat_site", "lat_toggle", "lat_site"}, {"cxx_handle/lat_direct", "cxx_handle", "lat_direct"},
    {"cxx_stub/lat_direct", "cxx_stub", "lat_direct"}, {"retpoline/lat_site", "retpoline", "lat_site"},
    {"fnptr/lat_direct", "fnptr", "lat_direct"},       {"virtual/lat_direct", "virtual", "lat_direct"},
    {"poll/nopoll", "poll", "nopoll"},
};

void BM_CallPairs(benchmark::State& state) {
  PairsFixture& f = fixture();
  if (!verified(state, f)) return;
  patchcall::Result<patchcall::ThreadScope> scope = f.rt->registerThread("bench-pairs");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  const size_t n = f.variants.size();
  std::vector<std::vector<double>> ticks(n);  // [variant][round] ticks per call
  double perNs = pcbench::tscPerNs();
  for (auto _ : state) {
    pcbench::rotatingRounds(
        n, kRounds, kSamples, ticks, [&](size_t k) { return f.variants[k].run(); }, [&](size_t k) { return f.variants[k].calls; });
  }
  state.counters["tsc_per_ns"] = perNs;
  for (size_t k = 0; k < n; ++k) {
    double med = pcbench::median(ticks[k]);
    state.counters[f.variants[k].name + ".tsc"] = med;
    state.counters[f.variants[k].name + ".ns"] = med / perNs;
    if (f.variants[k].slotBytes != 0) state.counters[f.variants[k].name + ".slot_bytes"] = f.variants[k].slotBytes;
  }
  for (const auto& p : kPairs) {
    const Variant *a = f.find(p[1]), *b = f.find(p[2]);
    if (a == nullptr || b == nullptr) continue;
    pcbench::reportPairRatios(state, p[0], ticks[static_cast<size_t>(a - f.variants.data())],
                              ticks[static_cast<size_t>(b - f.variants.data())]);
  }
}

// For scripts/bench-callgrind: one callgrind dump per variant, named after it, each holding
// kCallgrindRuns runs (the dump's counts divided by `calls` are per call).
void BM_CallgrindCalls(benchmark::State& state) {
  PairsFixture& f = fixture();
  if (!verified(state, f)) return;
  patchcall::Result<patchcall::ThreadScope> scope = f.rt->registerThread("bench-callgrind");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  for (auto _ : state) {
    for (const Variant& v : f.variants) {
      std::string name = v.name + " calls=" + std::to_string(v.calls * kCallgrindRuns);
      CALLGRIND_ZERO_STATS;
      for (int i = 0; i < kCallgrindRuns; ++i) benchmark::DoNotOptimize(v.run());
      CALLGRIND_DUMP_STATS_AT(name.c_str());
    }
  }
  state.counters["on_valgrind"] = RUNNING_ON_VALGRIND ? 1 : 0;
}

}  // namespace

BENCHMARK(BM_CallPairs)->UseRealTime()->Iterations(1);
BENCHMARK(BM_CallgrindCalls)->UseRealTime()->Iterations(1);
