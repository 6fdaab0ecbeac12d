// patchcall — the C API for code (patchcall.h, "code"): install, reserve/commit/abandon and
// retire, over Runtime's code functions; the site specs they take are checked here.
#include <cstdio>
#include <string>
#include <vector>

#include "c_api_support.h"
#include "runtime_access.h"
#include "runtime_impl.h"

namespace {

using namespace patchcall::capi;

bool validForm(int form) { return form >= PATCHCALL_SITE_DIRECT && form <= PATCHCALL_SITE_AUTO; }

// Copies C site specs; INVALID_ARGUMENT for a form outside the enum.
int convertSites(const char* function, const patchcall_runtime* rt, const patchcall_site_spec* sites, size_t count,
                 std::vector<patchcall::SiteSpec>* out) {
  if (count != 0 && sites == nullptr) return nullArgument(function, "sites");
  if (size_t limit = patchcall::detail::RuntimeAccess::impl(rt->rt).options.maxSites; count > limit) {
    return tooMany(PATCHCALL_E_TOO_MANY_SITES, function, "sites", count, limit);
  }
  out->reserve(count);
  for (size_t i = 0; i < count; ++i) {
    if (!validForm(sites[i].form)) {
      char message[256];
      std::snprintf(message, sizeof message, "%s: site %zu has form %d, not a patchcall_site_form", function, i, sites[i].form);
      return fail(PATCHCALL_E_INVALID_ARGUMENT, message);
    }
    out->push_back({sites[i].offset, patchcall::Key{sites[i].key}, static_cast<patchcall::SiteForm>(sites[i].form)});
  }
  return PATCHCALL_OK;
}

patchcall_blob toC(const patchcall::Blob& b) { return patchcall_blob{b.id, b.code, b.size}; }


// patchcall_code_info -> CodeInfo; `ranges` owns the converted ranges.
int convertInfo(const char* function, const patchcall_code_info* info, std::vector<patchcall::NamedRange>* ranges,
                patchcall::CodeInfo* out) {
  if (info == nullptr) return PATCHCALL_OK;
  if (info->struct_size != sizeof(patchcall_code_info)) {
    return fail(PATCHCALL_E_INVALID_ARGUMENT, (std::string(function) + ": info->struct_size is not one this library knows; "
                                                                       "fill it with patchcall_code_info_init first").c_str());
  }
  if (info->frame_layout < PATCHCALL_FRAME_NONE || info->frame_layout > PATCHCALL_FRAME_POINTER_ANY_EPILOGUE) {
    return fail(PATCHCALL_E_INVALID_ARGUMENT, (std::string(function) + ": info->frame_layout is not a patchcall_frame_layout").c_str());
  }
  if (info->ranges == nullptr && info->range_count != 0) return nullArgument(function, "info->ranges");
  for (size_t i = 0; i < info->range_count; ++i) {
    const patchcall_named_range& r = info->ranges[i];
    ranges->push_back({r.offset, r.size, r.name != nullptr ? std::string_view(r.name) : std::string_view()});
  }
  out->name = info->name != nullptr ? std::string_view(info->name) : std::string_view();
  out->ranges = *ranges;
  out->frameLayout = static_cast<patchcall::FrameLayout>(info->frame_layout);
  return PATCHCALL_OK;
}

int installCode(const char* function, patchcall_runtime* rt, const uint8_t* bytes, size_t size,
                const patchcall_site_spec* sites, size_t site_count, const patchcall_code_info* info, patchcall_blob* out) {
  return guarded(function, [&] {
    if (rt == nullptr) return nullArgument(function, "rt");
    if (out == nullptr) return nullArgument(function, "out");
    *out = patchcall_blob{0, nullptr, 0};
    if (bytes == nullptr && size != 0) return nullArgument(function, "bytes");
    std::vector<patchcall::SiteSpec> specs;
    if (int e = convertSites(function, rt, sites, site_count, &specs); e != PATCHCALL_OK) return e;
    std::vector<patchcall::NamedRange> ranges;
    patchcall::CodeInfo ci;
    if (int e = convertInfo(function, info, &ranges, &ci); e != PATCHCALL_OK) return e;
    patchcall::Result<patchcall::Blob> blob = rt->rt.installCode(std::span<const uint8_t>(bytes, size), specs, ci);
    if (!blob) return fail(blob.status());
    *out = toC(*blob);
    return succeed();
  });
}

int commitCode(const char* function, patchcall_runtime* rt, const patchcall_reservation* reservation,
               const patchcall_site_spec* sites, size_t site_count, const patchcall_code_info* info, patchcall_blob* out) {
  return guarded(function, [&] {
    if (rt == nullptr) return nullArgument(function, "rt");
    if (reservation == nullptr) return nullArgument(function, "reservation");
    if (out == nullptr) return nullArgument(function, "out");
    *out = patchcall_blob{0, nullptr, 0};
    std::vector<patchcall::SiteSpec> specs;
    if (int e = convertSites(function, rt, sites, site_count, &specs); e != PATCHCALL_OK) return e;
    std::vector<patchcall::NamedRange> ranges;
    patchcall::CodeInfo ci;
    if (int e = convertInfo(function, info, &ranges, &ci); e != PATCHCALL_OK) return e;
    patchcall::CodeReservation r{reservation->rx, reservation->rw, reservation->size};
    patchcall::Result<patchcall::Blob> blob = rt->rt.commitCode(r, specs, ci);
    if (!blob) return fail(blob.status());
    *out = toC(*blob);
    return succeed();
  });
}

}  // namespace

extern "C" {

void patchcall_code_info_init(patchcall_code_info* info) {
  if (info == nullptr) return;
  std::memset(info, 0, sizeof *info);
  info->struct_size = sizeof *info;
  info->frame_layout = PATCHCALL_FRAME_NONE;
}

int patchcall_code_install(patchcall_runtime* rt, const uint8_t* bytes, size_t size, const patchcall_site_spec* sites,
                           size_t site_count, patchcall_blob* out) {
  return installCode("patchcall_code_install", rt, bytes, size, sites, site_count, nullptr, out);
}

int patchcall_code_install_with(patchcall_runtime* rt, const uint8_t* bytes, size_t size, const patchcall_site_spec* sites,
                                size_t site_count, const patchcall_code_info* info, patchcall_blob* out) {
  if (info == nullptr) return nullArgument("patchcall_code_install_with", "info");
  return installCode("patchcall_code_install_with", rt, bytes, size, sites, site_count, info, out);
}

int patchcall_code_reserve(patchcall_runtime* rt, size_t size, patchcall_reservation* out) {
  return guarded("patchcall_code_reserve", [&] {
    if (rt == nullptr) return nullArgument("patchcall_code_reserve", "rt");
    if (out == nullptr) return nullArgument("patchcall_code_reserve", "out");
    *out = patchcall_reservation{nullptr, nullptr, 0};
    patchcall::Result<patchcall::CodeReservation> r = rt->rt.reserveCode(size);
    if (!r) return fail(r.status());
    *out = patchcall_reservation{r->rx, r->rw, r->size};
    return succeed();
  });
}

int patchcall_code_commit(patchcall_runtime* rt, const patchcall_reservation* reservation,
                          const patchcall_site_spec* sites, size_t site_count, patchcall_blob* out) {
  return commitCode("patchcall_code_commit", rt, reservation, sites, site_count, nullptr, out);
}

int patchcall_code_commit_with(patchcall_runtime* rt, const patchcall_reservation* reservation,
                               const patchcall_site_spec* sites, size_t site_count, const patchcall_code_info* info,
                               patchcall_blob* out) {
  if (info == nullptr) return nullArgument("patchcall_code_commit_with", "info");
  return commitCode("patchcall_code_commit_with", rt, reservation, sites, site_count, info, out);
}

int patchcall_code_abandon(patchcall_runtime* rt, const patchcall_reservation* reservation) {
  if (rt == nullptr) return nullArgument("patchcall_code_abandon", "rt");
  if (reservation == nullptr) return nullArgument("patchcall_code_abandon", "reservation");
  if (reservation->rx == nullptr) return fail(PATCHCALL_E_INVALID_ARGUMENT, "patchcall_code_abandon: empty reservation");
  patchcall::ArenaInfo a = rt->rt.arenaInfo();
  auto base = static_cast<const uint8_t*>(a.rxBase);
  if (reservation->rx < base || reservation->rx + reservation->size > base + a.size) {
    return fail(PATCHCALL_E_INVALID_ARGUMENT, "patchcall_code_abandon: not a reservation of this runtime's arena");
  }
  rt->rt.abandonCode(patchcall::CodeReservation{reservation->rx, reservation->rw, reservation->size});
  return succeed();
}

int patchcall_blob_retire(patchcall_runtime* rt, patchcall_blob blob) {
  return guarded("patchcall_blob_retire", [&] {
    if (rt == nullptr) return nullArgument("patchcall_blob_retire", "rt");
    return report(rt->rt.retire(patchcall::Blob{blob.id, blob.code, blob.size}));
  });
}

}  // extern "C"
