// patchcall — Runtime::Impl: the state behind the public Runtime handle.
//
// Locking: `textMutex` guards the registry (keys, sites, blobs, pools) and every code write.
// Retire callbacks and grace-period waits never run under it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "arch/arch.h"
#include "code_arena.h"
#include "cross_core_sync.h"
#include "fair_mutex.h"
#include "metadata.h"
#include "patchcall/runtime.h"
#include "quiescence.h"

namespace patchcall {

namespace detail {

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
  kSiteForeign = 1,     // outside the arena: written through /proc/self/mem
  kSiteStallGap = 2,    // toggle with a 5-byte test stall call before call A (test builds)
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
  uint64_t batchStamp = 0;  // last update pass that touched this key (textMutex)
  const void* target = nullptr;
  const void* pending = nullptr;  // its target in the update pass marked by batchStamp
  uintptr_t trampoline = 0;  // entry (arch::trampolineEntry); its field is aligned; the
                             // target cell at arch::trampolineCell(entry)
  MiVector<uint32_t> sites;
  MiString name;
};

enum class BlobState : uint8_t { kLive, kRetired, kFreed };

struct BlobRecord {
  uintptr_t rx = 0;
  size_t size = 0;
  BlobState state = BlobState::kFreed;
  MiVector<uint32_t> sites;
};

// A small bump pool of fixed-size slots in the arena (trampolines, veneers).
struct SlotPool {
  uintptr_t next = 0, end = 0;
  MiVector<std::pair<uintptr_t, uintptr_t>> chunks;  // [begin, end) for target validation
  bool contains(uintptr_t p) const {
    for (auto& c : chunks) if (p >= c.first && p < c.second) return true;
    return false;
  }
};

// The Runtime::Impl whose text mutex this thread holds (a patch observer runs under it).
extern thread_local const void* tlsTextMutexOwner;

// Holds the text mutex and marks this thread as its owner (see Impl::refuseReentry).
// Restores the previous owner when it lets go: a patch observer of runtime A may update
// runtime B, and A's marker must survive B's update.
class TextMutexGuard {
 public:
  TextMutexGuard(FairMutex& m, const void* owner) : lock_(m), owner_(owner), previous_(tlsTextMutexOwner) {
    tlsTextMutexOwner = owner_;
  }
  ~TextMutexGuard() { tlsTextMutexOwner = previous_; }
  void unlock() { tlsTextMutexOwner = previous_; lock_.unlock(); }
  void lock() { lock_.lock(); tlsTextMutexOwner = owner_; }
 private:
  std::unique_lock<FairMutex> lock_;
  const void* owner_;
  const void* previous_;
};

// A registered foreign site: its site id and the call field patchcall last wrote there (an
// update checks the bytes are still that call before it writes again).
struct ForeignSite {
  uint32_t id = 0;
  int32_t field = 0;
};

class Reclaimer;

// fork() bookkeeping (fork_safety.cpp).
struct ForkState {
  pid_t ownerPid = 0;   // the process whose code this runtime writes
  Status childFailure;  // set in a child whose copy could not be made: mutating calls refuse
  // Handed from the prepare handler to the parent/child handler (same thread, one fork).
  Status copy;
  bool wentOffline = false, textHeldBefore = false;
  bool copySkipped = false;  // test hook: the child shares the parent's code, as before fork support
  bool procMemLazy = false;  // child without foreign sites: open /proc/self/mem on first need
  bool pollFlagArmed = true; // the copy's poll byte is nonzero: the child clears it
};

}  // namespace detail

struct Runtime::Impl {
  Options options;
  std::unique_ptr<detail::CodeArena> arena;
  detail::CrossCoreSync sync;
  std::unique_ptr<detail::Quiescence> quiescence;
  std::unique_ptr<detail::Reclaimer> reclaimer;
  int procMemFd = -1;  // /proc/self/mem, for foreign sites
  detail::ForkState forkState;

  // Runtime page at the start of the arena: poll flag and safepoint stub.
  uintptr_t pollFlagRx = 0;
  uintptr_t safepointStubRx = 0;
  arch::StateSaveLayout stateSave;  // how the stub saves extended state (CPUID at create)

  // ---- registry, all under textMutex ----
  mutable detail::FairMutex textMutex;
  detail::MiVector<detail::KeyRecord> keys;   // index = key id; [0] unused
  detail::MiVector<detail::SiteRecord> sites;  // index = site id; [0] unused
  detail::MiVector<uint32_t> freeSites;
  uint64_t liveSites = 0;
  detail::MiVector<detail::BlobRecord> blobs;  // index = blob id; [0] unused
  detail::MiVector<uint32_t> freeBlobs;
  detail::MiMap<uintptr_t, uint32_t> blobByAddress;
  detail::MiHashMap<uintptr_t, detail::ForeignSite> foreignSites;
  detail::MiHashMap<uint32_t, uint64_t> toggleFlipSnap;  // site id -> grace-period snapshot
  detail::MiHashMap<uintptr_t, uint32_t> keyByTrampoline;  // trampoline entry -> key id
  detail::SlotPool trampolinePool, veneerPool;
  // Veneers (veneers.cpp; their life is described there).
  detail::MiHashMap<uintptr_t, uintptr_t> veneers;      // far target -> live veneer
  detail::MiHashMap<uintptr_t, uint32_t> veneerRefs;    // live veneer -> calls/jumps naming it
  detail::MiHashMap<uintptr_t, uintptr_t> veneerUsers;  // field address of such a call -> veneer
  detail::MiVector<std::pair<uintptr_t, uintptr_t>> pendingVeneers;  // (target, slot): planned
  detail::MiVector<uintptr_t> orphanVeneers;            // no user left: retire after the syncs
  std::mutex veneerFreeMutex;                           // freeVeneerSlots (retire callbacks add)
  detail::MiVector<uintptr_t> freeVeneerSlots;          // int3-filled, reusable
  std::atomic<uint64_t> veneersRetired{0}, veneersFreed{0};
  uint64_t batchCounter = 0;

  // ---- counters ----
  std::atomic<uint64_t> updateCount{0}, siteWrites{0}, toggleGraceWaits{0};

  ~Impl();

  // Re-entry from code that runs under the text mutex (a patch observer): mutating entry
  // points refuse with kReentrantUpdate; read-only ones read without relocking.
  bool textMutexHeldHere() const noexcept { return detail::tlsTextMutexOwner == this; }
  Status refuseReentry(const char* what) const {
    if (!textMutexHeldHere()) return Status::ok();
    return Status(Error::kReentrantUpdate, std::string(what) +
                                               " called while this thread holds the text mutex (from a patch observer); "
                                               "defer it until the update returns");
  }
  // Refuses code writes in a process that does not own this runtime's code: a child made
  // without fork()'s atfork handlers (vfork, clone, a raw fork system call) still maps the
  // parent's arena, or a fork child whose copy failed.
  Status checkOwnProcess() const;
  std::unique_lock<detail::FairMutex> readLock() const {
    return textMutexHeldHere() ? std::unique_lock<detail::FairMutex>() : std::unique_lock<detail::FairMutex>(textMutex);
  }

  // Outstanding reservations (reserveCode .. commitCode/abandonCode): rx -> size.
  std::mutex reservationsMutex;
  detail::MiMap<uintptr_t, size_t> reservations;

  // registry helpers (textMutex held)
  detail::KeyRecord* key(Key k);
  // Refuses null, misaligned and retired targets and every arena address that is not code a
  // call may enter: the runtime page, veneers, trampoline slots other than a live key's
  // entry, the inside of a site's instruction.
  Status validateTarget(const void* target) const;
  // A target that is another key's trampoline must not lead back to `keyId` through the
  // chain of trampolines (an endless jmp loop); keys marked with `batchStamp` are taken at
  // their pending target.
  Status checkTrampolineChain(uint32_t keyId, const void* target, uint64_t batchStamp) const;
  Result<uintptr_t> slot(detail::SlotPool& pool, size_t slotSize);
  // Where the call or jump at `insn` must point to reach `target` (maybe a veneer, which
  // validation only plans: see publishPendingVeneers).
  Result<uintptr_t> reachable(uintptr_t insn, uintptr_t target) {
    if (arch::inReach(insn, target)) return target;  // the common case, inline
    return reachableViaVeneer(insn, target);
  }
  Result<uintptr_t> reachableViaVeneer(uintptr_t insn, uintptr_t target);
  // Validation succeeded: write the planned veneers and sync, before any call points at one.
  // A sync that keeps failing is kSystemError (the veneers are written; see syncOrError).
  Status publishPendingVeneers();
  // Validation failed (or starts over): forget the planned veneers; nothing was written.
  void dropPendingVeneers() noexcept;
  // Before writing a call's (or trampoline's) field that will reach `target` via
  // `destination`: reserve (allocates) for every write, then note (cannot fail) for every
  // write, both before the first write. Moves the veneer references.
  void reserveCallDestination(uintptr_t field, uintptr_t destination, uintptr_t target);
  void noteCallDestination(uintptr_t field, uintptr_t destination, uintptr_t target) noexcept;
  void forgetCall(uintptr_t field) noexcept;  // the call's code is gone (blob freed)
  // After the sync that moved the last user off them: free unused veneers a grace period later.
  void retireOrphanVeneers() noexcept;
  void releaseVeneer(uintptr_t veneer) noexcept;
  void dropSlot(uintptr_t veneer) noexcept;
  Result<uint32_t> addSite(uintptr_t address, uint32_t key, SiteForm form, uint8_t flags);
  void removeSites(const detail::MiVector<uint32_t>& ids);
  void freeBlobLocked(uint32_t id);  // unregister its sites, int3-fill, release
  const detail::BlobRecord* blobContaining(uintptr_t address) const;
  uintptr_t decodeTarget(const detail::SiteRecord& s) const;

  // code writes (textMutex held). False only for a foreign site the kernel refused to write.
  bool write(uintptr_t rx, const void* bytes, size_t n);
  // A foreign site still mapped, still holding `expected` and writable through /proc/self/mem
  // (the same bytes are written back): checked before its first write and every update.
  Status probeForeignSite(uintptr_t address, const uint8_t expected[arch::kCallSize], const char* what);
  // A Direct site's or trampoline's field (always in the arena, aligned): one store.
  void storeField(uintptr_t field, int32_t value) {
    __atomic_store_n(reinterpret_cast<int32_t*>(arena->toRw(reinterpret_cast<void*>(field))), value, __ATOMIC_RELAXED);
  }
  void notify(uintptr_t site, uintptr_t target, SiteForm form) const;

  // the update path (retargeter.cpp)
  Status retarget(std::span<const KeyUpdate> updates, const void** previous, const UpdateOptions& how = {});
  // Points one just-registered breakpoint-form site at its key's current target with the
  // breakpoint protocol; the key itself (target, other sites) is left alone. `guard` holds
  // the text mutex throughout (registration never drops it between reading the target and
  // writing the site).
  Status patchSiteToKey(detail::TextMutexGuard& guard, uint32_t siteId);
};

}  // namespace patchcall
