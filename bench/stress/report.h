// patchcall-stress — what a run reports: the live progress line, the summary table and JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checker.h"
#include "options.h"
#include "patchcall/runtime.h"

namespace stress {

struct Latency {
  uint64_t p50 = 0, p99 = 0, max = 0;  // ns, per updateBatch call
  static Latency of(std::vector<uint32_t> samples);
};

struct FormReport {
  patchcall::SiteForm form;
  uint32_t sites = 0, keys = 0;
  uint64_t updates = 0, batches = 0;
  Latency latency;
  uint64_t emulatedTraps = 0;     // breakpoint: calls the SIGTRAP handler emulated mid-update
  uint64_t toggleGraceWaits = 0;  // toggle: updates that waited for the grace-period rule
  uint64_t blobsRetired = 0;
  uint64_t deferred = 0, publishes = 0;  // keys updated deferred; publish() calls
  uint64_t calls = 0;
  uint64_t violations = 0;
};

struct ThreadReport {
  uint64_t calls = 0;
  double callsPerSecond = 0;  // calls / wall time
  double cpuNsPerCall = 0;    // thread CPU time / calls (comparable to BM_Call_Site's ns/call)
  uint64_t checkFailures = 0, faults = 0;
};

struct RunReport {
  Options options;
  double seconds = 0;
  std::vector<FormReport> forms;
  std::vector<ThreadReport> threads;
  patchcall::RuntimeStats runtime;
  patchcall::ArenaInfo arena;
  uint64_t updates = 0, calls = 0, violations = 0, blobsRetired = 0;
  uint64_t deferred = 0;                 // --publish: updates made deferred
  double updatesPerSecondPerUpdater = 0;  // updates / the updaters' summed running time
  double syncsPerUpdate = 0;              // cross-core syncs (all of them) / updates
  uint64_t libraryViolations = 0;         // counted by patchcall's own checks (faults.h)
  uint64_t forkChildren = 0, forkFailures = 0;  // --fork: children run, children that failed
  uint64_t fiberSwitches = 0, fiberMigrations = 0;  // --fibers: resumes, and resumes on another thread
  Latency latency;
  std::vector<Violation> details;
  std::string error;  // a runtime failure that ended the run early
  int exitCode = 0;
};

// One line, rewritten in place with '\r'.
void printProgress(double seconds, double callsPerSecond, double updatesPerSecond, const patchcall::RuntimeStats& s,
                   uint64_t violations);
void printSummary(const RunReport& r);
bool writeJson(const RunReport& r, const std::string& path, std::string* error);

}  // namespace stress
