// patchcall-stress --fork N: fork() while callers and updaters run. Each child (only the
// forking thread survives) checks that every inherited site decodes to the target its own
// registry names, then builds a small world of its own in its copy of the runtime and
// stresses it briefly; it must see zero violations. The parent is never affected.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "options.h"
#include "patchcall/runtime.h"
#include "world.h"

namespace stress {

class ForkDriver {
 public:
  ForkDriver(patchcall::Runtime& rt, const World& world, const Options& o) : rt_(rt), world_(world), o_(o) {}
  ~ForkDriver() { stop(); }
  void start();  // spreads o.forks children over the run
  void stop();   // forks what is left at once, joins; every child has been waited for
  uint64_t children() const { return children_.load(); }
  uint64_t failures() const { return failures_.load(); }
  const std::string& error() const { return error_; }  // read after stop()

 private:
  void run();
  int child();  // in the child; its exit status

  patchcall::Runtime& rt_;
  const World& world_;
  const Options& o_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> children_{0}, failures_{0};
  std::string error_;
};

}  // namespace stress
