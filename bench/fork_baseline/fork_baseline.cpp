// patchcall_fork_baseline — what glibc's fork() costs a process without patchcall, against its
// _Fork() (no atfork handlers, none of fork()'s own work for a multi-threaded process), with
// and without a second thread. BM_ForkChild/1 - /3 (bench/bm_fork.cpp) holds this difference
// for a threaded process besides patchcall's handlers; this binary links no patchcall, so
// nothing of patchcall's runs in its forks.
//   BM_GlibcFork/threaded:T/fork:F   T = 1: an idle thread waits on a condition variable (as
//                                    the background reclaimer does); F = 1: fork(), 0: _Fork()
// Counters as BM_ForkChild's: child_start_ns (the call to the child's first instruction) and
// child_minflt (the child's minor faults until then), medians.
#include <benchmark/benchmark.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fork_child_probe.h"
#include "pairs.h"  // median

namespace {

// A thread that waits until the benchmark ends.
class IdleThread {
 public:
  IdleThread()
      : thread_([this] {
          std::unique_lock<std::mutex> lock(mutex_);
          wake_.wait(lock, [this] { return stop_; });
        }) {}
  ~IdleThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

void BM_GlibcFork(benchmark::State& state) {
  static volatile uint64_t* shared = pcbench::forkReportPage();
  if (shared == nullptr) return state.SkipWithError("mmap");
  std::unique_ptr<IdleThread> idle;
  if (state.range(0) != 0) idle = std::make_unique<IdleThread>();
  const bool withHandlers = state.range(1) != 0;
  std::vector<double> start, faults;
  for (auto _ : state) {
    uint64_t t0 = pcbench::monotonicNs();
    pid_t pid = withHandlers ? fork() : _Fork();
    if (pid == 0) pcbench::reportChildStartAndExit(shared);
    if (pid < 0) return state.SkipWithError("fork failed");
    int status = 0;
    waitpid(pid, &status, 0);
    start.push_back(static_cast<double>(shared[0] - t0));
    faults.push_back(static_cast<double>(shared[1]));
  }
  state.counters["child_start_ns"] = pcbench::median(start);
  state.counters["child_minflt"] = pcbench::median(faults);
}
BENCHMARK(BM_GlibcFork)->ArgNames({"threaded", "fork"})->ArgsProduct({{0, 1}, {1, 0}})->UseRealTime();

}  // namespace
