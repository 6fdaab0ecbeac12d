// patchcall benchmarks — quiescence (issue 3).
//   BM_Safepoint           one patchcall::safepoint() on a registered thread (fast path)
//   BM_Loop_NoPoll         a JIT hot loop: four dependent ALU ops per iteration
//   BM_SafepointPoll_Loop  the same loop plus jit::emitSafepointPoll (cmp byte [rip+flag],0; jne)
//   BM_GracePeriod/N       one Runtime::synchronize() while N registered readers loop
//                          { readerWork(); safepoint(); } (the same readers as BM_Urcu_GracePeriod)
//   BM_SafepointSlowPath   one poll whose slow path is taken (the flag held armed by a grace
//                          period another thread waits for). full:0 is a thread that already
//                          acknowledged (what every poll of a hot loop costs until the grace
//                          period ends); full:1 runs the stub's whole save/call/restore (the
//                          polling thread is offline, so the C++ side returns at once: the
//                          figure is the stub's cost without the acknowledgement's own work);
//                          avx512_live:1 keeps zmm0-31 and k1-7 in use, so XSAVEC saves them
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "bench_support.h"
#include "grace_readers.h"

namespace {

constexpr uint64_t kLoopIterations = 1000;

struct PollFixture {
  std::string error;
  patchcall::Runtime* rt = nullptr;
  pcbench::JitLoop noPoll = nullptr, withPoll = nullptr;
  PollFixture() {
    rt = pcbench::newRuntime(&error);
    if (rt == nullptr) return;
    noPoll = pcbench::buildArithmeticLoop(*rt, false, &error);
    if (noPoll != nullptr) withPoll = pcbench::buildArithmeticLoop(*rt, true, &error);
  }
};

PollFixture& pollFixture() {
  static PollFixture* f = new PollFixture();  // leaked: JIT code must outlive every run
  return *f;
}

void BM_Safepoint(benchmark::State& state) {
  PollFixture& f = pollFixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  patchcall::Result<patchcall::ThreadScope> scope = f.rt->registerThread("bench-main");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  for (auto _ : state) patchcall::safepoint();
}

void runArithmeticLoop(benchmark::State& state, bool withPoll) {
  PollFixture& f = pollFixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  // Threads running JIT code with polls are registered (the poll's slow path reports to the domain).
  patchcall::Result<patchcall::ThreadScope> scope = f.rt->registerThread("bench-main");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  pcbench::JitLoop loop = withPoll ? f.withPoll : f.noPoll;
  if (f.withPoll(kLoopIterations) != f.noPoll(kLoopIterations)) {
    return state.SkipWithError("the loops with and without the poll compute different results");
  }
  pcbench::LoopClock clock;
  for (auto _ : state) benchmark::DoNotOptimize(loop(kLoopIterations));
  pcbench::reportPerItem(state, clock, kLoopIterations, "ns_per_iteration");
}

void BM_Loop_NoPoll(benchmark::State& state) { runArithmeticLoop(state, false); }
void BM_SafepointPoll_Loop(benchmark::State& state) { runArithmeticLoop(state, true); }

void BM_GracePeriod(benchmark::State& state) {
  std::string error;
  patchcall::Runtime* rt = pcbench::newRuntime(&error, size_t{1} << 20);
  if (rt == nullptr) return state.SkipWithError(error.c_str());
  std::unique_ptr<patchcall::Runtime> owner(rt);
  {
    pcbench::ReaderThreads readers(static_cast<int>(state.range(0)),
                                   [rt](const std::atomic<bool>& stop, std::atomic<int>& registered) -> std::string {
                                     patchcall::Result<patchcall::ThreadScope> scope = rt->registerThread("reader");
                                     if (!scope) return "registerThread: " + scope.status().toString();
                                     registered.fetch_add(1);
                                     pcbench::readerLoop(stop, [] { patchcall::safepoint(); });
                                     return "";
                                   });
    if (!readers.waitRegistered()) return state.SkipWithError(readers.error().c_str());
    for (auto _ : state) {
      if (patchcall::Status s = rt->synchronize(std::chrono::seconds(5)); !s) {
        state.SkipWithError(("synchronize: " + s.toString()).c_str());
        break;
      }
    }
  }  // readers unregister before the runtime goes
}

// uint64_t f(uint64_t n): n polls in a row; with `avx512Live`, zmm0-31 and k1-7 are made
// non-zero first, so XSAVE's init optimization cannot skip them.
pcbench::JitLoop buildPollLoop(patchcall::Runtime& rt, bool avx512Live, std::string* error) {
  namespace x86 = asmjit::x86;
  patchcall::jit::Assembler a(rt);
  if (avx512Live) {
    for (uint32_t i = 0; i < 32; ++i) a.vpternlogd(x86::zmm(i), x86::zmm(i), x86::zmm(i), 0xff);
    for (uint32_t i = 1; i < 8; ++i) a.kxnorw(x86::k(i), x86::k(i), x86::k(i));
  }
  asmjit::Label loop = a.newLabel();
  a.mov(x86::rcx, x86::rdi);
  a.align(asmjit::AlignMode::kCode, 64);
  a.bind(loop);
  if (patchcall::Status s = patchcall::jit::emitSafepointPoll(a); !s) {
    *error = s.toString();
    return nullptr;
  }
  a.sub(x86::rcx, 1);
  a.jnz(loop);
  if (avx512Live) a.vzeroupper();  // zmm16-31 stay in use; the C++ caller needs no transition penalty
  a.mov(x86::rax, x86::rdi);
  a.ret();
  patchcall::Result<patchcall::Blob> blob = patchcall::jit::install(a);
  if (!blob) {
    *error = "jit::install: " + blob.status().toString();
    return nullptr;
  }
  return reinterpret_cast<pcbench::JitLoop>(blob->code);
}

// Holds a grace period open: a registered thread that never passes a safepoint, and a
// thread waiting in synchronize() for it. While both wait, every poll takes its slow path.
class ArmedFlag {
 public:
  explicit ArmedFlag(patchcall::Runtime& rt) {
    holder_ = std::thread([this, &rt] {
      patchcall::Result<patchcall::ThreadScope> scope = rt.registerThread("flag-holder");
      std::unique_lock<std::mutex> lock(mutex_);
      registered_ = scope.isOk();
      ready_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return release_; });
    });  // the scope unregisters here, which ends the grace period
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return ready_; });
    }
    if (registered_) waiter_ = std::thread([&rt] { (void)rt.synchronize(std::chrono::seconds(120)); });
    for (int i = 0; i < 100000 && registered_ && *rt.safepointFlag() == 0; ++i) std::this_thread::yield();
    armed_ = registered_ && *rt.safepointFlag() != 0;
  }
  ~ArmedFlag() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      release_ = true;
    }
    cv_.notify_all();
    holder_.join();
    if (waiter_.joinable()) waiter_.join();
  }
  bool armed() const { return armed_; }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool ready_ = false, registered_ = false, release_ = false, armed_ = false;
  std::thread holder_, waiter_;
};

void BM_SafepointSlowPath(benchmark::State& state) {
  const bool avx512Live = state.range(0) != 0;
  if (avx512Live && !__builtin_cpu_supports("avx512f")) return state.SkipWithError("the CPU has no AVX-512F");
  std::string error;
  static patchcall::Runtime* rt = pcbench::newRuntime(&error);  // leaked: the JIT code outlives runs
  if (rt == nullptr) return state.SkipWithError(error.c_str());
  pcbench::JitLoop loop = buildPollLoop(*rt, avx512Live, &error);
  if (loop == nullptr) return state.SkipWithError(error.c_str());
  patchcall::Result<patchcall::ThreadScope> scope = rt->registerThread("bench-main");
  if (!scope) return state.SkipWithError(("registerThread: " + scope.status().toString()).c_str());
  ArmedFlag flag(*rt);
  if (!flag.armed()) return state.SkipWithError("could not hold the poll flag armed");
  loop(1);  // the first slow path acknowledges the grace period; later ones find it acknowledged
  // Offline, every poll finds the counter unseen: the stub saves, calls and restores each time.
  const bool full = state.range(1) != 0;
  if (full && !patchcall::goOffline()) return state.SkipWithError("goOffline failed");
  constexpr uint64_t kPolls = 1000;
  pcbench::LoopClock clock;
  for (auto _ : state) benchmark::DoNotOptimize(loop(kPolls));
  pcbench::reportPerItem(state, clock, kPolls, "ns_per_slow_path");
  if (full) (void)patchcall::goOnline();
}

}  // namespace

BENCHMARK(BM_Safepoint)->UseRealTime();
BENCHMARK(BM_Loop_NoPoll)->UseRealTime();
BENCHMARK(BM_SafepointPoll_Loop)->UseRealTime();
BENCHMARK(BM_SafepointSlowPath)
    ->ArgNames({"avx512_live", "full"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->UseRealTime();
BENCHMARK(BM_GracePeriod)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime()->MinTime(0.2);
