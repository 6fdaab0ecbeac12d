// Helpers for the quiescence and retirement tests: bounded waits, a controllable registered
// thread, a diagnostics collector and byte checks on arena memory.
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "isa.h"
#include "patchcall/quiescence.h"
#include "patchcall/runtime.h"

namespace patchcall::qtest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `pred` until it holds or `timeout` passes: tests never wait without a bound.
template <typename Pred>
bool waitUntil(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  auto end = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= end) return pred();
    std::this_thread::sleep_for(100us);
  }
  return true;
}

inline pid_t currentTid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

inline long long msSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// A registered thread that should act as a live reader: passes safepoints until `stop`
// (bounded, so a broken test cannot spin forever).
inline void passSafepointsUntil(const std::atomic<bool>& stop, std::chrono::microseconds period = 200us,
                                std::chrono::milliseconds bound = 20000ms) {
  auto end = Clock::now() + bound;
  while (!stop.load() && Clock::now() < end) {
    safepoint();
    std::this_thread::sleep_for(period);
  }
}

// Overwrites dead stack below the caller's frame, so stale return addresses left by calls
// that already returned cannot pin a blob through the conservative stack scan.
__attribute__((noinline)) inline void scrubDeadStack() {
  volatile char buf[8192];
  std::memset(const_cast<char*>(buf), 0, sizeof buf);
  __asm__ volatile("" : : "r"(buf) : "memory");
}

// Collects what the runtime reports through Options::diagnosticSink. Must outlive the runtime.
class DiagnosticLog {
 public:
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mutex_);
      messages_.push_back(m);
    };
  }
  std::vector<std::string> matching(std::string_view needle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& m : messages_) {
      if (m.find(needle) != std::string::npos) out.push_back(m);
    }
    return out;
  }
  std::string all() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (const auto& m : messages_) out += "  [" + m + "]\n";
    return out.empty() ? "  (no diagnostics)\n" : out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
};

// A runtime without a background reclaimer (the test drives barrier()/poll()), reporting to `log`.
inline Options manualOptions(DiagnosticLog& log, uint32_t maxThreads = 1024) {
  Options o;
  o.backgroundReclaimer = false;
  o.graceDeadline = 5000ms;
  o.maxThreads = maxThreads;
  o.diagnosticSink = log.sink();
  return o;
}

// A thread that runs tasks posted by the test, one at a time. Between tasks it blocks on a
// condition variable WITHOUT passing a safepoint: when registered and online it holds up
// grace periods, exactly like a reader stuck inside a read-side section.
// Declare it after the Runtime it registers with (it must unregister first).
class TestThread {
 public:
  TestThread() : thread_([this] { loop(); }) {
    if (!waitUntil([&] { return tid_.load() != 0; })) std::abort();
  }
  ~TestThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    // A task that never ends would hang the whole binary: fail loudly instead.
    if (!waitUntil([&] { return exited_.load(); }, 15000ms)) {
      std::fprintf(stderr, "TestThread (tid %d): a task is still running 15 s after teardown began\n",
                   tid_.load());
      std::abort();
    }
    thread_.join();
  }
  TestThread(const TestThread&) = delete;
  TestThread& operator=(const TestThread&) = delete;

  void post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      tasks_.push_back(std::move(task));
      ++posted_;
    }
    cv_.notify_all();
  }
  // Waits (bounded) until every posted task has finished.
  bool waitIdle(std::chrono::milliseconds timeout = 5000ms) {
    return waitUntil([&] { return finished_.load() == postedCount(); }, timeout);
  }
  // Runs `task` on the thread and waits for it; false when it did not finish in time.
  bool run(std::function<void()> task, std::chrono::milliseconds timeout = 5000ms) {
    post(std::move(task));
    return waitIdle(timeout);
  }
  // Registers the thread with `rt`; the ThreadScope lives on the thread until unregister().
  Status registerWith(Runtime& rt, std::string name) {
    Status status;
    bool done = run([&] {
      Result<ThreadScope> scope = rt.registerThread(name);
      if (scope) scope_ = std::move(*scope);
      status = scope.status();
    });
    if (!done) {  // the task still references this frame: cannot continue safely
      std::fprintf(stderr, "TestThread: registerThread('%s') did not return within 5 s\n", name.c_str());
      std::abort();
    }
    return status;
  }
  bool unregister() {
    return run([&] { scope_.reset(); });
  }
  pid_t tid() const { return tid_.load(); }

 private:
  uint64_t postedCount() {
    std::lock_guard<std::mutex> lock(mutex_);
    return posted_;
  }
  void loop() {
    tid_.store(currentTid());
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) break;  // stop_ and nothing left to run
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      finished_.fetch_add(1);
      lock.lock();
    }
    lock.unlock();
    scope_.reset();
    exited_.store(true);
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  uint64_t posted_ = 0;
  std::atomic<uint64_t> finished_{0};
  bool stop_ = false;
  std::atomic<bool> exited_{false};
  std::atomic<pid_t> tid_{0};
  ThreadScope scope_;
  std::thread thread_;  // last: starts after every other member is constructed
};

// Runs `fn` when the scope ends (e.g. release a blocked thread before its TestThread joins).
template <typename Fn>
class OnExit {
 public:
  explicit OnExit(Fn fn) : fn_(std::move(fn)) {}
  ~OnExit() { fn_(); }
  OnExit(const OnExit&) = delete;
  OnExit& operator=(const OnExit&) = delete;

 private:
  Fn fn_;
};

inline std::vector<uint8_t> readBytes(const void* p, size_t n) {
  const auto* b = static_cast<const volatile uint8_t*>(p);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = b[i];
  return out;
}

inline std::string hexBytes(const std::vector<uint8_t>& bytes, size_t max = 64) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < bytes.size() && i < max; ++i) {
    std::snprintf(buf, sizeof buf, "%02x ", bytes[i]);
    out += buf;
  }
  if (bytes.size() > max) out += "...";
  return out;
}

// Empty when every byte of [p, p+n) is freed-code fill (x86: int3 0xCC, A64: udf 0x00);
// otherwise describes the first mismatch.
inline std::string notAllFilled(const void* p, size_t n) {
  std::vector<uint8_t> bytes = readBytes(p, n);
  const uint8_t fill = test::fillByte();
  for (size_t i = 0; i < n; ++i) {
    if (bytes[i] != fill) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "byte %zu of %zu at %p is 0x%02x, not 0x%02x; bytes: ", i, n,
                    static_cast<const void*>(static_cast<const uint8_t*>(p) + i), bytes[i], fill);
      return buf + hexBytes(bytes);
    }
  }
  return {};
}

}  // namespace patchcall::qtest
