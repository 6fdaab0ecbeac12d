// patchcall — the C API's walks over keys, sites and blobs (patchcall.h, "introspection"),
// over the snapshots of Runtime::keys, sites and blobs: `visit` runs outside the text mutex,
// so it may call back into the runtime.
#include <vector>

#include "c_api_support.h"

namespace {

using namespace patchcall::capi;

// Calls visit for each item of a snapshot; a nonzero return stops the walk and is returned.
template <typename T, typename Convert>
int walk(const char* function, const patchcall_runtime* rt, bool visitNull,
         patchcall::Result<std::vector<T>> (patchcall::Runtime::*snapshot)() const, Convert&& convert) {
  if (rt == nullptr) return nullArgument(function, "rt");
  if (visitNull) return nullArgument(function, "visit");
  return guarded(function, [&] {
    patchcall::Result<std::vector<T>> items = (rt->rt.*snapshot)();
    if (!items) return fail(items.status());
    for (const T& item : *items) {
      if (int stop = convert(item); stop != 0) return stop;
    }
    return succeed();
  });
}

}  // namespace

extern "C" {

int patchcall_keys_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_key_info* key), void* user) {
  return walk("patchcall_keys_each", rt, visit == nullptr, &patchcall::Runtime::keys, [&](const patchcall::KeyInfo& k) {
    patchcall_key_info c{k.key.id, k.name.c_str(), k.target, k.trampoline, k.sites};
    return visit(user, &c);
  });
}

int patchcall_sites_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_site_info* site), void* user) {
  return walk("patchcall_sites_each", rt, visit == nullptr, &patchcall::Runtime::sites, [&](const patchcall::SiteInfo& s) {
    patchcall_site_info c{s.address, s.key.id, static_cast<int>(s.form), s.target, s.foreign ? 1 : 0};
    return visit(user, &c);
  });
}

int patchcall_blobs_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_blob_info* blob), void* user) {
  std::vector<patchcall_named_range> ranges;
  return walk("patchcall_blobs_each", rt, visit == nullptr, &patchcall::Runtime::blobs, [&](const patchcall::BlobInfo& b) {
    ranges.clear();
    for (const patchcall::BlobInfo::Range& r : b.ranges) ranges.push_back({r.offset, r.size, r.name.c_str()});
    patchcall_blob_info c{{b.blob.id, b.blob.code, b.blob.size}, b.name.c_str(), ranges.data(), ranges.size(),
                          static_cast<int>(b.frameLayout), b.retired ? 1 : 0, b.sites};
    return visit(user, &c);
  });
}

}  // extern "C"
