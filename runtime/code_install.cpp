// patchcall — the Installer (see code_install.h).
#include "code_install.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "test_hooks.h"
#include "trap_table.h"

namespace patchcall::detail {

namespace {

size_t siteLength(const SiteSpec& s, const uint8_t* at, size_t room) { return arch::siteLength(s.form, at, room); }

// Checks that the bytes at `at` are what the emitter writes for the form.
Status checkSiteBytes(const uint8_t* at, const SiteSpec& s, uint8_t* flags) {
  bool stallGap = false;
  std::string where = " at offset " + std::to_string(s.offset);
  switch (arch::checkSiteBytes(s.form, at, &stallGap)) {
    case arch::SiteCheck::kOk:
      if (stallGap && testHooks() == nullptr) break;  // the stall-gap toggle exists in hook builds only
      if (s.form == SiteForm::kBreakpoint && TrapTable::callEmulationBlocked()) {
        return Status(Error::kUnsupportedSite, "Breakpoint site" + where + ": this process runs with shadow stacks, so the "
                                               "SIGTRAP handler cannot emulate its call (use kDirect or kToggle sites)");
      }
      *flags = stallGap ? kSiteStallGap : 0;
      return Status::ok();
    case arch::SiteCheck::kNotACall:
      return Status(Error::kInvalidArgument, "site" + where + " is not a " + arch::kCallName);
    case arch::SiteCheck::kUnalignedField:
      return Status(Error::kInvalidArgument, "Direct site" + where + " has an unaligned " + arch::kFieldName +
                                                 (arch::kBreakpointProtocol ? " (use kBreakpoint or kAuto)"
                                                                            : " (every instruction here is 4-byte aligned)"));
    case arch::SiteCheck::kMalformedToggle:
      break;
    case arch::SiteCheck::kUnresolvedForm:
      return Status(Error::kInvalidArgument, "site form kAuto must be resolved before commitCode");
    case arch::SiteCheck::kUnsupportedForm:
      return Status(Error::kInvalidArgument, "site" + where + ": " + arch::kUnsupportedFormWhy);
  }
  return Status(Error::kInvalidArgument, "toggle site" + where + " is malformed");
}

}  // namespace

Result<CodeReservation> Installer::reserve(size_t size, bool* mustUnshare) {
  // Held throughout: a fork cannot come between the check and the reservation's entry.
  std::lock_guard<std::mutex> lock(reservationsMutex_);
  *mustUnshare = arena_.shared();
  if (*mustUnshare) return Status(Error::kForkedChild, "reserveCode: the code arena is still shared after fork()");
  Result<uint8_t*> rx = arena_.allocate(size);
  if (!rx) return rx.status();
  try {
    reservations_.emplace(reinterpret_cast<uintptr_t>(*rx), Reservation{size, false});
  } catch (const std::bad_alloc&) {
    arena_.release(*rx, size);
    throw;
  }
  return CodeReservation{*rx, arena_.toRw(*rx), size};
}

void Installer::abandon(const CodeReservation& r) {
  // Held across the release: the arena stays this process's own until the fill is done.
  std::lock_guard<std::mutex> lock(reservationsMutex_);
  auto it = reservations_.find(reinterpret_cast<uintptr_t>(r.rx));
  if (it == reservations_.end() || it->second.size != r.size || it->second.committing) return;
  reservations_.erase(it);
  arena_.release(r.rx, r.size);
}

// Under the text mutex (commit's caller) and the reservations' mutex: once claimed, no
// other commit or abandon touches the reservation, and no fork can share the arena (prepare
// takes the text mutex and finds the reservation outstanding).
Status Installer::claim(const CodeReservation& r) {
  std::lock_guard<std::mutex> lock(reservationsMutex_);
  auto it = reservations_.find(reinterpret_cast<uintptr_t>(r.rx));
  if (it == reservations_.end() || it->second.size != r.size || r.rw != arena_.toRw(r.rx)) {
    return Status(Error::kInvalidArgument,
                  "commitCode: not an outstanding reservation of this runtime (forged, already committed or abandoned)");
  }
  if (it->second.committing) {
    return Status(Error::kInvalidArgument, "commitCode: another thread is committing this reservation");
  }
  it->second.committing = true;
  return Status::ok();
}

void Installer::unclaim(const CodeReservation& r) noexcept {
  std::lock_guard<std::mutex> lock(reservationsMutex_);
  auto it = reservations_.find(reinterpret_cast<uintptr_t>(r.rx));
  if (it != reservations_.end()) it->second.committing = false;
}

Result<Blob> Installer::commit(const CodeReservation& r, std::span<const SiteSpec> specs, const CodeInfo& info) {
  PATCHCALL_TRY(claim(r));
  struct Unclaim {  // refused before the sites are bound: the reservation is the caller's again
    Installer& in;
    const CodeReservation& r;
    bool armed = true;
    ~Unclaim() {
      if (armed) in.unclaim(r);
    }
  } unclaimOnRefusal{*this, r};
  MiVector<SiteSpec> sorted(specs.begin(), specs.end());
  std::sort(sorted.begin(), sorted.end(), [](const SiteSpec& a, const SiteSpec& b) { return a.offset < b.offset; });
  veneers_.dropPlanned();
  struct DropPlannedVeneers {  // a refused commit writes no veneer
    Veneers& v;
    ~DropPlannedVeneers() { v.dropPlanned(); }
  } dropPlanned{veneers_};
  auto rx = reinterpret_cast<uintptr_t>(r.rx);
  MiVector<uint8_t> flags(sorted.size());
  MiVector<uintptr_t> destinations(sorted.size() * 2);  // per site, per call (a toggle has two)
  auto callsOf = [&](size_t i) { return siteCallsOf(SiteRecord{rx + sorted[i].offset, 0, sorted[i].form, flags[i], 0}); };
  auto targetOf = [&](size_t i) { return reinterpret_cast<uintptr_t>(registry_.key(sorted[i].key)->target); };

  // Validate everything before the first write or registration.
  for (size_t i = 0; i < sorted.size(); ++i) {
    const SiteSpec& s = sorted[i];
    size_t room = s.offset < r.size ? r.size - s.offset : 0;
    if (siteLength(s, r.rw + s.offset, room) > room ||
        (i > 0 && s.offset < sorted[i - 1].offset + siteLength(sorted[i - 1], r.rw + sorted[i - 1].offset, arch::kToggleSize))) {
      return Status(Error::kInvalidArgument, "site at offset " + std::to_string(s.offset) + " overlaps another or the end");
    }
    if (registry_.key(s.key) == nullptr) {
      return Status(Error::kUnknownKey, "site at offset " + std::to_string(s.offset) + ": key is not live");
    }
    PATCHCALL_TRY(checkSiteBytes(r.rw + s.offset, s, &flags[i]));
    arch::SiteCalls calls = callsOf(i);
    for (int c = 0; c < calls.count; ++c) {
      Result<uintptr_t> d = veneers_.destination(calls.at[c], targetOf(i));
      if (!d) return d.status();
      destinations[2 * i + c] = *d;
    }
  }
  PreparedBlob prepared;
  PATCHCALL_TRY(observer_.prepare(info, rx, r.rw, r.size, prepared));
  if (registry_.liveSites() + sorted.size() > registry_.maxSites()) {
    return Status(Error::kTooManySites, "installing " + std::to_string(sorted.size()) + " sites would exceed Options::maxSites (" +
                                            std::to_string(registry_.maxSites()) + ")");
  }
  // Allocate every container slot first, so an out-of-memory cannot leave half a blob
  // registered; nothing below this block allocates.
  MiHashMap<uint32_t, uint32_t> perKey;
  for (const SiteSpec& s : sorted) ++perKey[s.key.id];
  for (auto& [k, n] : perKey) registry_.keyAt(k).sites.reserve(registry_.keyAt(k).sites.size() + n);
  registry_.reserveSites(sorted.size());
  registry_.reserveBlob();
  BlobNames names;
  names.name = MiString(info.name.data(), info.name.size());
  names.frameLayout = info.frameLayout;
  for (const observe::CodeRange& c : prepared.ranges) {
    names.ranges.push_back(BlobRange{static_cast<uint32_t>(c.start - rx), static_cast<uint32_t>(c.size),
                                     MiString(c.name.data(), c.name.size())});
  }
  // New veneers: written and synced before the code that calls them is handed out; then
  // count the new calls' references (allocation first). Refused before any site is bound:
  // the reservation stays the caller's (abandon or retry).
  PATCHCALL_TRY(veneers_.publishPlanned());
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < sorted.size(); ++i) {
      arch::SiteCalls calls = callsOf(i);
      for (int c = 0; c < calls.count; ++c) {
        uintptr_t field = arch::branchField(calls.at[c]);
        if (pass == 0) veneers_.reserveUser(field, destinations[2 * i + c], targetOf(i));
        else veneers_.noteUser(field, destinations[2 * i + c], targetOf(i));
      }
    }
  }
  uint32_t blobId = registry_.addBlob(rx, r.size, sorted.size(), std::move(names));
  // Nobody executes this code yet: plain writes through the RW alias.
  for (size_t i = 0; i < sorted.size(); ++i) {
    arch::SiteCalls calls = callsOf(i);
    for (int c = 0; c < calls.count; ++c) {
      uintptr_t field = arch::branchField(calls.at[c]);
      writer_.storeField(field, arch::callFieldValue(field, destinations[2 * i + c]));
    }
    Result<uint32_t> id = registry_.addSite(rx + sorted[i].offset, sorted[i].key.id, sorted[i].form, flags[i]);
    if (!id) return id.status();  // cannot happen: capacity checked above
    registry_.addBlobSite(blobId, *id);  // reserved by addBlob
  }
  {
    std::lock_guard<std::mutex> lock(reservationsMutex_);
    reservations_.erase(rx);  // node free: cannot throw
  }
  unclaimOnRefusal.armed = false;
  // Every core sees the complete new code before anyone is handed it; if it cannot be made
  // sure, nobody is: the blob is unregistered and freed (no thread can be running it yet).
  arch::codeWritten(reinterpret_cast<uintptr_t>(r.rx), r.size);  // the embedder wrote it through the RW alias
  if (Status synced = writer_.sync().syncOrError("commitCode"); !synced.isOk()) {
    registry_.freeBlob(blobId);
    return synced;
  }
  // Nobody has the blob yet (its address is handed out below): registering its frames now
  // is in time for the first call; a refusal frees it like a failed sync.
  if (Status observed = observer_.blobInstalled(blobId, rx, r.size, info.name, prepared); !observed.isOk()) {
    registry_.freeBlob(blobId);
    return observed;
  }
  return Blob{blobId, r.rx, r.size};
}

}  // namespace patchcall::detail
