// patchcall-stress — the caller threads: registered with the runtime, they run the JIT
// caller groups until told to stop, hopping between groups at random.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "callers.h"
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

class CallerThreads {
 public:
  CallerThreads(patchcall::Runtime& rt, const CallerCode& code, const KeyCells* cells, int threads, uint64_t seed);
  ~CallerThreads();
  // Starts the threads and returns once every one of them is registered and running.
  bool start(std::string* error);
  void stop();  // joins
  uint64_t calls() const;
  const std::vector<CallerStats>& stats() const { return stats_; }

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
};

}  // namespace stress
