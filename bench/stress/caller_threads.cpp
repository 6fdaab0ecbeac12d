// patchcall-stress — caller thread loop.
#include "caller_threads.h"

#include <time.h>

#include <algorithm>
#include <chrono>

#include "checker.h"
#include "fibers.h"
#include "xorshift.h"

namespace stress {
namespace {

constexpr uint64_t kCallsPerRun = 8192;  // per call into a group: ~10-50 us, so C++ overhead is noise

}  // namespace

uint64_t threadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

__attribute__((noinline)) void runGroups(const CallerCode& code, CallerFrame& frame, FaultEscape& escape,
                                         CallerStats& st, uint64_t& rng, const std::atomic<bool>& stop) {
  const std::vector<CallerGroup>& groups = code.groups();
  while (!stop.load(std::memory_order_relaxed)) {
    const CallerGroup& g = groups[xorshift(rng) % groups.size()];
    uint64_t iterations = std::max<uint64_t>(1, kCallsPerRun / g.count);
    escape.inJit = 1;
    uint64_t failed = g.fn(&frame, iterations);
    escape.inJit = 0;
    for (int f = 0; f < 3; ++f) st.callsByForm[f] += iterations * g.perForm[f];
    st.calls.store(st.calls.load(std::memory_order_relaxed) + iterations * g.count, std::memory_order_relaxed);
    if (failed != 0) {
      const SiteMeta& m = code.sites()[g.firstSite + failed - 1];
      Violation v;
      v.thread = escape.thread;
      v.site = m.index;
      v.form = static_cast<int>(m.form);
      v.key = m.key;
      v.returned = frame.returned;
      v.pre = frame.pre;
      v.post = frame.post;
      Checker::instance().record(v);
      ++st.checkFailures;
    }
  }
}

CallerThreads::CallerThreads(patchcall::Runtime& rt, const CallerCode& code, const KeyCells* cells, int threads,
                             uint64_t seed, int fibers)
    : rt_(rt), code_(code), cells_(cells), seed_(seed), stats_(static_cast<size_t>(threads)) {
  if (fibers > 0) fibers_ = std::make_unique<FiberPool>(rt, code, cells, fibers, seed, stop_);
}

CallerThreads::~CallerThreads() { stop(); }

bool CallerThreads::start(std::string* error) {
  if (fibers_ != nullptr && !fibers_->init(error)) return false;
  for (size_t i = 0; i < stats_.size(); ++i) threads_.emplace_back([this, i] { run(static_cast<int>(i)); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ready_.load() < static_cast<int>(stats_.size())) {
    if (std::chrono::steady_clock::now() > deadline) {
      *error = "caller threads did not start within 10 s";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (const CallerStats& s : stats_) {
    if (!s.error.empty()) {
      *error = s.error;
      return false;
    }
  }
  return true;
}

void CallerThreads::stop() {
  stop_.store(true);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

uint64_t CallerThreads::calls() const {
  uint64_t n = 0;
  for (const CallerStats& s : stats_) n += s.calls.load(std::memory_order_relaxed);
  return n;
}

void CallerThreads::run(int index) {
  CallerStats& st = stats_[static_cast<size_t>(index)];
  patchcall::Result<patchcall::ThreadScope> scope = rt_.registerThread("caller-" + std::to_string(index));
  if (!scope) {
    st.error = "registerThread: " + scope.status().toString();
    ready_.fetch_add(1);
    return;
  }
  if (fibers_ != nullptr) {
    ready_.fetch_add(1);
    fibers_->schedule(index, st);
    return;
  }
  FaultEscape escape;
  escape.thread = index;
  tlsEscape = &escape;
  CallerFrame frame;
  frame.cells = cells_;
  uint64_t rng = seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ull + 1;
  ready_.fetch_add(1);
  auto wall0 = std::chrono::steady_clock::now();
  uint64_t cpu0 = threadCpuNs();
  if (sigsetjmp(escape.jump, 1) != 0) {
    // Back from a fault in JIT code: the handler recorded it; carry on.
    ++st.faults;
  }
  runGroups(code_, frame, escape, st, rng, stop_);
  st.cpuNs = threadCpuNs() - cpu0;
  st.wallNs = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - wall0).count());
  tlsEscape = nullptr;
}

}  // namespace stress
