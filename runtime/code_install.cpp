// patchcall — installing code: reservations, committing sites, retiring blobs.

#include <algorithm>
#include <cstring>

#include "reclaimer.h"
#include "runtime_impl.h"

namespace patchcall {

using detail::BlobRecord;
using detail::BlobState;
using detail::SiteRecord;

namespace {

size_t siteLength(const SiteSpec& s, const uint8_t* at, size_t room) { return arch::siteLength(s.form, at, room); }

// Checks that the bytes at `at` are what the emitter writes for the form.
Status checkSiteBytes(const uint8_t* at, const SiteSpec& s, uint8_t* flags) {
  bool stallGap = false;
  std::string where = " at offset " + std::to_string(s.offset);
  switch (arch::checkSiteBytes(s.form, at, &stallGap)) {
    case arch::SiteCheck::kOk:
      *flags = stallGap ? detail::kSiteStallGap : 0;
      return Status::ok();
    case arch::SiteCheck::kNotACall:
      return Status(Error::kInvalidArgument, "site" + where + " is not an E8 call");
    case arch::SiteCheck::kUnalignedField:
      return Status(Error::kInvalidArgument, "Direct site" + where + " has an unaligned rel32 (use kBreakpoint or kAuto)");
    case arch::SiteCheck::kMalformedToggle:
      return Status(Error::kInvalidArgument, "toggle site" + where + " is malformed");
    case arch::SiteCheck::kUnresolvedForm:
      break;
  }
  return Status(Error::kInvalidArgument, "site form kAuto must be resolved before commitCode");
}

}  // namespace

Result<CodeReservation> Runtime::reserveCode(size_t size) {
  return detail::catchOutOfMemory("reserveCode", [&]() -> Result<CodeReservation> {
    PATCHCALL_TRY(impl_->checkOwnProcess());
    Result<uint8_t*> rx = impl_->arena->allocate(size);
    if (!rx) return rx.status();
    try {
      std::lock_guard<std::mutex> lock(impl_->reservationsMutex);
      impl_->reservations.emplace(reinterpret_cast<uintptr_t>(*rx), size);
    } catch (const std::bad_alloc&) {
      impl_->arena->release(*rx, size);
      throw;
    }
    return CodeReservation{*rx, impl_->arena->toRw(*rx), size};
  });
}

// Only an outstanding reservation is released; anything else (a committed blob, a forged or
// repeated handle) is ignored, so live code is never int3-filled by mistake.
void Runtime::abandonCode(const CodeReservation& r) {
  if (!impl_->checkOwnProcess().isOk()) return;  // the int3 fill would land in the parent's code
  {
    std::lock_guard<std::mutex> lock(impl_->reservationsMutex);
    auto it = impl_->reservations.find(reinterpret_cast<uintptr_t>(r.rx));
    if (it == impl_->reservations.end() || it->second != r.size) return;
    impl_->reservations.erase(it);
  }
  impl_->arena->release(r.rx, r.size);
}

Result<Blob> Runtime::commitCode(const CodeReservation& r, std::span<const SiteSpec> specs) {
  return detail::catchOutOfMemory("commitCode", [&]() -> Result<Blob> {
    Impl& m = *impl_;
    {
      std::lock_guard<std::mutex> lock(m.reservationsMutex);
      auto it = m.reservations.find(reinterpret_cast<uintptr_t>(r.rx));
      if (it == m.reservations.end() || it->second != r.size || r.rw != m.arena->toRw(r.rx)) {
        return Status(Error::kInvalidArgument,
                      "commitCode: not an outstanding reservation of this runtime (forged, already committed or abandoned)");
      }
    }
    PATCHCALL_TRY(m.refuseReentry("commitCode"));
    PATCHCALL_TRY(m.checkOwnProcess());
    detail::MiVector<SiteSpec> sorted(specs.begin(), specs.end());
    std::sort(sorted.begin(), sorted.end(), [](const SiteSpec& a, const SiteSpec& b) { return a.offset < b.offset; });

    std::lock_guard<detail::FairMutex> lock(m.textMutex);
    m.dropPendingVeneers();
    struct DropPlannedVeneers {  // a refused commit writes no veneer
      Runtime::Impl& m;
      ~DropPlannedVeneers() { m.dropPendingVeneers(); }
    } dropPlanned{m};
    detail::MiVector<uint8_t> flags(sorted.size());
    detail::MiVector<uintptr_t> destinations(sorted.size() * 2);
    // Validate everything before the first write or registration.
    for (size_t i = 0; i < sorted.size(); ++i) {
      const SiteSpec& s = sorted[i];
      size_t room = s.offset < r.size ? r.size - s.offset : 0;
      if (siteLength(s, r.rw + s.offset, room) > room ||
          (i > 0 && s.offset < sorted[i - 1].offset + siteLength(sorted[i - 1], r.rw + sorted[i - 1].offset, arch::kToggleSize))) {
        return Status(Error::kInvalidArgument, "site at offset " + std::to_string(s.offset) + " overlaps another or the end");
      }
      detail::KeyRecord* k = m.key(s.key);
      if (k == nullptr) return Status(Error::kUnknownKey, "site at offset " + std::to_string(s.offset) + ": key is not live");
      PATCHCALL_TRY(checkSiteBytes(r.rw + s.offset, s, &flags[i]));
      auto target = reinterpret_cast<uintptr_t>(k->target);
      uintptr_t at = reinterpret_cast<uintptr_t>(r.rx) + s.offset;
      arch::SiteCalls calls = detail::siteCallsOf(SiteRecord{at, 0, s.form, flags[i], 0});
      for (int c = 0; c < calls.count; ++c) {
        Result<uintptr_t> d = m.reachable(calls.at[c], target);
        if (!d) return d.status();
        destinations[2 * i + c] = *d;
      }
    }
    if (m.liveSites + sorted.size() > m.options.maxSites) {
      return Status(Error::kTooManySites, "installing " + std::to_string(sorted.size()) + " sites would exceed Options::maxSites (" +
                                              std::to_string(m.options.maxSites) + ")");
    }
    // Allocate every container slot first, so an out-of-memory cannot leave half a blob
    // registered; nothing below this block allocates.
    detail::MiHashMap<uint32_t, uint32_t> perKey;
    for (const SiteSpec& s : sorted) ++perKey[s.key.id];
    for (auto& [k, n] : perKey) m.keys[k].sites.reserve(m.keys[k].sites.size() + n);
    if (m.freeSites.size() < sorted.size()) m.sites.reserve(m.sites.size() + sorted.size() - m.freeSites.size());
    m.blobs.reserve(m.blobs.size() + 1);
    // New veneers: written and synced before the code that calls them is handed out; then
    // count the new calls' references (allocation first).
    // Refused before any site is bound: the reservation stays the caller's (abandon or retry).
    PATCHCALL_TRY(m.publishPendingVeneers());
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t i = 0; i < sorted.size(); ++i) {
        uintptr_t at = reinterpret_cast<uintptr_t>(r.rx) + sorted[i].offset;
        auto target = reinterpret_cast<uintptr_t>(m.keys[sorted[i].key.id].target);
        arch::SiteCalls calls = detail::siteCallsOf(SiteRecord{at, 0, sorted[i].form, flags[i], 0});
        for (int c = 0; c < calls.count; ++c) {
          uintptr_t field = arch::branchField(calls.at[c]);
          if (pass == 0) m.reserveCallDestination(field, destinations[2 * i + c], target);
          else m.noteCallDestination(field, destinations[2 * i + c], target);
        }
      }
    }
    uint32_t blobId = static_cast<uint32_t>(m.blobs.size());
    m.blobByAddress.emplace(reinterpret_cast<uintptr_t>(r.rx), blobId);
    // Nobody executes this code yet: plain writes through the RW alias.
    BlobRecord blob;
    blob.rx = reinterpret_cast<uintptr_t>(r.rx);
    blob.size = r.size;
    blob.state = BlobState::kLive;
    blob.sites.reserve(sorted.size());
    for (size_t i = 0; i < sorted.size(); ++i) {
      const SiteSpec& s = sorted[i];
      uintptr_t at = blob.rx + s.offset;
      SiteRecord rec{at, s.key.id, s.form, flags[i], 0};
      arch::SiteCalls calls = detail::siteCallsOf(rec);
      for (int c = 0; c < calls.count; ++c) {
        uintptr_t field = arch::branchField(calls.at[c]);
        int32_t value = arch::callFieldValue(field, destinations[2 * i + c]);
        m.write(field, &value, arch::kFieldSize);
      }
      Result<uint32_t> id = m.addSite(at, s.key.id, s.form, flags[i]);
      if (!id) return id.status();  // cannot happen: capacity checked above
      blob.sites.push_back(*id);
    }
    m.blobs.push_back(std::move(blob));
    {
      std::lock_guard<std::mutex> lock(m.reservationsMutex);
      m.reservations.erase(reinterpret_cast<uintptr_t>(r.rx));  // node free: cannot throw
    }
    // Every core sees the complete new code before anyone is handed it; if it cannot be made
    // sure, nobody is: the blob is unregistered and freed (no thread can be running it yet).
    if (Status synced = m.sync.syncOrError("commitCode"); !synced.isOk()) {
      m.freeBlobLocked(blobId);
      return synced;
    }
    return Blob{blobId, r.rx, r.size};
  });
}

Result<Blob> Runtime::installCode(std::span<const uint8_t> bytes, std::span<const SiteSpec> sites) {
  return detail::catchOutOfMemory("installCode", [&]() -> Result<Blob> {
    Result<CodeReservation> r = reserveCode(bytes.size());
    if (!r) return r.status();
    std::memcpy(r->rw, bytes.data(), bytes.size());
    Result<Blob> blob = commitCode(*r, sites);
    if (!blob) abandonCode(*r);
    return blob;
  });
}

Status Runtime::retire(Blob blob) {
  return detail::catchOutOfMemory("retire", [&]() -> Status {
    Impl& m = *impl_;
    PATCHCALL_TRY(m.refuseReentry("retire(Blob)"));
    PATCHCALL_TRY(m.checkOwnProcess());
    {
      std::lock_guard<detail::FairMutex> lock(m.textMutex);
      if (blob.id == 0 || blob.id >= m.blobs.size() || m.blobs[blob.id].rx != reinterpret_cast<uintptr_t>(blob.code)) {
        return Status(Error::kInvalidArgument, "retire: not a blob of this runtime");
      }
      BlobRecord& b = m.blobs[blob.id];
      if (b.state != BlobState::kLive) return Status(Error::kDoubleRetire, "retire: blob " + std::to_string(blob.id) + " was already retired");
      for (size_t k = 1; k < m.keys.size(); ++k) {
        auto t = reinterpret_cast<uintptr_t>(m.keys[k].target);
        if (m.keys[k].live && t >= b.rx && t < b.rx + b.size) {
          return Status(Error::kStillTargeted, "retire: key " + std::to_string(k) +
                                                   (m.keys[k].name.empty() ? "" : " ('" + std::string(m.keys[k].name) + "')") +
                                                   " still targets blob " + std::to_string(blob.id) + "; update it first");
        }
      }
      b.state = BlobState::kRetired;
    }
    try {
      m.reclaimer->retireBlob(blob.id);
    } catch (const std::bad_alloc&) {
      std::lock_guard<detail::FairMutex> lock(m.textMutex);
      m.blobs[blob.id].state = BlobState::kLive;  // not queued: leave it live for a retry
      throw;
    }
    return Status::ok();
  });
}

Result<SiteInfo> Runtime::site(const void* address) const {
  return detail::catchOutOfMemory("site", [&]() -> Result<SiteInfo> {
    Impl& m = *impl_;
    auto lock = m.readLock();
    auto a = reinterpret_cast<uintptr_t>(address);
    uint32_t id = 0;
    if (auto f = m.foreignSites.find(a); f != m.foreignSites.end()) {
      id = f->second.id;
    } else if (const BlobRecord* b = m.blobContaining(a)) {
      auto it = std::lower_bound(b->sites.begin(), b->sites.end(), a,
                                 [&](uint32_t s, uintptr_t x) { return m.sites[s].address < x; });
      if (it != b->sites.end() && m.sites[*it].address == a) id = *it;
    }
    if (id == 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%p", address);
      return Status(Error::kUnknownSite, std::string("no call site is registered at ") + buf);
    }
    const SiteRecord& s = m.sites[id];
    return SiteInfo{address, Key{s.key}, s.form, reinterpret_cast<const void*>(m.decodeTarget(s)),
                    (s.flags & detail::kSiteForeign) != 0};
  });
}

}  // namespace patchcall
