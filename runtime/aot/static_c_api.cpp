// patchcall — the C entry points of AOT static keys and static calls (static_module.h,
// static_key.h, static_call_aot.h), over StaticRegistry.
#include "../c_api_support.h"
#include "patchcall/static_call_aot.h"
#include "patchcall/static_key.h"
#include "static_registry.h"

using patchcall::capi::guarded;
using patchcall::capi::nullArgument;
using patchcall::capi::report;
using patchcall::detail::aot::StaticRegistry;

extern "C" {

void patchcall_module_register(const struct patchcall_module* module) {
  // Every module whose files include the headers calls this, this library's own included: one
  // without keys, calls or sites costs nothing (no registry, no fork handlers).
  if (module == nullptr || (module->keys_begin == module->keys_end && module->calls_begin == module->calls_end &&
                            module->jumps_begin == module->jumps_end && module->sites_begin == module->sites_end)) {
    return;
  }
  try {
    StaticRegistry::instance().registerModule(module);
  } catch (...) {  // a load never fails because of patchcall: the module stays as compiled
  }
}

void patchcall_module_unregister(const struct patchcall_module* module) {
  try {
    StaticRegistry::instance().unregisterModule(module);
  } catch (...) {
  }
}

int patchcall_static_module_status(const void* address) {
  return guarded("patchcall_static_module_status",
                 [&] { return report(StaticRegistry::instance().moduleStatus(reinterpret_cast<uintptr_t>(address))); });
}

int patchcall_static_key_set(struct patchcall_static_key* key, int enabled) {
  if (key == nullptr) return nullArgument("patchcall_static_key_set", "key");
  return guarded("patchcall_static_key_set", [&] { return report(StaticRegistry::instance().setKey(key, enabled != 0)); });
}

int patchcall_static_key_branches(const struct patchcall_static_key* key, size_t* count) {
  if (key == nullptr) return nullArgument("patchcall_static_key_branches", "key");
  if (count == nullptr) return nullArgument("patchcall_static_key_branches", "count");
  *count = 0;
  return guarded("patchcall_static_key_branches", [&] { return report(StaticRegistry::instance().keyBranches(key, count)); });
}

int patchcall_static_call_set(struct patchcall_static_call* call, const void* target) {
  if (call == nullptr) return nullArgument("patchcall_static_call_set", "call");
  return guarded("patchcall_static_call_set", [&] { return report(StaticRegistry::instance().setCall(call, target)); });
}

int patchcall_static_call_target(const struct patchcall_static_call* call, const void** target) {
  if (call == nullptr) return nullArgument("patchcall_static_call_target", "call");
  if (target == nullptr) return nullArgument("patchcall_static_call_target", "target");
  return guarded("patchcall_static_call_target", [&] { return report(StaticRegistry::instance().callTarget(call, target)); });
}

int patchcall_static_sites_each(int (*visit)(void* user, const patchcall_static_site_info* site), void* user) {
  if (visit == nullptr) return nullArgument("patchcall_static_sites_each", "visit");
  return guarded("patchcall_static_sites_each", [&] { return StaticRegistry::instance().eachSite(visit, user); });
}

int patchcall_static_stats_get(patchcall_static_stats* out) {
  if (out == nullptr) return nullArgument("patchcall_static_stats_get", "out");
  if (out->struct_size < sizeof(patchcall_static_stats)) {
    return patchcall::capi::fail(PATCHCALL_E_INVALID_ARGUMENT, "patchcall_static_stats_get: struct_size is smaller than "
                                                                "sizeof(patchcall_static_stats) of this library's first version");
  }
  return guarded("patchcall_static_stats_get", [&] {
    StaticRegistry::instance().stats(out);
    out->struct_size = sizeof(patchcall_static_stats);
    return patchcall::capi::succeed();
  });
}

}  // extern "C"
