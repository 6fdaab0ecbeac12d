// patchcall — the registry of AOT static keys and calls: rewriting sites when a key flips or
// a call is retargeted (registering modules: static_modules.cpp).
#include "static_registry.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "../arch/arch.h"
#include "../fork_reset.h"
#include "../format.h"
#include "../trap_table.h"
#include "../fork_safety.h"

namespace patchcall::detail::aot {
namespace {

std::atomic<StaticRegistry*> gRegistry{nullptr};

const char* kindName(SiteKind k) {
  switch (k) {
    case SiteKind::kBranch: return "branch";
    case SiteKind::kTrampoline: return "trampoline";
    case SiteKind::kCall: return "inline call";
    case SiteKind::kTailCall: return "inline tail call";
  }
  return "site";
}

bool isKeyEnabled(uintptr_t key) {
  return __atomic_load_n(&reinterpret_cast<const patchcall_static_key*>(key)->enabled, __ATOMIC_ACQUIRE) != 0;
}
uintptr_t callTargetField(uintptr_t call) {
  return reinterpret_cast<uintptr_t>(__atomic_load_n(&reinterpret_cast<const patchcall_static_call*>(call)->target, __ATOMIC_ACQUIRE));
}
uintptr_t trampolineOf(uintptr_t call) { return reinterpret_cast<uintptr_t>(reinterpret_cast<const patchcall_static_call*>(call)->trampoline); }

// Stores `value` into `*field` (a key's state, a call's target: what the sites are computed
// from), then runs `write`; when it fails or throws, `*field` gets its old value back, so a
// retry rewrites every site again.
template <typename T, typename Write>
Status storeThenWrite(T* field, T value, Write&& write) {
  T previous = __atomic_load_n(field, __ATOMIC_ACQUIRE);
  __atomic_store_n(field, value, __ATOMIC_RELEASE);
  Status s;
  try {
    s = write();
  } catch (...) {  // out of memory before the first write
    __atomic_store_n(field, previous, __ATOMIC_RELEASE);
    throw;
  }
  if (!s) __atomic_store_n(field, previous, __ATOMIC_RELEASE);
  return s;
}

}  // namespace

StaticRegistry& StaticRegistry::instance() {
  static StaticRegistry* registry = [] {
    auto* r = new StaticRegistry;  // never destroyed: modules unregister from destructors
    (void)ensureForkHandlers();    // without them a fork child shares nothing half done anyway
    gRegistry.store(r, std::memory_order_release);
    return r;
  }();
  return *registry;
}

PATCHCALL_FORK_PATH void StaticRegistry::forkChild(pid_t parent) noexcept {
  if (StaticRegistry* r = gRegistry.load(std::memory_order_acquire)) r->text_.closeInherited(parent);
}

// ---- rewriting sites --------------------------------------------------------------------

// A branch jumps while (enabled != likely); its label is in the same module: in reach.
static void branchBytes(const Site& site, bool enabled, uint8_t out[]) {
  if (enabled != site.likely) {
    (void)arch::encodeStaticBranch(site.address, site.label, false, out);
  } else {
    arch::encodeStaticNop(out);
  }
}

void StaticRegistry::desired(const Site& site, uint8_t out[]) const {
  if (site.kind == SiteKind::kBranch) return branchBytes(site, isKeyEnabled(site.object), out);
  uintptr_t tramp = trampolineOf(site.object), target = callTargetField(site.object);
  bool null = target == arch::staticTrampolineReturn(tramp);
  switch (site.kind) {
    case SiteKind::kTrampoline:
      if (!arch::encodeStaticBranch(site.address, target, false, out)) {
        (void)arch::encodeStaticBranch(site.address, arch::staticTrampolineIndirect(tramp), false, out);
      }
      return;
    case SiteKind::kCall:
      if (null) {
        arch::encodeStaticNop(out);
      } else if (!arch::encodeStaticBranch(site.address, target, true, out)) {
        (void)arch::encodeStaticBranch(site.address, site.label, true, out);
      }
      return;
    case SiteKind::kTailCall:
      if (!arch::encodeStaticBranch(site.address, target, false, out)) {
        (void)arch::encodeStaticBranch(site.address, site.label, false, out);
      }
      return;
    case SiteKind::kBranch: return;
  }
}

Status StaticRegistry::rewrite(const std::vector<Site>& sites, bool* wrote) {
  std::vector<TextPatch>& patches = patches_;  // reused: a flip allocates nothing
  patches.clear();
  patches.reserve(sites.size());
  for (const Site& site : sites) {
    TextPatch& p = patches.emplace_back();
    p.address = site.address;
    std::memcpy(p.from, reinterpret_cast<const void*>(site.address), arch::kStaticSiteSize);
    desired(site, p.to);
    if (std::memcmp(p.from, p.to, arch::kStaticSiteSize) == 0) {
      patches.pop_back();
      continue;
    }
    uintptr_t ignored;
    if (arch::decodeStaticSite(site.address, p.from, &ignored) == arch::StaticInsn::kOther) {
      // Not what patchcall recorded or wrote (a debugger's breakpoint, someone else's patch):
      // refuse the whole batch before its first write.
      return Status(Error::kUnsupportedSite, std::string("AOT ") + kindName(site.kind) + " at " + hex(site.address) +
                                                 " no longer holds an instruction patchcall wrote; nothing was changed");
    }
    planTrap(p);
  }
  auto byAddress = [](const TextPatch& a, const TextPatch& b) { return a.address < b.address; };
  if (!std::is_sorted(patches.begin(), patches.end(), byAddress)) std::sort(patches.begin(), patches.end(), byAddress);
  if (wrote != nullptr) *wrote = !patches.empty();
  return text_.apply(patches);
}

const std::vector<Site>& StaticRegistry::sitesOf(uintptr_t object) const {
  static const std::vector<Site> kNone;
  auto it = sites_.find(object);
  return it == sites_.end() ? kNone : it->second;
}

Status StaticRegistry::setKey(patchcall_static_key* key, bool enabled) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto object = reinterpret_cast<uintptr_t>(key);
  if (keys_.count(object) == 0) return unknown(object, "static key");
  if (isKeyEnabled(object) == enabled) return Status::ok();
  return storeThenWrite(&key->enabled, int32_t{enabled ? 1 : 0},
                        [&] { return arch::kStaticPatching ? flipKey(object, enabled) : Status::ok(); });
}

Status StaticRegistry::flipKey(uintptr_t key, bool enabled) {
  KeyPlan& plan = keyPlans_[key];
  if (!plan.ready) {
    plan.toState[0].clear();
    plan.toState[1].clear();
    for (const Site& site : sitesOf(key)) {
      TextPatch on, off;  // sites are in address order, so both batches are too
      on.address = off.address = site.address;
      branchBytes(site, true, on.to);
      branchBytes(site, false, off.to);
      std::memcpy(on.from, off.to, arch::kStaticSiteSize);
      std::memcpy(off.from, on.to, arch::kStaticSiteSize);
      planTrap(on);
      planTrap(off);
      plan.toState[1].push_back(on);
      plan.toState[0].push_back(off);
    }
    plan.ready = true;
  }
  const std::vector<TextPatch>& batch = plan.toState[enabled ? 1 : 0];
  for (const TextPatch& p : batch) {
    // Not as planned (a batch that failed, someone else's write): the general path looks at
    // every site (and refuses what patchcall did not write).
    if (std::memcmp(reinterpret_cast<const void*>(p.address), p.from, arch::kStaticSiteSize) != 0) return rewrite(sitesOf(key));
  }
  return text_.apply(batch);
}

Status StaticRegistry::keyBranches(const patchcall_static_key* key, size_t* count) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto object = reinterpret_cast<uintptr_t>(key);
  if (keys_.count(object) == 0) return unknown(object, "static key");
  auto it = sites_.find(object);
  *count = it == sites_.end() ? 0 : it->second.size();
  return Status::ok();
}

Status StaticRegistry::setCall(patchcall_static_call* call, const void* target) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto object = reinterpret_cast<uintptr_t>(call);
  if (calls_.count(object) == 0) return unknown(object, "static call");
  uintptr_t tramp = trampolineOf(object);
  auto t = reinterpret_cast<uintptr_t>(target);
  if (arch::kStaticPatching && t >= tramp && t < tramp + PATCHCALL_SCT_SIZE) {
    // The trampoline would jump to itself: every call would spin forever.
    return Status(Error::kInvalidArgument, "static call " + std::string(call->name != nullptr ? call->name : "?") + ": target " +
                                               hex(t) + " lies inside the call's own trampoline (use NULL for a no-op)");
  }
  uintptr_t stored = target != nullptr ? t : arch::staticTrampolineReturn(tramp);
  if (callTargetField(object) == stored) return Status::ok();  // the current target: no write, no sync
  // The field first: a thread on the trampoline's indirect path takes the new target from
  // now on, one on a direct path the old one until its site is rewritten.
  return storeThenWrite(&call->target, reinterpret_cast<const void*>(stored), [&] {
    bool wrote = false;
    Status s = arch::kStaticPatching ? rewrite(sitesOf(object), &wrote) : Status::ok();
    // Only the field changed (every site stays on the indirect path or the compiled call):
    // one sync makes the new target every core's before this returns.
    return s && !wrote ? text_.syncOnly() : s;
  });
}

Status StaticRegistry::callTarget(const patchcall_static_call* call, const void** target) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto object = reinterpret_cast<uintptr_t>(call);
  if (calls_.count(object) == 0) return unknown(object, "static call");
  uintptr_t t = callTargetField(object);
  *target = t == arch::staticTrampolineReturn(trampolineOf(object)) ? nullptr : reinterpret_cast<const void*>(t);
  return Status::ok();
}

int StaticRegistry::eachSite(int (*visit)(void*, const patchcall_static_site_info*), void* user) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [object, list] : sites_) {
    for (const Site& s : list) {
      patchcall_static_site_info info{};
      info.address = reinterpret_cast<const void*>(s.address);
      info.object = reinterpret_cast<const void*>(s.object);
      info.kind = static_cast<int>(s.kind);
      uintptr_t dest = 0;
      arch::StaticInsn insn = arch::decodeStaticSite(s.address, reinterpret_cast<const uint8_t*>(s.address), &dest);
      info.destination = insn == arch::StaticInsn::kJump || insn == arch::StaticInsn::kCall ? reinterpret_cast<const void*>(dest) : nullptr;
      if (int r = visit(user, &info); r != 0) return r;
    }
  }
  return 0;
}

void StaticRegistry::stats(patchcall_static_stats* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->modules = modules_.size();
  out->failed_modules = static_cast<size_t>(std::count_if(modules_.begin(), modules_.end(), [](const Module& m) { return !m.status; }));
  out->keys = keys_.size();
  out->calls = calls_.size();
  out->branches = out->trampolines = out->call_sites = out->tail_call_sites = 0;
  for (const auto& [object, list] : sites_) {
    for (const Site& s : list) {
      size_t& n = s.kind == SiteKind::kBranch ? out->branches : s.kind == SiteKind::kTrampoline ? out->trampolines
                : s.kind == SiteKind::kCall ? out->call_sites : out->tail_call_sites;
      ++n;
    }
  }
  out->batches = text_.batches();
  out->sites_written = text_.sitesWritten();
  out->writes = text_.writes();
  out->syncs = text_.syncs();
  out->traps_emulated = TrapTable::instance().emulated();
}

}  // namespace patchcall::detail::aot
