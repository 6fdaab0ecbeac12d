// patchcall-stress — the plan: which form each key and site has, and which key each site calls.
#pragma once

#include <cstdint>
#include <vector>

#include "callers.h"
#include "options.h"

namespace stress {

struct Plan {
  std::vector<patchcall::SiteForm> keyForm;
  std::vector<std::vector<uint32_t>> keysOfForm;  // per entry of Options::forms()
  SitePlan sites;
};

// Keys get the forms in rotation; so do sites, and each site is bound to the next key of its
// form (keys of a form shuffled by the seed), so every key has sites when sites >= keys.
Plan makePlan(const Options& o);

}  // namespace stress
