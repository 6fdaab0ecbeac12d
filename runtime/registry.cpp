// patchcall — the registry (keys, sites, blobs, trampolines, veneers) and raw code writes.
// Every function here runs with Runtime::Impl::textMutex held.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "format.h"
#include "fork_safety.h"
#include "reclaimer.h"
#include "runtime_impl.h"
#include "test_hooks.h"

namespace patchcall {

using detail::SiteRecord;

thread_local const void* detail::tlsTextMutexOwner = nullptr;

namespace {
constexpr size_t kPoolChunk = 4096;

using detail::hex;
}  // namespace

Runtime::Impl::~Impl() {
  detail::untrackForFork(this);  // no fork may copy a runtime being torn down
  if (reclaimer) reclaimer->stop();
  reclaimer.reset();
  quiescence.reset();
  if (procMemFd >= 0) close(procMemFd);
}

detail::KeyRecord* Runtime::Impl::key(Key k) {
  if (k.id == 0 || k.id >= keys.size() || !keys[k.id].live) return nullptr;
  return &keys[k.id];
}

const detail::BlobRecord* Runtime::Impl::blobContaining(uintptr_t address) const {
  auto it = blobByAddress.upper_bound(address);
  if (it == blobByAddress.begin()) return nullptr;
  const detail::BlobRecord& b = blobs[std::prev(it)->second];
  return address < b.rx + b.size ? &b : nullptr;
}

Status Runtime::Impl::validateTarget(const void* target) const {
  auto t = reinterpret_cast<uintptr_t>(target);
  if (t == 0) return Status(Error::kNullTarget, "target is null");
  if (options.targetAlignment > 1 && t % options.targetAlignment != 0) {
    return Status(Error::kMisalignedTarget, "target " + hex(t) + " is not " +
                                                std::to_string(options.targetAlignment) +
                                                "-byte aligned (Options::targetAlignment)");
  }
  if (!arena->contains(target)) return Status::ok();
  if (t >= pollFlagRx && t < pollFlagRx + 4096) {
    return Status(Error::kInvalidArgument, "target " + hex(t) + " is patchcall's runtime page (safepoint flag and stub), not code to call");
  }
  if (trampolinePool.contains(t)) {
    // A live key's trampoline entry is a function (calls chain to that key's target); the
    // rest of its slot (target cell, padding, the jmp's rel32) is data.
    auto it = keyByTrampoline.find(t);
    if (it == keyByTrampoline.end() || it->second >= keys.size()) {
      return Status(Error::kInvalidArgument, "target " + hex(t) + " lies inside a key's trampoline slot (target cell, "
                                             "padding or the jmp's rel32); only trampoline(key) itself is callable");
    }
    if (!keys[it->second].live) {
      return Status(Error::kInvalidArgument, "target " + hex(t) + " is the trampoline of destroyed key " +
                                                 std::to_string(it->second));
    }
    return Status::ok();
  }
  if (veneerPool.contains(t)) {
    return Status(Error::kInvalidArgument, "target " + hex(t) + " lies in a veneer (patchcall's stub for a far target); "
                                           "pass the far target itself");
  }
  if (const detail::BlobRecord* b = blobContaining(t)) {
    if (b->state != detail::BlobState::kLive) {
      return Status(Error::kRetiredTarget, "target " + hex(t) + " lies in a retired blob");
    }
    // Any instruction of a live blob may be an entry, but not the inside of a call site.
    auto after = std::upper_bound(b->sites.begin(), b->sites.end(), t,
                                  [&](uintptr_t x, uint32_t id) { return x < sites[id].address; });
    if (after != b->sites.begin()) {
      const SiteRecord& s = sites[*std::prev(after)];
      size_t length = arch::siteSize(s.form, (s.flags & detail::kSiteStallGap) != 0);
      if (t > s.address && t < s.address + length) {
        return Status(Error::kInvalidArgument, "target " + hex(t) + " lies inside the call site at " + hex(s.address) +
                                                   " (patchcall rewrites those bytes)");
      }
    }
    return Status::ok();
  }
  return Status(Error::kRetiredTarget,
                "target " + hex(t) + " lies in arena memory that holds no live blob (freed or never installed)");
}

Status Runtime::Impl::checkTrampolineChain(uint32_t keyId, const void* target, uint64_t batchStamp) const {
  auto t = reinterpret_cast<uintptr_t>(target);
  for (size_t steps = 0; trampolinePool.contains(t); ++steps) {
    auto it = keyByTrampoline.find(t);
    if (it == keyByTrampoline.end() || it->second >= keys.size()) return Status::ok();  // refused by validateTarget
    const detail::KeyRecord& k = keys[it->second];
    if (it->second == keyId || steps > keys.size()) {
      return Status(Error::kInvalidArgument, "key " + std::to_string(keyId) + ": target " + hex(reinterpret_cast<uintptr_t>(target)) +
                                                 " leads through trampolines back to key " + std::to_string(keyId) +
                                                 "'s own trampoline (a call would jump in a loop forever)");
    }
    t = reinterpret_cast<uintptr_t>(k.batchStamp == batchStamp ? k.pending : k.target);
  }
  return Status::ok();
}

Result<uintptr_t> Runtime::Impl::slot(detail::SlotPool& pool, size_t slotSize) {
  if (pool.next + slotSize > pool.end) {
    Result<uint8_t*> chunk = arena->allocate(kPoolChunk);
    if (!chunk) return chunk.status();
    pool.next = reinterpret_cast<uintptr_t>(*chunk);
    pool.end = pool.next + kPoolChunk;
    pool.chunks.emplace_back(pool.next, pool.end);
  }
  uintptr_t s = pool.next;
  pool.next += slotSize;
  return s;
}

Result<uint32_t> Runtime::Impl::addSite(uintptr_t address, uint32_t k, SiteForm form, uint8_t flags) {
  if (liveSites >= options.maxSites) {
    return Status(Error::kTooManySites, "Options::maxSites (" + std::to_string(options.maxSites) + ") reached");
  }
  uint32_t id;
  if (!freeSites.empty()) {
    id = freeSites.back();
    freeSites.pop_back();
  } else {
    id = static_cast<uint32_t>(sites.size());
    sites.emplace_back();
  }
  sites[id] = SiteRecord{address, k, form, flags, 0};
  keys[k].sites.push_back(id);
  ++liveSites;
  return id;
}

void Runtime::Impl::removeSites(const detail::MiVector<uint32_t>& ids) {
  detail::MiVector<uint32_t> touchedKeys;
  for (uint32_t id : ids) {
    const SiteRecord& s = sites[id];
    touchedKeys.push_back(s.key);
    if ((s.flags & detail::kSiteForeign) == 0) {
      arch::SiteCalls calls = detail::siteCallsOf(s);
      for (int c = 0; c < calls.count; ++c) forgetCall(arch::branchField(calls.at[c]));
    }  // a foreign site's code lives on and still calls its veneer: the reference stays
    sites[id].address = 0;
    toggleFlipSnap.erase(id);
  }
  std::sort(touchedKeys.begin(), touchedKeys.end());
  touchedKeys.erase(std::unique(touchedKeys.begin(), touchedKeys.end()), touchedKeys.end());
  for (uint32_t k : touchedKeys) {
    std::erase_if(keys[k].sites, [&](uint32_t id) { return sites[id].address == 0; });
  }
  freeSites.insert(freeSites.end(), ids.begin(), ids.end());
  liveSites -= ids.size();
  retireOrphanVeneers();  // the sites' code is unreachable already (freed blob)
}

void Runtime::Impl::freeBlobLocked(uint32_t id) {
  detail::BlobRecord& b = blobs[id];
  removeSites(b.sites);
  blobByAddress.erase(b.rx);
  arena->release(reinterpret_cast<uint8_t*>(b.rx), b.size);
  b.state = detail::BlobState::kFreed;
  detail::MiVector<uint32_t>().swap(b.sites);
}

uintptr_t Runtime::Impl::decodeTarget(const SiteRecord& s) const {
  uintptr_t call = s.address;
  if ((s.flags & detail::kSiteForeign) != 0) {
    // Its mapping may be gone (dlclose): read through /proc/self/mem, never dereference.
    uint8_t bytes[arch::kCallSize];
    if (pread(procMemFd, bytes, sizeof bytes, static_cast<off_t>(call)) != static_cast<ssize_t>(sizeof bytes)) return 0;
    uintptr_t dest = arch::callDestination(call, bytes);
    return veneerPool.contains(dest) ? arch::veneerTarget(dest) : dest;
  }
  if (s.form == SiteForm::kToggle) {
    arch::ToggleLayout t = detail::toggleLayoutOf(s);
    call = arch::toggleSelectsB(t) ? t.callB : t.callA;
  }
  uintptr_t dest = arch::callDestination(call, reinterpret_cast<const uint8_t*>(call));
  return veneerPool.contains(dest) ? arch::veneerTarget(dest) : dest;
}

bool Runtime::Impl::write(uintptr_t rx, const void* bytes, size_t n) {
  if (!arena->contains(reinterpret_cast<void*>(rx))) {
    // Foreign code: the kernel writes through /proc/self/mem despite the page's protection
    // (not into a shared mapping, nor an unmapped one: EIO).
    if (detail::TestHooks* hooks = detail::testHooks(); hooks != nullptr && hooks->foreignWritesBeforeFailure.load() >= 0) {
      if (hooks->foreignWritesBeforeFailure.fetch_sub(1) == 0) {
        hooks->foreignWritesBeforeFailure.store(-1);
        errno = EIO;
        return false;
      }
    }
    ssize_t done = pwrite(procMemFd, bytes, n, static_cast<off_t>(rx));
    if (done >= 0 && static_cast<size_t>(done) != n) errno = EIO;
    return done >= 0 && static_cast<size_t>(done) == n;
  }
  uint8_t* rw = arena->toRw(reinterpret_cast<void*>(rx));
  // Widths a single instruction can store are stored by one instruction.
  if (n == 1) {
    __atomic_store_n(rw, *static_cast<const uint8_t*>(bytes), __ATOMIC_RELAXED);
  } else if (n == 2 && rx % 2 == 0) {
    uint16_t v;
    std::memcpy(&v, bytes, 2);
    __atomic_store_n(reinterpret_cast<uint16_t*>(rw), v, __ATOMIC_RELAXED);
  } else if (n == 8 && rx % 8 == 0) {
    uint64_t v;
    std::memcpy(&v, bytes, 8);
    __atomic_store_n(reinterpret_cast<uint64_t*>(rw), v, __ATOMIC_RELAXED);
  } else if (n == 4 && rx % 4 == 0) {
    uint32_t v;
    std::memcpy(&v, bytes, 4);
    __atomic_store_n(reinterpret_cast<uint32_t*>(rw), v, __ATOMIC_RELAXED);
  } else {
    std::memcpy(rw, bytes, n);
  }
  return true;
}

void Runtime::Impl::notify(uintptr_t site, uintptr_t target, SiteForm form) const {
  if (options.patchObserver) {
    options.patchObserver(PatchEvent{reinterpret_cast<const void*>(site), reinterpret_cast<const void*>(target), form});
  }
}

}  // namespace patchcall
