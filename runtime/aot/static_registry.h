// patchcall — StaticRegistry: the modules, static keys, static calls and their sites that
// the per-module constructors of include/patchcall/static_module.h register, and every change
// to them (a key's direction, a call's target, a module loaded or unloaded).
//
// Process-wide and never destroyed (modules unregister from their destructors, which may run
// after every static object of this library is gone): one mutex over all of it, taken around
// fork() by an atfork handler so a child never inherits a half-done batch; the child then has
// its own copy of everything (the text is private memory) and reopens /proc/self/mem.
//
// Sites are recorded with zero false positives: a branch only when its instruction is the NOP
// or the jump to its label, a trampoline only when it holds the header's layout, an inline
// call only as decoded from its marker (call_site_discovery.h). Before any batch every site's
// bytes are read again and must still be an instruction patchcall wrote or recorded.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "patchcall/static_call_aot.h"
#include "patchcall/static_key.h"
#include "patchcall/status.h"
#include "../fork_safety.h"
#include "text_batch.h"

namespace patchcall::detail::aot {

enum class SiteKind : uint8_t {
  kBranch = PATCHCALL_STATIC_SITE_BRANCH,
  kTrampoline = PATCHCALL_STATIC_SITE_TRAMPOLINE,
  kCall = PATCHCALL_STATIC_SITE_CALL,
  kTailCall = PATCHCALL_STATIC_SITE_TAIL_CALL,
};

struct Site {
  uintptr_t address = 0;
  uintptr_t object = 0;  // its key or call
  uint32_t module = 0;   // the module the instruction lies in
  SiteKind kind = SiteKind::kBranch;
  bool likely = false;   // branches: the jump is taken while the key is disabled
  uintptr_t label = 0;   // branches: the jump's target; inline calls: the compiled destination
};

struct Module {
  uint32_t id = 0;
  const patchcall_module* handle = nullptr;
  std::string name;
  std::vector<std::pair<uintptr_t, uintptr_t>> segments;    // every PT_LOAD
  std::vector<std::pair<uintptr_t, uintptr_t>> executable;  // PT_LOAD with PF_X
  uintptr_t ehFrameHdr = 0;
  Status status;  // why it was not registered (its keys and calls then report it)
  bool contains(uintptr_t a) const noexcept;
  bool executes(uintptr_t a, size_t n) const noexcept;
};

class StaticRegistry {
 public:
  static StaticRegistry& instance();

  void registerModule(const patchcall_module* handle);
  void unregisterModule(const patchcall_module* handle);
  Status moduleStatus(uintptr_t address);

  Status setKey(patchcall_static_key* key, bool enabled);
  Status keyBranches(const patchcall_static_key* key, size_t* count);
  Status setCall(patchcall_static_call* call, const void* target);
  Status callTarget(const patchcall_static_call* call, const void** target);
  int eachSite(int (*visit)(void*, const patchcall_static_site_info*), void* user);
  void stats(patchcall_static_stats* out);

  // The atfork child handler (fork_safety.cpp, which holds mutex_ across fork(): no batch is
  // half done in the child): closes the parent's /proc/self/mem, which the child's first
  // batch reopens.
  static void forkChild(pid_t parent) noexcept;

 private:
  StaticRegistry() = default;
  Status doRegister(const patchcall_module* handle, Module& m);
  void addBranches(Module& m, std::vector<Site>& added);
  void addCalls(Module& m, std::vector<Site>& added);
  void addCallSites(Module& m, std::vector<Site>& added);
  // Why `object` is not a registered key or call: UNKNOWN_KEY, or its module's error.
  Status unknown(uintptr_t object, const char* what);
  // What `site` must hold now.
  void desired(const Site& site, uint8_t out[]) const;
  // Brings every site of `sites` to what it must hold, in one batch (`wrote`: any changed).
  Status rewrite(const std::vector<Site>& sites, bool* wrote = nullptr);
  // A key's flip through its cached plan (falls back to rewrite when a site is not as planned).
  Status flipKey(uintptr_t key, bool enabled);
  const std::vector<Site>& sitesOf(uintptr_t object) const;

  std::mutex& mutex_ = detail::processLock(detail::ProcessLock::kStaticRegistry);  // on the fork page
  uint32_t nextId_ = 1;
  std::vector<Module> modules_;
  std::unordered_map<uintptr_t, uint32_t> keys_;   // key -> its module
  std::unordered_map<uintptr_t, uint32_t> calls_;  // call -> its module
  // Every site, by the object it follows (sites may be recorded before the object's module
  // registers: a library's constructor runs before the executable's).
  std::unordered_map<uintptr_t, std::vector<Site>> sites_;
  std::unordered_set<uintptr_t> siteAddresses_;
  AotTextWriter text_;
  std::vector<TextPatch> patches_;  // rewrite's batch (under mutex_)
  // Each flipped key's two batches, built once per module layout (cleared whenever a module
  // registers or unregisters): every branch to its enabled instruction and to its disabled
  // one, `from` the other. A flip then only checks each site still holds `from`.
  struct KeyPlan {
    std::vector<TextPatch> toState[2];  // [0]: disabled, [1]: enabled
    bool ready = false;                 // both built (an allocation failure leaves it false)
  };
  std::unordered_map<uintptr_t, KeyPlan> keyPlans_;
};

}  // namespace patchcall::detail::aot
