// patchcall benchmarks — the child's side of a fork measurement, shared by bm_fork.cpp and
// patchcall_fork_baseline (header-only: the baseline links no patchcall).
#pragma once

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <ctime>

namespace pcbench {

inline uint64_t monotonicNs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000u + static_cast<uint64_t>(t.tv_nsec);
}

// A page parent and children share: where each child reports (null if mmap failed).
inline volatile uint64_t* forkReportPage() {
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return page == MAP_FAILED ? nullptr : static_cast<volatile uint64_t*>(page);
}

// What a forked child does first: report[0] = the time of its first instruction, report[1] =
// its minor page faults until then (its own, counted from the fork); then it exits.
[[noreturn]] inline void reportChildStartAndExit(volatile uint64_t* report) {
  report[0] = monotonicNs();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  report[1] = static_cast<uint64_t>(ru.ru_minflt);
  _exit(0);
}

}  // namespace pcbench
