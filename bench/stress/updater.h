// patchcall-stress — the updaters: --updaters threads per site form, each retargeting its own
// share of the form's keys in batches, publishing the version cells around every update
// (versions.h). A deferred update's `end` cells are stored after the publish that covers it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "options.h"
#include "patchcall/runtime.h"
#include "targets.h"
#include "versions.h"

namespace stress {

struct UpdaterStats {
  patchcall::SiteForm form = patchcall::SiteForm::kDirect;
  std::atomic<uint64_t> updates{0};  // keys retargeted
  std::atomic<uint64_t> batches{0};  // updateBatch calls
  std::atomic<uint64_t> blobsRetired{0};
  std::atomic<uint64_t> deferred{0};   // keys updated with Publish::kDeferred
  std::atomic<uint64_t> publishes{0};  // publish() calls
  double seconds = 0;                // how long it ran (read after join)
  std::vector<uint32_t> latencyNs;   // per updateBatch call (read after join)
  std::string error;                 // the first runtime error; the updater stops on it
};

struct UpdaterConfig {
  patchcall::SiteForm form;
  std::vector<uint32_t> keys;  // key indexes of this form
  int batch = 8;
  double rate = 0;  // updates/s for this updater; 0 = max
  uint64_t seed = 1;
  PublishChoice publish = PublishChoice::kNow;
  int publishEvery = 8;
};

class Updaters {
 public:
  Updaters(patchcall::Runtime& rt, const std::vector<patchcall::Key>& keys, KeyCells* cells, TargetSource& targets);
  ~Updaters();
  void start(std::vector<UpdaterConfig> configs);
  void stop();  // joins
  bool failed() const { return failed_.load(); }
  uint64_t updates() const;
  std::vector<UpdaterStats>& stats() { return stats_; }

 private:
  void run(size_t index, UpdaterConfig config);

  patchcall::Runtime& rt_;
  const std::vector<patchcall::Key>& keys_;
  KeyCells* cells_;
  TargetSource& targets_;
  std::vector<UpdaterStats> stats_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false}, failed_{false};
};

}  // namespace stress
