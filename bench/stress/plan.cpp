// patchcall-stress — building the plan from the options.
#include "plan.h"

#include <algorithm>
#include <random>

namespace stress {

Plan makePlan(const Options& o) {
  std::vector<patchcall::SiteForm> forms = o.forms();
  Plan p;
  p.keysOfForm.resize(forms.size());
  for (int k = 0; k < o.keys; ++k) {
    p.keyForm.push_back(forms[static_cast<size_t>(k) % forms.size()]);
    p.keysOfForm[static_cast<size_t>(k) % forms.size()].push_back(static_cast<uint32_t>(k));
  }
  std::mt19937_64 rng(o.seed);
  for (auto& keys : p.keysOfForm) std::shuffle(keys.begin(), keys.end(), rng);
  std::vector<size_t> next(forms.size(), 0);
  for (int s = 0; s < o.sites; ++s) {
    size_t f = static_cast<size_t>(s) % forms.size();
    p.sites.form.push_back(forms[f]);
    p.sites.key.push_back(p.keysOfForm[f][next[f]++ % p.keysOfForm[f].size()]);
  }
  return p;
}

}  // namespace stress
