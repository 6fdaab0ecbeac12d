// patchcall-stress — --fibers N: the caller loops run on N fibers instead of on the caller
// threads themselves. Each fiber has a registered stack (Runtime::registerStack) and is
// switched with the hand-written switch of bench/support/<isa>/fiber_switch.cpp; every caller
// thread is a scheduler that takes the next fiber from one shared run queue, so fibers
// migrate between threads. A fiber yields at yield points (isa.h, emitYieldPoint): after every
// safepoint poll of a caller group, and with --retire at the entry of every target, so a
// parked fiber holds a return address into a target blob that the updater then retires: it
// must stay pinned until the fiber has returned out of it (a freed target traps: a
// violation). Each switch tells patchcall first (switchStack / switchToHomeStack).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "caller_threads.h"

namespace stress {

// The yield point's target (called from JIT code on a fiber).
extern "C" void stressFiberYield();

class FiberPool {
 public:
  FiberPool(patchcall::Runtime& rt, const CallerCode& code, const KeyCells* cells, int fibers, uint64_t seed,
            const std::atomic<bool>& stop);
  ~FiberPool();  // unregisters and unmaps the stacks (after every scheduler returned)
  bool init(std::string* error);  // maps and registers the stacks, prepares each fiber
  // The body of caller thread `index` (registered): runs fibers until all of them finished
  // after `stop`. Per-fiber counters move into `st` slice by slice.
  void schedule(int index, CallerStats& st);
  uint64_t migrations() const { return migrations_.load(); }
  uint64_t switches() const { return switches_.load(); }
  const CallerCode* code() const { return &code_; }
  const std::atomic<bool>* stopFlag() const { return &stop_; }

  struct Fiber;

 private:
  Fiber* pop();
  void push(Fiber* f);

  patchcall::Runtime& rt_;
  const CallerCode& code_;
  const KeyCells* cells_;
  uint64_t seed_;
  const std::atomic<bool>& stop_;
  std::vector<std::unique_ptr<Fiber>> fibers_;
  std::mutex queueMutex_;
  std::deque<Fiber*> queue_;
  std::atomic<int> finished_{0};
  std::atomic<uint64_t> migrations_{0}, switches_{0};
};

}  // namespace stress
