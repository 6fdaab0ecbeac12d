// patchcall — the Registry (see registry.h). Every function here runs with the text mutex held.
#include "registry.h"

#include <algorithm>
#include <string>

#include "format.h"

namespace patchcall::detail {

Registry::Registry(const Options& options, CodeArena& arena, TextWriter& writer, Veneers& veneers, CodeObserver& observer)
    : options_(options), maxSites_(options.maxSites), arena_(arena), writer_(writer), veneers_(veneers), observer_(observer) {
  keys_.emplace_back();
  keyNames_.emplace_back();
  sites_.emplace_back();
  blobs_.emplace_back();
}

// ---- keys ----------------------------------------------------------------------------------

Result<Key> Registry::createKey(const void* initialTarget, std::string_view name, const KeyOptions& options) {
  if (initialTarget == nullptr && options.nullIsNoop) initialTarget = reinterpret_cast<const void*>(noopTarget_);
  PATCHCALL_TRY(validateTarget(initialTarget));
  if (keys_.size() > options_.maxKeys) {
    return Status(Error::kInvalidArgument, "Options::maxKeys (" + std::to_string(options_.maxKeys) + ") reached");
  }
  Result<uintptr_t> slot = trampolines_.take(arena_, arch::kTrampolineSlotSize);
  if (!slot) return slot.status();
  // The slot's layout: runtime/arch/<isa>/stubs.h (cell and jump field both aligned).
  uintptr_t entry = arch::trampolineEntry(*slot);
  uintptr_t field = arch::branchField(entry);
  auto target = reinterpret_cast<uintptr_t>(initialTarget);
  veneers_.dropPlanned();
  Result<uintptr_t> dest = veneers_.destination(entry, target);
  if (!dest) {
    veneers_.dropPlanned();
    return dest.status();
  }
  veneers_.reserveUser(field, *dest, target);
  // Allocate first: once the entry is in keyByTrampoline_, validateTarget accepts it.
  KeyRecord k;
  k.live = true;
  k.strictUpdates = options.strictUpdates;
  k.nullIsNoop = options.nullIsNoop;
  k.target = initialTarget;
  k.trampoline = entry;
  MiString keyName(name.data(), name.size());
  // A new veneer is written and synced before the jump names it.
  if (Status s = veneers_.publishPlanned(); !s.isOk()) return Status(s.code(), "createKey: " + s.message());
  if (keys_.size() == keys_.capacity()) keys_.reserve(2 * keys_.size() + 1);
  keyNames_.reserve(keys_.capacity());
  keyByTrampoline_.emplace(entry, static_cast<uint32_t>(keys_.size()));
  veneers_.noteUser(field, *dest, target);
  // Arena writes: nobody executes a fresh slot yet.
  (void)writer_.write(arch::trampolineCell(entry), &initialTarget, sizeof initialTarget);
  std::span<const uint8_t> head = arch::trampolineJumpHead();
  (void)writer_.write(entry, head.data(), head.size());
  writer_.storeField(field, arch::jumpFieldValue(field, *dest));
  keys_.push_back(std::move(k));
  keyNames_.push_back(std::move(keyName));
  // Publish the fresh trampoline to every core; without that the key is not handed out.
  if (Status synced = writer_.sync().syncOrError("createKey"); !synced.isOk()) {
    keys_.back().live = false;
    return synced;
  }
  auto id = static_cast<uint32_t>(keys_.size() - 1);
  if (observer_.filesEnabled()) {
    // The executable part of the slot: the jump (the cell before it is data).
    observer_.codeLoaded(entry, arch::kTrampolineSlotSize - (entry - arch::trampolineCell(entry)),
                         "trampoline:" + (name.empty() ? "key" + std::to_string(id) : std::string(name)));
  }
  return Key{id};
}

Status Registry::destroyKey(Key key) {
  KeyRecord* k = this->key(key);
  if (k == nullptr) return Status(Error::kUnknownKey, "destroyKey: key " + std::to_string(key.id) + " is not live");
  if (!k->sites.empty()) {
    return Status(Error::kStillTargeted, "destroyKey: " + std::to_string(k->sites.size()) +
                                             " sites are still bound to key " + std::to_string(key.id));
  }
  k->live = false;  // the trampoline slot stays (a stale function pointer still jumps somewhere valid)
  return Status::ok();
}

// ---- targets -------------------------------------------------------------------------------

Status Registry::validateTarget(const void* target) const {
  auto t = reinterpret_cast<uintptr_t>(target);
  if (t == 0) return Status(Error::kNullTarget, "target is null");
  if (options_.targetAlignment > 1 && t % options_.targetAlignment != 0) {
    return Status(Error::kMisalignedTarget, "target " + hex(t) + " is not " + std::to_string(options_.targetAlignment) +
                                                "-byte aligned (Options::targetAlignment)");
  }
  if (t % arch::kInstructionAlign != 0) {
    return Status(Error::kMisalignedTarget, "target " + hex(t) + " is not " + std::to_string(arch::kInstructionAlign) +
                                                "-byte aligned: no instruction of this ISA starts there");
  }
  if (onPollFlagPage(t)) {  // beside the arena, not in it
    return Status(Error::kInvalidArgument, "target " + hex(t) + " is patchcall's runtime page of the safepoint flag (data, not code)");
  }
  if (!arena_.contains(target)) return Status::ok();
  if (t == noopTarget_ || t == returnZeroTarget_) return Status::ok();
  if (t >= runtimePage_ && t < runtimePage_ + 4096) {
    return Status(Error::kInvalidArgument, "target " + hex(t) + " is patchcall's runtime page (safepoint stub), not code to call (its "
                                               "callable entries are noopTarget() and returnZeroTarget())");
  }
  if (trampolines_.contains(t)) {
    // A live key's trampoline entry is a function (calls chain to that key's target); the
    // rest of its slot (target cell, padding, the jump's field) is data.
    auto it = keyByTrampoline_.find(t);
    if (it == keyByTrampoline_.end() || it->second >= keys_.size()) {
      return Status(Error::kInvalidArgument, "target " + hex(t) + " lies inside a key's trampoline slot (target cell, "
                                             "padding or the jump's displacement); only trampoline(key) itself is callable");
    }
    if (!keys_[it->second].live) {
      return Status(Error::kInvalidArgument, "target " + hex(t) + " is the trampoline of destroyed key " + std::to_string(it->second));
    }
    return Status::ok();
  }
  if (veneers_.contains(t)) {
    return Status(Error::kInvalidArgument, "target " + hex(t) + " lies in a veneer (patchcall's stub for a far target); "
                                           "pass the far target itself");
  }
  if (const BlobRecord* b = blobContaining(t)) {
    if (b->state != BlobState::kLive) return Status(Error::kRetiredTarget, "target " + hex(t) + " lies in a retired blob");
    // Any instruction of a live blob may be an entry, but not the inside of a call site.
    auto after = std::upper_bound(b->sites.begin(), b->sites.end(), t,
                                  [&](uintptr_t x, uint32_t id) { return x < sites_[id].address; });
    if (after != b->sites.begin()) {
      const SiteRecord& s = sites_[*std::prev(after)];
      size_t length = arch::siteSize(s.form, (s.flags & kSiteStallGap) != 0);
      if (t > s.address && t < s.address + length) {
        return Status(Error::kInvalidArgument, "target " + hex(t) + " lies inside the call site at " + hex(s.address) +
                                                   " (patchcall rewrites those bytes)");
      }
    }
    return Status::ok();
  }
  return Status(Error::kRetiredTarget, "target " + hex(t) + " lies in arena memory that holds no live blob (freed or never installed)");
}

Status Registry::checkTrampolineChain(uint32_t keyId, const void* target, uint64_t batchStamp) const {
  if (!arena_.contains(target)) return Status::ok();  // the common case: C++ or foreign code
  auto t = reinterpret_cast<uintptr_t>(target);
  for (size_t steps = 0; trampolines_.contains(t); ++steps) {
    auto it = keyByTrampoline_.find(t);
    if (it == keyByTrampoline_.end() || it->second >= keys_.size()) return Status::ok();  // refused by validateTarget
    const KeyRecord& k = keys_[it->second];
    if (it->second == keyId || steps > keys_.size()) {
      return Status(Error::kInvalidArgument, "key " + std::to_string(keyId) + ": target " + hex(reinterpret_cast<uintptr_t>(target)) +
                                                 " leads through trampolines back to key " + std::to_string(keyId) +
                                                 "'s own trampoline (a call would jump in a loop forever)");
    }
    t = reinterpret_cast<uintptr_t>(k.batchStamp == batchStamp ? k.pending : k.target);
  }
  return Status::ok();
}

// ---- sites ---------------------------------------------------------------------------------

Result<uint32_t> Registry::addSite(uintptr_t address, uint32_t k, SiteForm form, uint8_t flags) {
  if (liveSites_ >= maxSites_) {
    return Status(Error::kTooManySites, "Options::maxSites (" + std::to_string(maxSites_) + ") reached");
  }
  uint32_t id;
  if (!freeSites_.empty()) {
    id = freeSites_.back();
    freeSites_.pop_back();
  } else {
    id = static_cast<uint32_t>(sites_.size());
    sites_.emplace_back();
  }
  sites_[id] = SiteRecord{address, k, form, flags, 0};
  keys_[k].sites.push_back(id);
  ++liveSites_;
  return id;
}

void Registry::reserveSites(size_t n) {
  if (freeSites_.size() < n) sites_.reserve(sites_.size() + n - freeSites_.size());
}

void Registry::removeSites(const MiVector<uint32_t>& ids) {
  MiVector<uint32_t> touchedKeys;
  for (uint32_t id : ids) {
    const SiteRecord& s = sites_[id];
    touchedKeys.push_back(s.key);
    if ((s.flags & kSiteForeign) == 0) {
      arch::SiteCalls calls = siteCallsOf(s);
      for (int c = 0; c < calls.count; ++c) veneers_.forgetUser(arch::branchField(calls.at[c]));
    }
    sites_[id].address = 0;
    toggleFlips_.erase(id);
  }
  std::sort(touchedKeys.begin(), touchedKeys.end());
  touchedKeys.erase(std::unique(touchedKeys.begin(), touchedKeys.end()), touchedKeys.end());
  for (uint32_t k : touchedKeys) {
    std::erase_if(keys_[k].sites, [&](uint32_t id) { return sites_[id].address == 0; });
  }
  freeSites_.insert(freeSites_.end(), ids.begin(), ids.end());
  liveSites_ -= ids.size();
  veneers_.retireOrphans();  // the sites' code is unreachable already (freed blob)
}

uint32_t Registry::siteInBlobAt(uintptr_t a) const {
  const BlobRecord* b = blobContaining(a);
  if (b == nullptr) return 0;
  auto it = std::lower_bound(b->sites.begin(), b->sites.end(), a, [&](uint32_t s, uintptr_t x) { return sites_[s].address < x; });
  return it != b->sites.end() && sites_[*it].address == a ? *it : 0;
}

uintptr_t Registry::decodeTarget(const SiteRecord& s) const {
  uintptr_t call = s.address;
  if ((s.flags & kSiteForeign) != 0) {
    // Its mapping may be gone (dlclose): read through /proc/self/mem, never dereference.
    uint8_t bytes[arch::kCallSize];
    if (!writer_.readForeign(call, bytes, sizeof bytes)) return 0;
    return veneers_.resolve(arch::callDestination(call, bytes));
  }
  if (s.form == SiteForm::kToggle) {
    arch::ToggleLayout t = toggleLayoutOf(s);
    call = (s.flags & kSiteToggleOnB) != 0 ? t.callB : t.callA;
  }
  return veneers_.resolve(arch::callDestination(call, reinterpret_cast<const uint8_t*>(call)));
}

// ---- blobs ---------------------------------------------------------------------------------

uint32_t Registry::addBlob(uintptr_t rx, size_t size, size_t sites, BlobNames names) {
  auto id = static_cast<uint32_t>(blobs_.size());
  BlobRecord b;
  b.rx = rx;
  b.size = size;
  b.state = BlobState::kLive;
  b.sites.reserve(sites);
  b.names = std::move(names);
  blobByAddress_.emplace(rx, id);
  blobs_.push_back(std::move(b));  // reserved (reserveBlob)
  return id;
}

const BlobRecord* Registry::blobContaining(uintptr_t address) const {
  auto it = blobByAddress_.upper_bound(address);
  if (it == blobByAddress_.begin()) return nullptr;
  const BlobRecord& b = blobs_[std::prev(it)->second];
  return address < b.rx + b.size ? &b : nullptr;
}

Status Registry::markRetired(const Blob& blob) {
  if (blob.id == 0 || blob.id >= blobs_.size() || blobs_[blob.id].rx != reinterpret_cast<uintptr_t>(blob.code)) {
    return Status(Error::kInvalidArgument, "retire: not a blob of this runtime");
  }
  BlobRecord& b = blobs_[blob.id];
  if (b.state != BlobState::kLive) return Status(Error::kDoubleRetire, "retire: blob " + std::to_string(blob.id) + " was already retired");
  for (size_t k = 1; k < keys_.size(); ++k) {
    auto t = reinterpret_cast<uintptr_t>(keys_[k].target);
    if (keys_[k].live && t >= b.rx && t < b.rx + b.size) {
      return Status(Error::kStillTargeted, "retire: key " + std::to_string(k) +
                                               (keyNames_[k].empty() ? "" : " ('" + std::string(keyNames_[k]) + "')") +
                                               " still targets blob " + std::to_string(blob.id) + "; update it first");
    }
  }
  b.state = BlobState::kRetired;
  return Status::ok();
}

void Registry::freeBlob(uint32_t id) {
  BlobRecord& b = blobs_[id];
  observer_.blobFreed(id);  // gdb and the unwinder forget it before its bytes become int3
  removeSites(b.sites);
  blobByAddress_.erase(b.rx);
  arena_.release(reinterpret_cast<uint8_t*>(b.rx), b.size);
  b.state = BlobState::kFreed;
  MiVector<uint32_t>().swap(b.sites);
  b.names = BlobNames();
}

void Registry::countInto(RuntimeStats& s) const {
  for (const KeyRecord& k : keys_) {
    if (k.live) ++s.keys;
    s.siteMetadataBytes += k.sites.capacity() * sizeof(uint32_t);
  }
  for (const BlobRecord& b : blobs_) {
    if (b.state != BlobState::kFreed) ++s.blobs;
    s.siteMetadataBytes += b.sites.capacity() * sizeof(uint32_t);
  }
  s.siteMetadataBytes += sites_.capacity() * sizeof(SiteRecord) + freeSites_.capacity() * sizeof(uint32_t);
  s.sites = liveSites_;
  s.veneers = veneers_.live();
}

}  // namespace patchcall::detail
