// patchcall — the C API for keys (patchcall.h, "keys"): create, destroy, update (plain, with
// options, batched), target and trampoline, over Runtime's key functions.
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "c_api_support.h"
#include "runtime_access.h"
#include "runtime_impl.h"

namespace {

using namespace patchcall::capi;

int updateBatch(const char* function, patchcall_runtime* rt, const patchcall_update_entry* updates, size_t count,
                const patchcall::UpdateOptions& options) {
  if (rt == nullptr) return nullArgument(function, "rt");
  if (count != 0 && updates == nullptr) return nullArgument(function, "updates");
  // A batch holds each key at most once.
  if (size_t limit = patchcall::detail::RuntimeAccess::impl(rt->rt).options.maxKeys; count > limit) {
    return tooMany(PATCHCALL_E_INVALID_ARGUMENT, function, "updates", count, limit);
  }
  std::vector<patchcall::KeyUpdate> batch;
  batch.reserve(count);
  for (size_t i = 0; i < count; ++i) batch.push_back({patchcall::Key{updates[i].key}, updates[i].target});
  return report(rt->rt.updateBatch(batch, options));
}

}  // namespace

extern "C" {

int patchcall_key_create(patchcall_runtime* rt, const void* initial_target, const char* name, patchcall_key* out) {
  return guarded("patchcall_key_create", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_create", "rt");
    if (out == nullptr) return nullArgument("patchcall_key_create", "out");
    *out = 0;
    patchcall::Result<patchcall::Key> key = rt->rt.createKey(initial_target, name != nullptr ? name : "");
    if (!key) return fail(key.status());
    *out = key->id;
    return succeed();
  });
}

int patchcall_key_destroy(patchcall_runtime* rt, patchcall_key key) {
  return guarded("patchcall_key_destroy", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_destroy", "rt");
    return report(rt->rt.destroyKey(patchcall::Key{key}));
  });
}

int patchcall_key_update(patchcall_runtime* rt, patchcall_key key, const void* target, const void** old_target) {
  return guarded("patchcall_key_update", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_update", "rt");
    patchcall::Result<const void*> previous = rt->rt.update(patchcall::Key{key}, target);
    if (!previous) return fail(previous.status());
    if (old_target != nullptr) *old_target = *previous;
    return succeed();
  });
}

int patchcall_key_update_batch(patchcall_runtime* rt, const patchcall_update_entry* updates, size_t count) {
  return guarded("patchcall_key_update_batch", [&] {
    return updateBatch("patchcall_key_update_batch", rt, updates, count, patchcall::UpdateOptions{});
  });
}

int patchcall_key_target(const patchcall_runtime* rt, patchcall_key key, const void** out) {
  return guarded("patchcall_key_target", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_target", "rt");
    if (out == nullptr) return nullArgument("patchcall_key_target", "out");
    patchcall::Result<const void*> t = rt->rt.target(patchcall::Key{key});
    if (!t) return fail(t.status());
    *out = *t;
    return succeed();
  });
}

int patchcall_key_trampoline(const patchcall_runtime* rt, patchcall_key key, const void** out) {
  return guarded("patchcall_key_trampoline", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_trampoline", "rt");
    if (out == nullptr) return nullArgument("patchcall_key_trampoline", "out");
    patchcall::Result<const void*> t = rt->rt.trampoline(patchcall::Key{key});
    if (!t) return fail(t.status());
    *out = *t;
    return succeed();
  });
}

}  // extern "C"

// ---- options: strict updates ------------------------------------------------------------------

namespace {

// struct_size is the first field of both option structs: a caller built against an older
// header passes a smaller size, and fields it does not know keep their defaults.
template <typename T>
bool knownSize(const T* o) {
  return o->struct_size >= sizeof(size_t) && o->struct_size <= sizeof(T);
}

patchcall::UpdateOptions toCpp(const patchcall_update_options& o) {
  patchcall::UpdateOptions u;
  u.strict = o.strict != 0;
  if (o.deadline_ms >= 0) u.deadline = std::chrono::milliseconds(o.deadline_ms);
  if (o.struct_size >= offsetof(patchcall_update_options, deferred) + sizeof o.deferred && o.deferred != 0) {
    u.publish = patchcall::Publish::kDeferred;
  }
  return u;
}

int badSize(const char* function, const char* what) {
  std::string message = std::string(function) + ": " + what +
                        "->struct_size is not one this library knows; fill it with its _init function first";
  return fail(PATCHCALL_E_INVALID_ARGUMENT, message.c_str());
}

}  // namespace

extern "C" {

int patchcall_publish(patchcall_runtime* rt, int64_t deadline_ms) {
  return guarded("patchcall_publish", [&] {
    if (rt == nullptr) return nullArgument("patchcall_publish", "rt");
    std::optional<std::chrono::milliseconds> deadline;
    if (deadline_ms >= 0) deadline = std::chrono::milliseconds(deadline_ms);
    patchcall::Status s = rt->rt.publish(deadline);
    return s.isOk() ? succeed() : fail(s);
  });
}

void patchcall_key_options_init(patchcall_key_options* o) {
  if (o == nullptr) return;
  *o = patchcall_key_options{};
  o->struct_size = sizeof *o;
}

void patchcall_update_options_init(patchcall_update_options* o) {
  if (o == nullptr) return;
  *o = patchcall_update_options{};
  o->struct_size = sizeof *o;
  o->deadline_ms = -1;
}

int patchcall_key_create_with(patchcall_runtime* rt, const void* initial_target, const char* name,
                              const patchcall_key_options* options, patchcall_key* out) {
  return guarded("patchcall_key_create_with", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_create_with", "rt");
    if (out == nullptr) return nullArgument("patchcall_key_create_with", "out");
    if (options == nullptr) return nullArgument("patchcall_key_create_with", "options");
    *out = 0;
    if (!knownSize(options)) return badSize("patchcall_key_create_with", "options");
    patchcall::KeyOptions k;
    k.strictUpdates = options->strict_updates != 0;
    k.nullIsNoop = options->struct_size >= offsetof(patchcall_key_options, null_is_noop) + sizeof options->null_is_noop &&
                   options->null_is_noop != 0;
    patchcall::Result<patchcall::Key> key = rt->rt.createKey(initial_target, name != nullptr ? name : "", k);
    if (!key) return fail(key.status());
    *out = key->id;
    return succeed();
  });
}

int patchcall_key_update_with(patchcall_runtime* rt, patchcall_key key, const void* target,
                              const patchcall_update_options* options, const void** old_target) {
  return guarded("patchcall_key_update_with", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_update_with", "rt");
    if (options == nullptr) return nullArgument("patchcall_key_update_with", "options");
    if (!knownSize(options)) return badSize("patchcall_key_update_with", "options");
    patchcall::Result<const void*> previous = rt->rt.update(patchcall::Key{key}, target, toCpp(*options));
    if (!previous) return fail(previous.status());
    if (old_target != nullptr) *old_target = *previous;
    return succeed();
  });
}

int patchcall_key_update_batch_with(patchcall_runtime* rt, const patchcall_update_entry* updates, size_t count,
                                    const patchcall_update_options* options) {
  return guarded("patchcall_key_update_batch_with", [&] {
    if (rt == nullptr) return nullArgument("patchcall_key_update_batch_with", "rt");
    if (options == nullptr) return nullArgument("patchcall_key_update_batch_with", "options");
    if (!knownSize(options)) return badSize("patchcall_key_update_batch_with", "options");
    return updateBatch("patchcall_key_update_batch_with", rt, updates, count, toCpp(*options));
  });
}

}  // extern "C"
