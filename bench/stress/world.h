// patchcall-stress — what one stress run owns in a runtime: its plan, targets, keys, version
// cells and caller code. The main run builds one; each --fork child builds its own.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "callers.h"
#include "options.h"
#include "plan.h"
#include "targets.h"
#include "updater.h"
#include "versions.h"

namespace stress {

struct World {
  Plan plan;
  std::unique_ptr<TargetSource> targets;
  std::vector<patchcall::Key> keys;
  std::unique_ptr<KeyCells[]> cells;
  CallerCode code;

  // Keys are named `<keyPrefix><index>`.
  bool build(patchcall::Runtime& rt, const Options& o, const std::string& keyPrefix, std::string* error);
  // One updater per form of the run, sharing the update rate.
  std::vector<UpdaterConfig> updaterConfigs(const Options& o) const;
};

}  // namespace stress
