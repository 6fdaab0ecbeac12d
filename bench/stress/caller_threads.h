// patchcall-stress — the caller threads: registered with the runtime, they run the JIT
// caller groups until told to stop, hopping between groups at random.
#pragma once

#include <atomic>
#include <memory>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "callers.h"
#include "checker.h"
#include "patchcall/runtime.h"

namespace stress {

struct CallerStats {
  alignas(64) std::atomic<uint64_t> calls{0};  // for the progress line (relaxed)
  uint64_t callsByForm[3] = {0, 0, 0};         // final, read after join
  uint64_t cpuNs = 0;                          // thread CPU time while running
  uint64_t wallNs = 0;
  uint64_t checkFailures = 0;
  uint64_t faults = 0;
  std::string error;  // registration failure
};

// The caller loop: runs random groups until `stop`. Everything that must survive a siglongjmp
// out of JIT code lives in `st` and `rng` (memory), never in registers.
void runGroups(const CallerCode& code, CallerFrame& frame, FaultEscape& escape, CallerStats& st, uint64_t& rng,
               const std::atomic<bool>& stop);
uint64_t threadCpuNs();

class FiberPool;

class CallerThreads {
 public:
  // fibers > 0: the threads schedule that many fibers (fibers.h) instead of running the loop.
  CallerThreads(patchcall::Runtime& rt, const CallerCode& code, const KeyCells* cells, int threads, uint64_t seed,
                int fibers = 0);
  ~CallerThreads();
  // Starts the threads and returns once every one of them is registered and running.
  bool start(std::string* error);
  void stop();  // joins
  uint64_t calls() const;
  const std::vector<CallerStats>& stats() const { return stats_; }
  const FiberPool* fibers() const { return fibers_.get(); }

 private:
  void run(int index);

  patchcall::Runtime& rt_;
  const CallerCode& code_;
  const KeyCells* cells_;
  uint64_t seed_;
  std::vector<CallerStats> stats_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ready_{0};
  std::unique_ptr<FiberPool> fibers_;
};

}  // namespace stress
