// patchcall benchmarks — the reader side of the grace-period benchmarks, shared by
// BM_GracePeriod (patchcall) and BM_Urcu_GracePeriod (liburcu-qsbr) so both writers wait for
// exactly the same readers: each loops { readerWork(); announce a quiescent state; }.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"

namespace pcbench {

// The reader loop; `quiescent` is patchcall::safepoint or rcu_quiescent_state.
template <typename Quiescent>
inline void readerLoop(const std::atomic<bool>& stop, Quiescent&& quiescent) {
  uint64_t x = 1;
  while (!stop.load(std::memory_order_relaxed)) {
    x = readerWork(x);
    quiescent();
  }
  benchmark::DoNotOptimize(x);
}

// N reader threads. `body(stop)` registers the thread, calls readerLoop, unregisters; it
// returns an error message, or "" when all went well.
class ReaderThreads {
 public:
  using Body = std::function<std::string(const std::atomic<bool>& stop, std::atomic<int>& registered)>;

  ReaderThreads(int count, const Body& body) {
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, body] {
        std::string e = body(stop_, registered_);
        if (!e.empty()) {
          failed_.store(true);
          registered_.fetch_add(1);  // unblock waitRegistered()
          std::lock_guard<std::mutex> lock(errorMutex_);
          error_ = e;
        }
      });
    }
  }
  ~ReaderThreads() { stop(); }

  // Waits until every reader is registered and looping; false if one failed.
  bool waitRegistered() {
    while (registered_.load() < static_cast<int>(threads_.size())) std::this_thread::yield();
    return !failed_.load();
  }
  void stop() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::string error() {
    std::lock_guard<std::mutex> lock(errorMutex_);
    return error_;
  }

 private:
  std::atomic<bool> stop_{false}, failed_{false};
  std::atomic<int> registered_{0};
  std::mutex errorMutex_;
  std::string error_;
  std::vector<std::thread> threads_;
};

}  // namespace pcbench
