// patchcall — the Registry: keys (with their trampolines), sites and blobs, and what a
// target may be.
//
// It owns the records and every rule about them; the update path (retargeter.h) and the
// installer (code_install.h) read and change them through it. Everything here runs with
// Runtime::Impl::textMutex held.
#pragma once

#include <cstdint>
#include <string_view>

#include "arch/arch.h"
#include "code_arena.h"
#include "code_observer.h"
#include "metadata.h"
#include "patchcall/runtime.h"
#include "text_writer.h"
#include "veneers.h"

namespace patchcall::detail {

// 16 bytes per site; the key's and the blob's site lists add 4 bytes each.
struct SiteRecord {
  uintptr_t address = 0;  // RX address of the instruction's first byte; 0: free slot
  uint32_t key = 0;
  SiteForm form = SiteForm::kDirect;
  uint8_t flags = 0;
  uint16_t unused = 0;
};
static_assert(sizeof(SiteRecord) == 16);

enum SiteFlags : uint8_t {
  kSiteForeign = 1,   // outside the arena: written through /proc/self/mem
  kSiteStallGap = 2,  // toggle with the test-only stall call before call A (hook builds only)
  kSiteToggleOnB = 4, // the toggle selects call B: kept here by the retargeter, never read from code
};

// The toggle's calls (runtime/arch/<isa>/site_layout.h).
inline arch::ToggleLayout toggleLayoutOf(const SiteRecord& s) {
  return arch::toggleLayout(s.address, (s.flags & kSiteStallGap) != 0);
}
inline arch::SiteCalls siteCallsOf(const SiteRecord& s) {
  return arch::siteCalls(s.address, s.form, (s.flags & kSiteStallGap) != 0);
}

struct KeyRecord {
  bool live = false;
  bool strictUpdates = false;  // KeyOptions::strictUpdates
  bool nullIsNoop = false;     // KeyOptions::nullIsNoop: a null target is the runtime's noop target
  uint64_t batchStamp = 0;     // last update pass that touched this key
  const void* target = nullptr;
  const void* pending = nullptr;  // its target in the update pass marked by batchStamp
  uintptr_t trampoline = 0;  // entry (arch::trampolineEntry); the target cell at arch::trampolineCell
  MiVector<uint32_t> sites;
};
// One cache line: an update of a large batch reads and writes one per key (the name, which no
// update reads, is kept beside: Registry::keyName).
static_assert(sizeof(KeyRecord) <= 64);

enum class BlobState : uint8_t { kLive, kRetired, kFreed };

// A named function inside a blob (CodeInfo::ranges), offset from the blob's start.
struct BlobRange {
  uint32_t offset = 0, size = 0;
  MiString name;
};

// What CodeInfo said about a blob, kept for introspection, jitdump's reloads and fork.
struct BlobNames {
  MiString name;
  MiVector<BlobRange> ranges;  // sorted by offset
  FrameLayout frameLayout = FrameLayout::kNone;
};

struct BlobRecord {
  uintptr_t rx = 0;
  size_t size = 0;
  BlobState state = BlobState::kFreed;
  MiVector<uint32_t> sites;  // sorted by address
  BlobNames names;
};

// The code events a blob stands for: one per named range, else the whole blob.
template <typename F>
void forEachCodeEvent(const BlobRecord& b, F&& f) {
  if (b.names.ranges.empty()) f(observe::CodeEvent{b.rx, b.size, b.names.name, reinterpret_cast<const uint8_t*>(b.rx)});
  for (const BlobRange& r : b.names.ranges) {
    f(observe::CodeEvent{b.rx + r.offset, r.size, r.name, reinterpret_cast<const uint8_t*>(b.rx + r.offset)});
  }
}

class Registry {
 public:
  Registry(const Options& options, CodeArena& arena, TextWriter& writer, Veneers& veneers, CodeObserver& observer);
  // The runtime page (poll flag, safepoint stub): never a target, except its two shared
  // targets (Runtime::noopTarget, returnZeroTarget).
  void setRuntimePage(uintptr_t page, uintptr_t noop, uintptr_t returnZero) noexcept {
    runtimePage_ = page, noopTarget_ = noop, returnZeroTarget_ = returnZero;
  }
  uintptr_t noopTarget() const noexcept { return noopTarget_; }
  // What `target` means for key `k` (a null target of a nullIsNoop key: the noop target),
  // and back: what target() reports for what the key holds.
  const void* resolve(const KeyRecord& k, const void* target) const noexcept {
    return target == nullptr && k.nullIsNoop ? reinterpret_cast<const void*>(noopTarget_) : target;
  }
  const void* reported(const KeyRecord& k, const void* held) const noexcept {
    return k.nullIsNoop && held == reinterpret_cast<const void*>(noopTarget_) ? nullptr : held;
  }

  // ---- keys ----
  // Allocates the key's trampoline, points it (and its target cell) at `target`, syncs.
  Result<Key> createKey(const void* target, std::string_view name, const KeyOptions& options);
  Status destroyKey(Key key);
  KeyRecord* key(Key k) noexcept {
    if (k.id == 0 || k.id >= keys_.size() || !keys_[k.id].live) return nullptr;
    return &keys_[k.id];
  }
  const KeyRecord* key(Key k) const noexcept { return const_cast<Registry*>(this)->key(k); }
  size_t keyCount() const noexcept { return keys_.size(); }  // including the unused [0]
  KeyRecord& keyAt(uint32_t id) noexcept { return keys_[id]; }
  const KeyRecord& keyAt(uint32_t id) const noexcept { return keys_[id]; }
  const MiString& keyName(uint32_t id) const noexcept { return keyNames_[id]; }
  // Marks the keys of one update pass (KeyRecord::batchStamp).
  uint64_t nextBatchStamp() noexcept { return ++batchCounter_; }

  // ---- targets ----
  // Refuses null, misaligned and retired targets and every arena address that is not code a
  // call may enter: the runtime page, veneers, trampoline slots other than a live key's
  // entry, the inside of a site's instruction; and the poll flag's page beside the arena.
  Status validateTarget(const void* target) const;
  // Aligned code outside the arena: what validateTarget accepts without looking further.
  bool plainTarget(const void* target) const noexcept {
    auto t = reinterpret_cast<uintptr_t>(target);
    return t != 0 && t % arch::kInstructionAlign == 0 &&
           (options_.targetAlignment <= 1 || t % options_.targetAlignment == 0) && !arena_.contains(target) &&
           !onPollFlagPage(t);
  }
  // The poll flag's page beside the arena (CodeArena::pollFlag): data, never a target.
  bool onPollFlagPage(uintptr_t t) const noexcept {
    auto page = reinterpret_cast<uintptr_t>(arena_.pollFlag());
    return t >= page && t < page + CodeArena::kFlagPageSize;
  }
  // A target that is another key's trampoline must not lead back to `keyId` through the
  // chain of trampolines (an endless jmp loop); keys marked with `batchStamp` are taken at
  // their pending target.
  Status checkTrampolineChain(uint32_t keyId, const void* target, uint64_t batchStamp) const;

  // ---- sites ----
  Result<uint32_t> addSite(uintptr_t address, uint32_t key, SiteForm form, uint8_t flags);
  // Unbinds the sites; their branches stop counting as veneer users (not a foreign site's:
  // its code lives on and still calls its veneer).
  void removeSites(const MiVector<uint32_t>& ids);
  SiteRecord& site(uint32_t id) noexcept { return sites_[id]; }
  const SiteRecord& site(uint32_t id) const noexcept { return sites_[id]; }
  // The site whose first byte is at `address` in a blob (0: none).
  uint32_t siteInBlobAt(uintptr_t address) const;
  // Reserve room for `n` more sites (and their key lists) so addSite cannot run out of memory.
  void reserveSites(size_t n);
  uint64_t liveSites() const noexcept { return liveSites_; }
  size_t maxSites() const noexcept { return maxSites_; }
  // What the site's active call reaches now (through a veneer, if it names one); 0 when a
  // foreign site can no longer be read.
  uintptr_t decodeTarget(const SiteRecord& s) const;
  // Grace-period snapshot of each toggle site's last flip (the toggle rule, retargeter.cpp).
  MiHashMap<uint32_t, uint64_t>& toggleFlips() noexcept { return toggleFlips_; }

  // ---- blobs ----
  // Registers code being committed, with room for `sites` sites (added in address order).
  uint32_t addBlob(uintptr_t rx, size_t size, size_t sites, BlobNames names);
  void addBlobSite(uint32_t blob, uint32_t site) { blobs_[blob].sites.push_back(site); }
  void reserveBlob() { blobs_.reserve(blobs_.size() + 1); }
  const BlobRecord* blobContaining(uintptr_t address) const;
  const BlobRecord& blob(uint32_t id) const noexcept { return blobs_[id]; }
  size_t blobCount() const noexcept { return blobs_.size(); }  // including the unused [0]
  // Checks a retire(Blob) (a blob of this runtime, live, no key targeting it); marks it retired.
  Status markRetired(const Blob& blob);
  void markLive(uint32_t id) noexcept { blobs_[id].state = BlobState::kLive; }  // its retire failed
  // Unregisters its debug information, unbinds its sites, int3-fills and releases its code.
  void freeBlob(uint32_t id);

  // Counts for RuntimeStats (keys, sites, blobs, veneers, siteMetadataBytes).
  void countInto(RuntimeStats& s) const;

 private:
  const Options& options_;
  const size_t maxSites_;
  CodeArena& arena_;
  TextWriter& writer_;
  Veneers& veneers_;
  CodeObserver& observer_;
  uintptr_t runtimePage_ = 0, noopTarget_ = 0, returnZeroTarget_ = 0;

  MiVector<KeyRecord> keys_;    // index = key id; [0] unused
  MiVector<MiString> keyNames_;  // index = key id (KeyOptions' name; "" if none)
  MiVector<SiteRecord> sites_;  // index = site id; [0] unused
  MiVector<uint32_t> freeSites_;
  uint64_t liveSites_ = 0;
  MiVector<BlobRecord> blobs_;  // index = blob id; [0] unused
  MiMap<uintptr_t, uint32_t> blobByAddress_;
  MiHashMap<uint32_t, uint64_t> toggleFlips_;      // site id -> grace-period snapshot
  MiHashMap<uintptr_t, uint32_t> keyByTrampoline_;  // trampoline entry -> key id
  SlotPool trampolines_;
  uint64_t batchCounter_ = 0;
};

}  // namespace patchcall::detail
