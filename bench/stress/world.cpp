// patchcall-stress — building a run's world.
#include "world.h"

#include "faults.h"
#include "fibers.h"

namespace stress {

bool World::build(patchcall::Runtime& rt, const Options& o, const std::string& keyPrefix, std::string* error) {
  plan = makePlan(o);
  // --fibers: fibers yield after polls, and (with --retire) at the entry of every target.
  void (*yield)() = o.fibers > 0 ? &stressFiberYield : nullptr;
  targets = std::make_unique<TargetSource>(rt, static_cast<uint32_t>(o.keys), o.retire, o.widenRace, o.retire ? yield : nullptr);
  std::vector<const void*> initial;
  if (!targets->init(&initial, error)) return false;
  cells = std::make_unique<KeyCells[]>(static_cast<size_t>(o.keys));
  for (int k = 0; k < o.keys; ++k) {
    patchcall::KeyOptions keyOptions;
    keyOptions.strictUpdates = o.strictToggle;
    auto key = rt.createKey(initial[static_cast<size_t>(k)], keyPrefix + std::to_string(k), keyOptions);
    if (!key) {
      *error = "createKey: " + key.status().toString();
      return false;
    }
    keys.push_back(*key);
    cells[k].end.store(tag(static_cast<uint32_t>(k), 0));
    cells[k].begin.store(tag(static_cast<uint32_t>(k), 0));
  }
  return code.build(rt, keys, plan.sites, o.groupSize, toggleStallHook(o), o.strictToggle, yield, error);
}

std::vector<UpdaterConfig> World::updaterConfigs(const Options& o) const {
  std::vector<patchcall::SiteForm> forms = o.forms();
  std::vector<UpdaterConfig> configs;
  // Updaters of form f are configs [f * o.updaters, (f + 1) * o.updaters); each owns every
  // o.updaters-th key of the form (a key has one updater: its versions stay consecutive).
  for (size_t f = 0; f < forms.size(); ++f) {
    for (int u = 0; u < o.updaters; ++u) {
      std::vector<uint32_t> keys;
      for (size_t i = static_cast<size_t>(u); i < plan.keysOfForm[f].size(); i += static_cast<size_t>(o.updaters)) {
        keys.push_back(plan.keysOfForm[f][i]);
      }
      configs.push_back(UpdaterConfig{forms[f], std::move(keys), o.batch,
                                      o.updateRate / static_cast<double>(forms.size() * static_cast<size_t>(o.updaters)),
                                      o.seed + 1 + f + 64 * static_cast<size_t>(u), o.publish, o.publishEvery});
    }
  }
  return configs;
}

}  // namespace stress
